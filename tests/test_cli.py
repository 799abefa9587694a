"""The ``edgeadapt`` console script on the happy path: run, bench, train, version and usage mistakes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ORT_THREADS, run_cli
from edgeadapt.runtime import Runtime
from PIL import Image
from tiny_bundle import Tiny

from edgeadapt.spec import TrainSpec


@pytest.fixture(scope="module")
def images(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two of the bundle's held-out samples written as PNG files."""
    rt = Runtime(tiny.bundle, threads=ORT_THREADS)
    samples, _ = rt.bundle.samples()
    folder = tmp_path_factory.mktemp("cli_images")
    paths = [folder / "first.png", folder / "second.png"]
    for path, img in zip(paths, samples[[0, -1]]):
        Image.fromarray(img).save(path)
    return paths


def test_run_json_prints_one_object_per_input(tiny: Tiny, images: list[Path]) -> None:
    proc = run_cli("run", tiny.bundle, *images, "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in rows] == [str(p) for p in images]
    expected = Runtime(tiny.bundle, threads=ORT_THREADS).predict_files(images)
    for row, pred in zip(rows, expected):
        assert set(row) == {"input", "label", "score", "gates"}
        assert row["label"] == pred.label
        assert abs(row["score"] - pred.score) <= 1e-6
        assert row["gates"] == pred.gates
    assert "Traceback" not in proc.stderr


def test_run_text_output(tiny: Tiny, images: list[Path]) -> None:
    proc = run_cli("run", tiny.bundle, images[0], "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    pred = Runtime(tiny.bundle, threads=ORT_THREADS).predict_files(images[:1])[0]
    path, label, score, gates = proc.stdout.rstrip("\n").split("\t")
    assert (path, label) == (str(images[0]), pred.label)
    assert float(score) == pytest.approx(pred.score, abs=5e-4)
    fired = [k for k, v in pred.gates.items() if v]
    assert gates == f"gates open {len(fired)}/{len(pred.gates)}: {','.join(fired) or '-'}"


def test_bench_writes_json_result(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_cli("bench", tiny.bundle, "--runs", "20", "--warmup", "2", "--threads", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "saving" in proc.stdout and "gate open rate" in proc.stdout  # the human table
    result = json.loads(out.read_text())
    for key in ("latency_ms", "all_open_latency_ms", "all_closed_latency_ms"):
        lat = result[key]
        assert set(lat) == {"p50", "p90", "p99", "mean"}
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    for key in ("cold_start_ms", "first_inference_ms", "throughput_per_s", "peak_rss_mb"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["runs"] == 20
    assert result["throughput_per_s"] == pytest.approx(1000.0 / result["latency_ms"]["mean"], rel=1e-9)
    assert abs(result["saving"] - (1 - result["latency_ms"]["p50"] / result["all_open_latency_ms"]["p50"])) <= 1e-9
    ceiling = 1 - result["all_closed_latency_ms"]["p50"] / result["all_open_latency_ms"]["p50"]
    assert result["saving_ceiling"] == pytest.approx(ceiling, abs=1e-9)
    assert "ceiling" in proc.stdout and "with every gate closed" in proc.stdout
    manifest = json.loads((tiny.bundle / "manifest.json").read_text())
    assert list(result["gate_rates"]) == [g["name"] for g in manifest["gates"]]
    assert all(0.0 <= v <= 1.0 for v in result["gate_rates"].values())
    assert result["cold_first_inference_ms"] > 0 and result["cold_import_ms"] > 0


def test_bench_json_to_stdout(tiny: Tiny) -> None:
    proc = run_cli("bench", tiny.bundle, "--runs", "3", "--warmup", "0", "--threads", "1", "--no-cold-start",
                   "--json", "-")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["runs"] == 3 and "cold_start_ms" not in result and result["threads"] == 1


@pytest.mark.slow
def test_train_json_writes_a_run_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (data / name).mkdir(parents=True)
        for i in range(5):
            pixels = np.clip(rng.normal(60 + 120 * c, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(data / name / f"{i}.png")
    run = tmp_path / "run"
    proc = run_cli("train", "--data", data, "--out", run, "--epochs", "1", "--image-size", "32", "--budget", "0.6",
                   "--gate-scope", "adapter", "--set", "holdout=0.2", "--set", "difficulty_weight=2.5", "--set",
                   "budget_statistic=median", "--set", "couple_from=10", "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert "history" not in metrics
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0
    for key in ("heldout_accuracy", "heldout_accuracy_all_open"):  # each accuracy inside its 95 % interval
        lo, hi = metrics[f"{key}_ci95"]
        assert 0.0 <= lo <= metrics[key] <= hi <= 1.0
    assert 0.0 < metrics["gap_p_value"] <= 1.0
    assert list(metrics["gate_rates"]) == [f"block{i:02d}" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    assert sorted(p.name for p in run.iterdir()) == ["adapters.safetensors", "config.json", "holdout.npz",
                                                     "metrics.json", "spec.toml"]
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 2
    spec = TrainSpec.from_toml(run / "spec.toml")  # the resolved spec: defaults, options and --set
    assert (spec.budget, spec.gate_scope, spec.couple_from, spec.difficulty_weight) == (0.6, "adapter", 10, 2.5)
    assert (spec.epochs, spec.image_size, spec.lr, spec.fast_layout, spec.holdout) == (1, 32, 0.01, True, 0.2)
    assert config["config"]["labels"] == ["dark", "light"]
    assert config["config"]["gate_scope"] == "adapter" and config["config"]["budget"] == 0.6
    assert config["config"]["budget_statistic"] == "median"
    assert config["config"]["coupled_from"] == 10 and config["train"]["couple_weight"] == 16.0
    # 5 images per class: 1 held out, 1 kept out of training to calibrate the thresholds on, 3 to train
    assert (config["train"]["n_train"], config["train"]["n_calibration"], config["train"]["n_holdout"]) == (6, 2, 2)
    assert (config["train"]["difficulty_weight"], config["train"]["margin_weight"]) == (2.5, 0.1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_version() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"edgeadapt, version {declared}"
    assert f"## {declared} (" in (Path(__file__).parents[1] / "CHANGELOG.md").read_text()  # every version has its changes


@pytest.mark.parametrize("args", [
    ["run", "--bogus"],
    ["bench", "somewhere", "--runs", "0"],
    ["train", "--data", "d", "--out", "o", "--gate-scope", "layer"],
    ["train", "--data", "d"],
    ["frobnicate"],
])
def test_usage_mistakes_exit_with_2(args: list[str]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error:")
