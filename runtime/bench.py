"""Single-stream (batch 1) benchmark of a bundle: gated vs. the same graph with every gate open.

Orchestration only: timing in ``timing``, inputs in ``inputs``, figures and the text view in ``report``,
device budgets in ``verdict``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .bundle import DENSE, load_bundle, require_gates
from .devices import DeviceProfile
from .gates import CLOSE_ALL, OPEN_ALL
from .inputs import load_inputs
from .provenance import command_line, provenance
from .report import gating_figures, per_gate_figures
from .session import Runtime
from .timing import Setting, cold_start, peak_rss_mb, percentiles, time_until_steady
from .verdict import verdict


def run_bench(bundle_dir: Path, data: Path | None = None, runs: int = 200, warmup: int = 10,
              threads: int | None = None, measure_cold_start: bool = True,
              progress: Callable[[int], None] | None = None, device: DeviceProfile | None = None,
              min_duration_s: float = 0.0, budget: float | None = None, spin_wait: bool | None = None,
              per_gate: bool = False, timings: int = 1, log: Callable[[str], None] | None = None) -> dict:
    """Gated and all-open runs interleaved one to one, so machine noise hits both alike.

    Measures at least ``runs`` queries and for at least ``min_duration_s`` (MLPerf single-stream style);
    with a ``device`` its threads, providers and spin-waiting are used and every budget gets a verdict.
    ``per_gate``: also time every gate closed alone (see ``per_gate_figures``). ``timings``: rotations at most
    while the host probe reads unsteady (``time_until_steady``).
    """
    if runs < 1:
        raise UserError("--runs must be at least 1")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    if per_gate:
        require_gates(bundle, "--per-gate")
    threads = threads or (device.runtime.threads if device else None)
    providers = list(device.runtime.execution_providers) if device else ["CPUExecutionProvider"]
    graph = device.runtime.graph if device else "gated"
    if spin_wait is None:
        spin_wait = device.runtime.spin_wait if device else True
    settings = {"threads": threads, "providers": providers, "budget": budget, "spin_wait": spin_wait}
    rt = Runtime(bundle, graph=graph, **settings)
    gated = rt if graph == "gated" else Runtime(bundle, **settings)
    # the graph without If is timed beside the gated one; when it is the measured graph, it is rt itself
    dense = (Runtime(bundle, graph="dense", **settings)
             if graph == "gated" and bundle.has_gates and (bundle.root / DENSE).exists() else None)
    images, targets = load_inputs(rt, data)
    others = ({"all_open": (gated, np.full_like(rt.thresholds, OPEN_ALL)),
               "all_closed": (gated, np.full_like(rt.thresholds, CLOSE_ALL))} if bundle.has_gates else {})
    if dense is not None:
        others["dense"] = (dense, None)
    singles = _single_closures(gated, bundle.gate_names) if per_gate else {}
    others.update(singles)
    gate_rows: dict[int, np.ndarray] = {}  # per timed call; a rotation timed again repeats the same calls
    correct: dict[int, bool] = {}

    def record(name: str, i: int, out: tuple) -> None:
        if name == "gated":
            gate_rows[i] = out[1][0]
            if targets is not None:
                correct[i] = bool(out[0][0].argmax() == targets[i % len(images)])

    started = time.perf_counter()
    times, host = time_until_steady({"gated": (rt, None), **others}, images, runs, timings, threads, spin_wait, log,
                                    progress, warmup=warmup, min_duration_s=min_duration_s, record=record)
    gated_ms = times.pop("gated")
    single_ms = {key.removeprefix(CLOSED_ALONE): times.pop(key) for key in singles}
    other_ms, i = times, len(gated_ms)
    dense_ms = gated_ms if graph == "dense" else other_ms.get("dense", [])
    latency = percentiles(gated_ms)
    rates = np.mean(list(gate_rows.values()), axis=0)
    result = {
        "bundle": str(bundle_dir),
        "inputs": int(len(images)),
        "runs": i,
        "duration_s": time.perf_counter() - started,
        "threads": threads or "onnxruntime default",
        "spin_wait": spin_wait,
        "provider": rt.provider,
        "provider_warnings": rt.provider_warnings,
        "budget": budget,
        "thresholds": rt.thresholds.tolist(),
        "mode": bundle.manifest.get("mode", "sparse"),
        "graph": graph,
        "latency_ms": latency,
        **gating_figures(latency, other_ms),
        "throughput_per_s": 1000.0 / latency["mean"],
        "first_inference_ms": rt.first_inference_ms,
        "session_ms": rt.session_ms,
        "gate_rates": dict(zip(rt.bundle.gate_names, map(float, rates))),
        "accuracy": sum(correct.values()) / len(correct) if targets is not None else None,
        "peak_rss_mb": peak_rss_mb(),
        "host": host,
        "provenance": provenance(command_line()),
    }
    if single_ms:
        result["per_gate"] = per_gate_figures(single_ms, other_ms, result["gate_rates"], bundle.manifest["gates"],
                                              nested=bundle.manifest.get("gate_scope") == "exit")
    if dense_ms:
        result["dense_latency_ms"] = percentiles(dense_ms)
        result["gating_pays"] = latency["p50"] < result["dense_latency_ms"]["p50"] if graph == "gated" else None
    if device:
        result.update(verdict(device, gated_ms, result["peak_rss_mb"]))
    if measure_cold_start:
        result.update(cold_start(bundle_dir, threads or 0, providers, spin_wait))
    return result


CLOSED_ALONE = "closed alone: "  # settings key prefix of a per-gate run (every other gate open)


def _single_closures(rt: Runtime, names: list[str]) -> dict[str, Setting]:
    """One setting per gate: that gate closed, every other open."""
    out = {}
    for g, name in enumerate(names):
        thr = np.full_like(rt.thresholds, OPEN_ALL)
        thr[g] = CLOSE_ALL
        out[CLOSED_ALONE + name] = (rt, thr)
    return out
