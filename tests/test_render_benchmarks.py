"""docs/benchmarks.md is rendered from result JSON files that carry their provenance; nothing trains here."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "render_benchmarks.py"

_spec = importlib.util.spec_from_file_location("render_benchmarks", SCRIPT)
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)

PROVENANCE = {"command": ["edgeadapt", "bench", "demo-out/bundle", "--json", "b.json"], "edgeadapt_version": "0.2.0",
              "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True, "date": "2026-12-02T10:00:00+00:00",
              "cpu": "Test CPU @ 2.0GHz", "cores": 2, "python": "3.12.3", "onnxruntime": "1.32.0"}


def _lat(p50: float) -> dict:
    return {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "mean": p50 * 1.05}


HOST = {"reference_ms": {"p10": 2.0, "p50": 2.1, "p90": 2.3}, "probes": 15, "spread": 1.15, "steady": True,
        "rotations": [1.62, 1.15]}

DEMO = {"heldout_accuracy": 0.958, "heldout_accuracy_all_open": 0.954, "gap_p_value": 1.0,
        "linear_probe_accuracy": 0.449, "p50_ms": 1.64, "all_open_p50_ms": 2.29, "saving": 0.2838,
        "gate_rates": {"block02": 1.0, "block09": 0.125}, "seconds": 251.4, "run": "demo-out/run",
        "bundle": "demo-out/bundle", "bench": "demo-out/bench.json",
        "provenance": {**PROVENANCE, "command": ["edgeadapt", "demo", "--json"], "dirty": False}}

BENCH = {"bundle": "demo-out/bundle", "inputs": 64, "runs": 300, "duration_s": 3.0, "threads": 2, "spin_wait": None,
         "provider": "CPUExecutionProvider", "provider_warnings": [], "budget": None, "thresholds": [0.1, 0.2],
         "mode": "sparse", "graph": "gated", "latency_ms": {"p50": 1.5, "p90": 1.65, "p99": 1.95, "mean": 1.57},
         "all_open_latency_ms": _lat(2.0),
         "all_closed_latency_ms": _lat(1.0), "saving": 0.25, "saving_ceiling": 0.5, "dense_latency_ms": _lat(1.9),
         "gating_pays": True, "throughput_per_s": 634.9, "first_inference_ms": 3.0, "session_ms": 40.0,
         "gate_rates": {"block02": 0.75, "block04": 1.0}, "accuracy": 0.96875, "peak_rss_mb": 180.2,
         "cold_start_ms": 812.0, "host": HOST, "device": "raspberry-pi-5", "headline_latency_ms": 1.65,
         "budgets": {"latency": {"budget_ms": 25, "percentile": 90, "measured_ms": 1.65, "met": True},
                     "memory": {"budget_mb": 1024, "measured_mb": 180.2, "met": True}},
         "all_budgets_met": True, "host_matches_device": False, "host_mismatch": ["architecture"],
         "provenance": PROVENANCE}


def _entry(name: str, mode: str, acc: float, p50: float, saving: float | None, shared: str | None = None) -> dict:
    return {"name": name, "mode": mode, "accuracy": acc, "accuracy_ci95": [acc - 0.03, min(1.0, acc + 0.02)],
            "macro_f1": acc, "latency_ms": _lat(p50), "saving_vs_dense": saving, "compute_fraction": 0.26,
            "trainable_parameters": 118318, "training_seconds": 17.2 if shared else 119.0, "weights_from": shared,
            "pareto": True, "correct": [1, 0]}


SWEEP = {"data": "demo-out/data", "backbone": "efficientnet_lite0", "image_size": 128, "epochs": 24, "seed": 0,
         "runs": 600, "heldout_inputs": 216, "host": HOST,
         "entries": [_entry("dense", "dense", 0.963, 1.80, 0.0),
                     _entry("sparse-exit@0.25", "sparse", 0.963, 0.84, 0.533),
                     _entry("sparse-exit@0.3", "sparse", 0.968, 0.85, 0.528, shared="sparse-exit@0.25")],
         "summary": {"fastest_sparse_within_1pt_of_dense": "sparse-exit@0.25", "its_saving_vs_dense": 0.533,
                     "its_p_value_vs_dense": 1.0, "sparse_vs_static": [],
                     "fastest_sparse_holding_both": {"name": "sparse-exit@0.25", "saving_vs_dense": 0.533,
                                                     "accuracy_vs_dense": 0.0}},
         "provenance": {**PROVENANCE, "command": ["edgeadapt", "sweep", "--data", "demo-out/data", "--out", "my sweep"],
                        "commit": None, "dirty": None}}


def _write(folder: Path, **results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        (folder / f"{name}.json").write_text(json.dumps(result))
    return folder


def _section(page: str, title: str) -> str:
    start = page.index(f"## {title}")
    end = page.find("\n## ", start + 1)
    return page[start:end]


def test_demo_section_names_its_provenance_and_figures() -> None:
    page = rb.render({"demo.json": DEMO})
    section = _section(page, "demo (demo)")
    assert "- command: `edgeadapt demo --json`" in section
    assert "- code: edgeadapt 0.2.0, commit 0123456789abcdef0123456789abcdef01234567\n" in section  # clean checkout
    assert "- date: 2026-12-02T10:00:00+00:00" in section
    assert "- host: Test CPU @ 2.0GHz, 2 cores; Python 3.12.3, onnxruntime 1.32.0" in section
    assert "| held-out accuracy, gates as deployed | 95.8 % |" in section
    assert "| p50 latency, gated / every gate open | 1.64 ms / 2.29 ms |" in section
    assert "| saving (1 − p50 / all-open p50) | 28.4 % |" in section
    assert "| gate open rates (benchmark inputs) | block02 100 %, block09 12 % |" in section
    assert "| demo wall time (data, training, export, benchmark) | 251 s |" in section


def test_bench_section_has_latency_saving_host_and_device_verdict() -> None:
    section = _section(rb.render({"bench-pi5.json": BENCH}), "bench-pi5 (bench)")
    assert "(with uncommitted changes)" in section
    assert "- command: `edgeadapt bench demo-out/bundle --json b.json`" in section
    assert "| gated latency p50 / p90 / p99 / mean | 1.50 ms / 1.65 ms / 1.95 ms / 1.57 ms |" in section
    assert "| saving (1 − p50 / all-open p50) | 25.0 % |" in section
    assert "| every gate closed, p50; saving ceiling | 1.00 ms; 50.0 % |" in section
    assert "| graph without If, p50 | 1.90 ms (gating pays) |" in section
    assert "| accuracy | 96.9 % |" in section
    assert "| host probe | spread 1.15 (steady), the steadiest of 1.62, 1.15 |" in section
    assert "| device raspberry-pi-5: p90 latency | 1.65 ms against 25 ms: met |" in section
    assert "| host is the device | no: the figures describe this host |" in section


def test_sweep_section_has_one_row_per_entry_and_the_claim() -> None:
    section = _section(rb.render({"sweep-demo.json": SWEEP}), "sweep-demo (sweep)")
    assert "- command: `edgeadapt sweep --data demo-out/data --out 'my sweep'`" in section  # quoted as a shell would
    assert "commit not from a git checkout" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| name")]
    assert [r.split(" | ")[0] for r in rows] == ["| dense", "| sparse-exit@0.25", "| sparse-exit@0.3"]
    assert rows[1] == "| sparse-exit@0.25 | 0.963 | 0.933-0.983 | 0.84 | 0.92 | 53 % | 0.26 | 118,318 | 119 |"
    assert rows[2].endswith("| 17 (shared) |")
    assert "`sparse-exit@0.25`, 53 % below dense p50, +0.0 points against dense." in section
    assert "216 held-out inputs, 600 timed runs per bundle" in section


def test_sections_follow_file_names_and_the_empty_page_says_how_to_add_one() -> None:
    page = rb.render({"sweep-demo.json": SWEEP, "bench-pi5.json": BENCH, "demo.json": DEMO})
    assert page.index("## bench-pi5") < page.index("## demo (demo)") < page.index("## sweep-demo")
    empty = rb.render({})
    assert "No results are recorded yet." in empty
    assert "edgeadapt demo --json > docs/benchmarks/demo.json" in empty and "## Adding a result" in empty


def test_script_writes_the_page_atomically_and_checks_it(tmp_path: Path) -> None:
    results = _write(tmp_path / "results", demo=DEMO, sweep=SWEEP)
    out = tmp_path / "page.md"
    args = [sys.executable, str(SCRIPT), "--results", str(results), "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == rb.render(rb.load_results(results))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.md", "results"]  # no temporary file left
    assert subprocess.run([*args, "--check"], capture_output=True).returncode == 0
    out.write_text("stale\n")
    check = subprocess.run([*args, "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "out of date" in check.stderr
    assert out.read_text() == "stale\n"  # --check writes nothing


@pytest.mark.parametrize("broken, message", [
    ({k: v for k, v in BENCH.items() if k != "provenance"}, "bench-old.json: no provenance object"),
    ({**BENCH, "provenance": {"command": ["edgeadapt"]}}, "bench-old.json: no provenance object"),
    ({"something": 1, "provenance": PROVENANCE}, "bench-old.json: not a result of edgeadapt"),
    ({**BENCH, "latency_ms": {"p50": 1.0}}, "bench-old.json: a field is missing"),
])
def test_script_refuses_a_result_it_cannot_trust_in_one_line(tmp_path: Path, broken: dict, message: str) -> None:
    results = _write(tmp_path / "results", demo=DEMO, **{"bench-old": broken})
    out = tmp_path / "page.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {message}") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and not out.exists()


def test_script_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "half.json").write_text('{"latency_ms": ')
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--out", str(tmp_path / "p.md")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("error: half.json: cannot read it as JSON")


def test_docs_benchmarks_page_is_what_the_renderer_makes_of_the_committed_results() -> None:
    expected = rb.render(rb.load_results(ROOT / "docs" / "benchmarks"), rb.load_plots(ROOT / "docs" / "benchmarks"))
    assert (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8") == expected, (
        "docs/benchmarks.md is out of date: run python3 tools/render_benchmarks.py")


def test_a_sweep_plot_beside_its_result_is_shown_under_its_table(tmp_path: Path) -> None:
    results = _write(tmp_path / "results", demo=DEMO, sweep=SWEEP)
    (results / "sweep.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = rb.render(rb.load_results(results), rb.load_plots(results))
    section = _section(page, "sweep (sweep)")
    assert section.rstrip().endswith("![sweep: accuracy against p50 latency](benchmarks/sweep.png)")
    assert "benchmarks/demo.png" not in page  # no plot, no link
