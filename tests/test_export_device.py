"""Budget-aware export: thresholds chosen so the latency measured on this host fits a device's budget (the choice
on the tiny bundle; the export itself on the trained run, slow)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import Trained, run_cli
from edgeadapt.export.device_fit import fit_to_device
from edgeadapt.runtime import load_bundle
from edgeadapt.runtime.devices import load_profile
from onnx import numpy_helper
from test_bench_device import write_profile
from tiny_bundle import Tiny

from edgeadapt.errors import UserError


def fit(bundle_dir: Path, profile: Path) -> dict:
    bundle = load_bundle(bundle_dir)
    images, _ = bundle.samples()
    return fit_to_device(bundle.model_path, bundle.manifest, images, load_profile(profile), log=lambda m: None)


def test_generous_budget_takes_the_most_accurate_setting(tiny: Tiny, tmp_path: Path) -> None:
    result = fit(tiny.bundle, write_profile(tmp_path / "roomy.toml", latency_ms=10_000))
    best = max(r["heldout_accuracy"] for r in result["measured"])
    assert result["chosen"]["heldout_accuracy"] == best
    assert result["chosen"]["expected_latency_ms"] <= 10_000
    assert "exporting host" in result["expected_latency_basis"]


@pytest.mark.parametrize("budget_ms, most_compute", [(10_000, 1.0), (5.0, 0.4)])
def test_choice_from_known_timings(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget_ms: float,
                                   most_compute: float) -> None:
    """Timings of 1 ms plus 10 ms per unit of compute: the most accurate row within the budget wins, the one with
    less compute on a tie (the tiny bundle's accuracy falls as its gates close)."""
    import edgeadapt.export.device_fit as device_fit

    table = load_bundle(tiny.bundle).manifest["budget_table"]

    def row(thr: np.ndarray) -> dict:
        return min(table, key=lambda r: abs(r["threshold"] - float(thr[0])))

    def timed(settings, images, runs, warmup=0, **kwargs):
        return {k: [1.0 + 10.0 * row(thr)["compute_fraction"]] * runs for k, (_, thr) in settings.items()}

    monkeypatch.setattr(device_fit, "time_interleaved", timed)
    chosen = fit(tiny.bundle, write_profile(tmp_path / "board.toml", latency_ms=budget_ms))["chosen"]
    fitting = [r for r in table if r["compute_fraction"] <= most_compute]
    best = max(r["heldout_accuracy"] for r in fitting)
    assert chosen["heldout_accuracy"] == best and chosen["compute_fraction"] <= most_compute
    assert chosen["compute_fraction"] == min(r["compute_fraction"] for r in fitting if r["heldout_accuracy"] == best)
    assert chosen["expected_latency_ms"] == pytest.approx(1.0 + 10.0 * chosen["compute_fraction"])
    if budget_ms < 10:  # the budget binds: closing gates cost accuracy
        assert chosen["heldout_accuracy"] < max(r["heldout_accuracy"] for r in table)


@pytest.mark.slow
def test_tight_budget_keeps_expected_latency_within_it(trained: Trained, tmp_path: Path) -> None:
    probe = fit(trained.bundle, write_profile(tmp_path / "probe.toml", latency_ms=10_000))
    budget = float(np.median([r["expected_latency_ms"] for r in probe["measured"]]))
    result = fit(trained.bundle, write_profile(tmp_path / "tight.toml", latency_ms=budget))
    assert result["chosen"]["expected_latency_ms"] <= budget
    assert result["chosen"]["heldout_accuracy"] == max(
        r["heldout_accuracy"] for r in result["measured"] if r["expected_latency_ms"] <= budget)


def test_impossible_budget_is_one_clear_error(tiny: Tiny, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no gate setting fits impossible's p90 budget of 1e-06 ms"):
        fit(tiny.bundle, write_profile(tmp_path / "impossible.toml", latency_ms=1e-6))


@pytest.mark.slow
def test_export_with_device_records_choice_and_sets_default(trained: Trained, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "roomy.toml", latency_ms=10_000)
    out = tmp_path / "bundle"
    proc = run_cli("export", trained.run, "--out", out, "--device", profile)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    chosen = manifest["device_fit"]["chosen"]["threshold"]
    assert manifest["device_fit"]["device"] == "roomy"
    assert all(g["threshold"] == pytest.approx(chosen) for g in manifest["gates"])
    model = onnx.load(str(out / "model.onnx"))
    default = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "gate_thresholds")
    np.testing.assert_allclose(default, chosen, rtol=0, atol=1e-6)
    load_bundle(out)  # hashes still match after the threshold was rewritten
