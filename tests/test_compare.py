"""``edgeadapt compare`` on two tiny bundles: scores recomputed independently, refusals in one line, --force."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ORT_THREADS, run_cli
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.metrics import mcnemar_p
from edgeadapt.runtime.preprocess import load_image
from tiny_bundle import Tiny, write_tiny_bundle


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny bundle (other weights, same labels and image size)."""
    out = tmp_path_factory.mktemp("other") / "other"
    write_tiny_bundle(out, seed=1)
    return out


def _accuracy(bundle: Path, data: Path) -> tuple[float, list[int]]:
    rt = Runtime(bundle, threads=ORT_THREADS)
    files = sorted(data.rglob("*.png"))
    images = np.stack([load_image(f, rt.bundle.image_size) for f in files])
    targets = np.asarray([rt.bundle.labels.index(f.parent.name) for f in files])
    correct = rt.infer(rt.prepare(images))[0].argmax(1) == targets
    return float(correct.mean()), sorted(correct.astype(int).tolist())


def test_compare_two_bundles_on_a_data_folder(tiny: Tiny, other: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    proc = run_cli("compare", tiny.bundle, other, "--data", tiny.data, "--runs", "5", "--threads", "1",
                   "--timings", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = result["entries"]
    assert [e["name"] for e in rows] == ["bundle", "other"] and result["runs"] == 5
    assert result["inputs"] == sum(1 for _ in tiny.data.rglob("*.png"))
    for row, bundle in zip(rows, (tiny.bundle, other)):
        acc, correct = _accuracy(bundle, tiny.data)
        assert row["accuracy"] == pytest.approx(acc, abs=1e-12) and sorted(row["correct"]) == correct
        lo, hi = row["accuracy_ci95"]
        assert lo <= row["accuracy"] <= hi and row["latency_ms"]["p50"] > 0
        assert f"{lo:.3f}-{hi:.3f}" in proc.stdout
    p = mcnemar_p(np.array(rows[0]["correct"]), np.array(rows[1]["correct"]))
    assert f"McNemar p {p:.2f}" in proc.stdout
    gap = abs(rows[0]["accuracy"] - rows[1]["accuracy"]) * 100
    assert f"accuracy gap {gap:.1f} points" in proc.stdout


def test_compare_refuses_bundles_with_other_labels(tiny: Tiny, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny.bundle, tmp_path / "relabelled"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["labels"] = ["a", "b", "c"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("compare", tiny.bundle, copy, "--runs", "2")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: the bundles have different labels; compare bundles trained on the same "
                                   "classes")


def test_compare_never_replaces_a_file_without_force(tiny: Tiny, other: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    out.write_text("the user's own file")
    proc = run_cli("compare", tiny.bundle, other, "--runs", "2", "--json", out)
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {out} already exists; pass --force to replace it"
    assert out.read_text() == "the user's own file"
    proc = run_cli("compare", tiny.bundle, other, "--runs", "2", "--timings", "1", "--json", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert [e["name"] for e in json.loads(out.read_text())["entries"]] == ["bundle", "other"]
