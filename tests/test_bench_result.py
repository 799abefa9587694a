"""The benchmark's result (not its speed): inputs, accuracy and gate rates recomputed independently, helpers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ORT_THREADS
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.bench import CLOSED_ALONE, _single_closures, run_bench
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from edgeadapt.runtime.preprocess import load_image
from edgeadapt.runtime.report import _per_gate_lines, format_table, per_gate_figures, write_result
from edgeadapt.runtime.timing import percentiles
from PIL import Image
from tiny_bundle import LABELS, PER_CLASS, Tiny

from edgeadapt.errors import UserError


def test_percentiles_interpolate_linearly() -> None:
    assert percentiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx({"p50": 2.5, "p90": 3.7, "p99": 3.97, "mean": 2.5})
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0, "mean": 7.0}


def test_bench_on_a_labelled_folder(tiny: Tiny) -> None:
    files = sorted(tiny.data.rglob("*.png"))
    result = run_bench(tiny.bundle, data=tiny.data, runs=len(files), warmup=0, threads=ORT_THREADS,
                       measure_cold_start=False)
    rt = Runtime(tiny.bundle, threads=ORT_THREADS)
    images = np.stack([load_image(f, rt.bundle.image_size) for f in files])
    logits, gates = rt.infer(rt.prepare(images))
    targets = np.asarray([rt.bundle.labels.index(f.parent.name) for f in files])
    assert result["inputs"] == len(files) == len(LABELS) * PER_CLASS
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == targets).mean()), abs=1e-12)
    assert list(result["gate_rates"]) == rt.bundle.gate_names
    np.testing.assert_allclose(list(result["gate_rates"].values()), gates.mean(0), atol=1e-12)
    assert result["provider"] == "CPUExecutionProvider" and result["threads"] == ORT_THREADS
    assert "cold_start_ms" not in result


def test_bench_times_again_while_the_host_is_unsteady_and_counts_each_input_once(tiny: Tiny, monkeypatch) -> None:
    """Two rotations (the first unsteady): the second is kept, and accuracy and gate rates are those of one pass
    over the inputs, not of the two rotations added up."""
    import edgeadapt.runtime.timing as timing
    from edgeadapt.runtime.host import host_summary

    n_inputs = len(LABELS) * PER_CLASS  # one pass over the inputs
    spreads = iter([1.8, 1.1])

    class Probe:
        def __init__(self, threads=None, spin_wait=True):
            self.spread = next(spreads)

        def __call__(self) -> None:
            pass

        def summary(self) -> dict:
            return host_summary([1.0] * 5 + [self.spread] * 5)

    monkeypatch.setattr(timing, "HostProbe", Probe)
    said: list[str] = []
    once = run_bench(tiny.bundle, data=tiny.data, runs=n_inputs, warmup=0, threads=ORT_THREADS,
                     measure_cold_start=False)
    spreads = iter([1.8, 1.1])
    twice = run_bench(tiny.bundle, data=tiny.data, runs=n_inputs, warmup=0, threads=ORT_THREADS,
                      measure_cold_start=False, timings=3, log=said.append)
    assert twice["host"]["rotations"] == pytest.approx([1.8, 1.1]) and twice["host"]["steady"]
    assert len(said) == 1 and "timing again, rotation 2 of at most 3" in said[0]
    assert once["host"]["rotations"] == pytest.approx([1.8])  # timings 1 (the default): one rotation, unsteady
    assert twice["runs"] == once["runs"] == n_inputs and twice["accuracy"] == once["accuracy"]
    assert twice["gate_rates"] == pytest.approx(once["gate_rates"], abs=1e-12)


def test_bench_on_unlabelled_images_has_no_accuracy(tiny: Tiny, tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (50, 70), (i * 80, 40, 200)).save(tmp_path / f"{i}.jpg")
    result = run_bench(tiny.bundle, data=tmp_path, runs=4, warmup=1, threads=ORT_THREADS, measure_cold_start=False)
    assert result["inputs"] == 3 and result["accuracy"] is None
    assert "accuracy" not in format_table(result)


def test_bench_rejects_zero_runs(tiny: Tiny) -> None:
    with pytest.raises(UserError, match="--runs must be at least 1"):
        run_bench(tiny.bundle, runs=0, measure_cold_start=False)


def test_progress_is_reported_once_per_run(tiny: Tiny) -> None:
    steps: list[int] = []
    run_bench(tiny.bundle, runs=5, warmup=0, threads=ORT_THREADS, measure_cold_start=False, progress=steps.append)
    assert steps == [1] * 5


def test_format_table_and_write_result(tmp_path: Path) -> None:
    lat = {"p50": 2.0, "p90": 3.0, "p99": 4.0, "mean": 2.5}
    result = {"bundle": "b", "inputs": 3, "runs": 10, "provider": "CPUExecutionProvider", "latency_ms": lat,
              "all_open_latency_ms": {k: 2 * v for k, v in lat.items()}, "saving": 0.5, "throughput_per_s": 400.0,
              "first_inference_ms": 9.0, "peak_rss_mb": 120.0, "accuracy": 0.25,
              "gate_rates": {"block02": 0.5, "block04": 1.0}}
    table = format_table(result)
    assert "saving        50.0% of p50 latency" in table
    assert "accuracy      25.0%" in table
    assert "block02 0.50  block04 1.00" in table
    assert "cold start" not in table
    assert "3 inputs, 10 runs, batch 1, CPUExecutionProvider)" in table
    threaded = format_table({**result, "threads": 2, "spin_wait": False})
    assert "3 inputs, 10 runs, batch 1, CPUExecutionProvider, 2 threads, no spin-wait)" in threaded
    out = tmp_path / "r.json"
    write_result(out, result)
    assert json.loads(out.read_text()) == result
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_per_gate_figures_from_known_timings() -> None:
    other = {"all_open": [10.0, 10.0, 10.0], "all_closed": [4.0, 4.0, 4.0]}
    single = {"a": [9.0, 9.0, 9.0], "b": [7.0, 7.0, 7.0]}  # a saves 1 ms, b 3 ms
    gates = [{"name": "a", "cost": 30}, {"name": "b", "cost": 70}]
    pg = per_gate_figures(single, other, {"a": 0.25, "b": 1.0}, gates)
    assert pg["sum_saved_ms"] == pytest.approx(4.0) and pg["all_closed_saved_ms"] == pytest.approx(6.0)
    assert pg["gates"]["a"] == pytest.approx({"saved_ms": 1.0, "latency_share": 0.25, "cost_share": 0.3, "open_rate": 0.25})
    assert pg["gates"]["b"] == pytest.approx({"saved_ms": 3.0, "latency_share": 0.75, "cost_share": 0.7, "open_rate": 1.0})
    assert pg["max_share_gap"] == pytest.approx(0.05)
    lines = "\n".join(_per_gate_lines(pg))
    assert "a                        1.000   25.0%       30.0%       0.25" in lines
    assert "sum of single savings 4.000 ms; every gate closed at once saves 6.000 ms" in lines
    assert "shares differ by at most 5.0 points" in lines
    assert pg["nested"] is False


def test_per_gate_figures_of_nested_exits_have_no_shares() -> None:
    other = {"all_open": [10.0], "all_closed": [4.0]}
    pg = per_gate_figures({"exit02": [4.5], "exit07": [8.0]}, other, {"exit02": 0.7, "exit07": 0.2},
                          [{"name": "exit02", "cost": 5}, {"name": "exit07", "cost": 1}], nested=True)
    assert pg["nested"] is True and pg["sum_saved_ms"] is None and pg["max_share_gap"] is None
    assert pg["gates"]["exit02"] == {"saved_ms": 5.5, "latency_share": None, "cost_share": None, "open_rate": 0.7}
    lines = "\n".join(_per_gate_lines(pg))
    assert "exit02                   5.500       -           -       0.70" in lines
    assert "early exits nest" in lines and "sum of single savings" not in lines


def test_per_gate_closes_one_gate_at_a_time(tiny: Tiny) -> None:
    rt = Runtime(tiny.bundle, threads=ORT_THREADS)
    settings = _single_closures(rt, rt.bundle.gate_names)
    assert list(settings) == [CLOSED_ALONE + n for n in rt.bundle.gate_names]
    for g, (runtime, thr) in enumerate(settings.values()):
        assert runtime is rt
        assert (thr == CLOSE_ALL).sum() == 1 and thr[g] == CLOSE_ALL and (np.delete(thr, g) == OPEN_ALL).all()
        # the gate closed alone is the only one reported closed
        _, gates = rt.infer(rt.prepare(rt.bundle.samples()[0][:4]), thr)
        assert not gates[:, g].any() and gates[:, np.arange(len(thr)) != g].all()


def test_bench_per_gate_result(tiny: Tiny) -> None:
    result = run_bench(tiny.bundle, runs=6, warmup=1, threads=ORT_THREADS, measure_cold_start=False, per_gate=True)
    pg = result["per_gate"]
    names = Runtime(tiny.bundle, threads=ORT_THREADS).bundle.gate_names
    manifest = json.loads((tiny.bundle / "manifest.json").read_text())
    costs = np.array([g["cost"] for g in manifest["gates"]], float)
    assert list(pg["gates"]) == names
    np.testing.assert_allclose([r["cost_share"] for r in pg["gates"].values()], costs / costs.sum(), rtol=1e-12)
    assert [r["open_rate"] for r in pg["gates"].values()] == list(result["gate_rates"].values())
    assert pg["sum_saved_ms"] == pytest.approx(sum(r["saved_ms"] for r in pg["gates"].values()))
    closed = result["all_open_latency_ms"]["p50"] - result["all_closed_latency_ms"]["p50"]
    assert pg["all_closed_saved_ms"] == pytest.approx(closed)
    assert "gate closed alone" in format_table(result)
    assert "per_gate" not in run_bench(tiny.bundle, runs=2, warmup=0, threads=ORT_THREADS, measure_cold_start=False)
