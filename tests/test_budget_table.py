"""Run-time ``--budget``: the bundle's budget table moves the same model.onnx between compute levels."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import Trained, run_cli
from edgeadapt.runtime import Runtime, load_bundle
from edgeadapt.runtime.bundle import budget_column, thresholds_for_budget
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from tiny_bundle import Tiny

from edgeadapt.errors import UserError


@pytest.mark.slow
def test_table_spans_every_gate_open_to_every_gate_closed(trained: Trained) -> None:
    bundle = load_bundle(trained.bundle)
    table = bundle.manifest["budget_table"]
    thresholds = [r["threshold"] for r in table]
    assert thresholds == sorted(thresholds)
    assert table[0]["threshold"] == OPEN_ALL and table[0]["compute_fraction"] == pytest.approx(1.0)
    assert table[-1]["threshold"] == CLOSE_ALL and table[-1]["compute_fraction"] == 0.0
    deployed = float(bundle.default_thresholds()[0])
    assert any(abs(r["threshold"] - deployed) < 1e-5 for r in table)
    assert all(0.0 <= r["heldout_accuracy"] <= 1.0 for r in table)
    assert bundle.manifest["budget_statistic"] == "mean" and budget_column(bundle.manifest) == "compute_fraction"
    assert all(0.0 <= r["compute_median"] <= 1.0 for r in table)


def test_thresholds_for_budget_picks_most_compute_within_budget(tiny: Tiny) -> None:
    bundle = load_bundle(tiny.bundle)
    table = bundle.manifest["budget_table"]
    assert bundle.manifest["budget_statistic"] == "mean" and budget_column(bundle.manifest) == "compute_fraction"
    assert all(0.0 <= r["compute_median"] <= 1.0 for r in table)
    assert np.all(thresholds_for_budget(bundle, 1.0) == np.float32(OPEN_ALL))
    for budget in (0.0, 0.25, 0.5, 0.75):
        thr = float(thresholds_for_budget(bundle, budget)[0])
        row = next(r for r in table if abs(r["threshold"] - thr) < 1e-4)
        assert row["compute_fraction"] <= budget
        assert not any(row["compute_fraction"] < r["compute_fraction"] <= budget for r in table)


def test_runtime_budget_changes_gate_decisions(tiny: Tiny) -> None:
    images, _ = load_bundle(tiny.bundle).samples()
    full = Runtime(tiny.bundle, threads=1, budget=1.0)
    none = Runtime(tiny.bundle, threads=1, budget=0.0)
    assert full.infer(full.prepare(images))[1].all()
    assert not none.infer(none.prepare(images))[1].any()


def test_bench_budget_orders_gate_rates(tiny: Tiny) -> None:
    rates = {}
    for budget in ("0", "1"):
        proc = run_cli("bench", tiny.bundle, "--budget", budget, "--runs", "8", "--warmup", "0",
                       "--threads", "1", "--no-cold-start", "--json", "-")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["budget"] == float(budget)
        rates[budget] = np.mean(list(result["gate_rates"].values()))
    assert rates["0"] == 0.0 and rates["1"] == 1.0


def test_bundle_without_table_gives_one_clear_error(tiny: Tiny, tiny_copy: Path) -> None:
    manifest = json.loads((tiny_copy / "manifest.json").read_text())
    del manifest["budget_table"]
    (tiny_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="no budget table"):
        Runtime(tiny_copy, budget=0.5)
    proc = run_cli("run", tiny_copy, tiny.data / "ok" / "0000.png", "--budget", "0.5")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error:") and "re-export" in proc.stderr
