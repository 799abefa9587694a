"""Single-stream (batch 1) benchmark of a bundle: gated vs. the same graph with every gate open."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .bundle import load_bundle
from .preprocess import load_image
from .session import ALL_OPEN, Runtime

COLD_START_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from edgeadapt.runtime import Runtime
t1 = time.perf_counter()
rt = Runtime(sys.argv[1], threads=int(sys.argv[2]) or None)
t2 = time.perf_counter()
images, _ = rt.bundle.samples()
rt.predict(images[:1])
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "session_ms": (t2 - t1) * 1e3, "first_inference_ms": (t3 - t2) * 1e3}))
"""


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """The latency summary used everywhere: p50, p90, p99 and mean, in milliseconds."""
    a = np.asarray(samples_ms, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cold_start(bundle_dir: Path, threads: int) -> dict[str, float]:
    """A fresh interpreter: import, session, first inference; wall time seen from outside included."""
    started = time.perf_counter()
    # run from a neutral folder: ``python -c`` puts the working folder first on sys.path
    proc = subprocess.run([sys.executable, "-c", COLD_START_SNIPPET, str(Path(bundle_dir).resolve()), str(threads or 0)],
                          capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    wall = (time.perf_counter() - started) * 1e3
    if proc.returncode != 0:
        raise UserError(f"cold-start run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"cold_start_ms": wall, **{f"cold_{k}": v for k, v in inner.items()}}


def load_inputs(rt: Runtime, data: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Real inputs: the bundle's held-out samples, or every image under ``data`` (labels if foldered)."""
    if data is None:
        return rt.bundle.samples()
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder of images")
    from .preprocess import IMAGE_SUFFIXES

    files = sorted(f for f in data.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--data {data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = np.stack([load_image(f, rt.bundle.image_size) for f in files])
    labels = rt.bundle.labels
    targets = [labels.index(f.parent.name) if f.parent.name in labels else -1 for f in files]
    return images, (np.asarray(targets) if min(targets) >= 0 else None)


def run_bench(bundle_dir: Path, data: Path | None = None, runs: int = 200, warmup: int = 10,
              threads: int | None = None, measure_cold_start: bool = True,
              progress: Callable[[int], None] | None = None) -> dict:
    """Gated and all-open runs interleaved one to one, so machine noise hits both alike."""
    if runs < 1:
        raise UserError("--runs must be at least 1")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    created = time.perf_counter()
    rt = Runtime(bundle, threads=threads)
    session_ms = (time.perf_counter() - created) * 1e3
    images, targets = load_inputs(rt, data)
    xs = rt.prepare(images)
    open_thr = np.full_like(rt.thresholds, ALL_OPEN)
    started = time.perf_counter()
    rt.infer(xs[:1])
    first_ms = (time.perf_counter() - started) * 1e3
    for i in range(warmup):
        rt.infer(xs[i % len(xs)][None])
        rt.infer(xs[i % len(xs)][None], open_thr)
    gated_ms, open_ms, gate_rows, correct = [], [], [], 0
    for i in range(runs):
        x = xs[i % len(xs)][None]
        t = time.perf_counter()
        logits, gates = rt.infer(x)
        gated_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        rt.infer(x, open_thr)
        open_ms.append((time.perf_counter() - t) * 1e3)
        gate_rows.append(gates[0])
        if targets is not None:
            correct += int(logits[0].argmax() == targets[i % len(xs)])
        if progress:
            progress(1)
    latency, all_open = percentiles(gated_ms), percentiles(open_ms)
    rates = np.mean(gate_rows, axis=0)
    result = {
        "bundle": str(bundle_dir),
        "inputs": int(len(xs)),
        "runs": runs,
        "threads": threads or "onnxruntime default",
        "provider": rt.session.get_providers()[0],
        "latency_ms": latency,
        "all_open_latency_ms": all_open,
        "saving": 1.0 - latency["p50"] / all_open["p50"],
        "throughput_per_s": 1000.0 / latency["mean"],
        "first_inference_ms": first_ms,
        "session_ms": session_ms,
        "gate_rates": dict(zip(rt.bundle.gate_names, map(float, rates))),
        "accuracy": correct / runs if targets is not None else None,
        "peak_rss_mb": peak_rss_mb(),
    }
    if measure_cold_start:
        result.update(cold_start(bundle_dir, threads or 0))
    return result


def format_table(r: dict) -> str:
    """The human view of a benchmark result."""
    lat, op = r["latency_ms"], r["all_open_latency_ms"]
    lines = [
        f"bundle        {r['bundle']}  ({r['inputs']} inputs, {r['runs']} runs, batch 1, {r['provider']})",
        f"{'':14}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}   ms",
        f"{'gated':14}" + "".join(f"{lat[k]:9.2f}" for k in ("p50", "p90", "p99", "mean")),
        f"{'all gates open':14}" + "".join(f"{op[k]:9.2f}" for k in ("p50", "p90", "p99", "mean")),
        f"saving        {r['saving'] * 100:.1f}% of p50 latency against every gate open",
        f"throughput    {r['throughput_per_s']:.1f} inferences/s (single stream)",
        f"first infer   {r['first_inference_ms']:.1f} ms" + (
            f"   cold start {r['cold_start_ms']:.0f} ms (fresh process: import + session + first inference)"
            if "cold_start_ms" in r else ""),
        f"peak memory   {r['peak_rss_mb']:.0f} MB resident",
    ]
    if r.get("accuracy") is not None:
        lines.append(f"accuracy      {r['accuracy'] * 100:.1f}% on the benchmark inputs")
    lines.append("gate open rate  " + "  ".join(f"{k} {v:.2f}" for k, v in r["gate_rates"].items()))
    return "\n".join(lines)


def write_result(path: Path, result: dict) -> None:
    """JSON through a temporary name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
