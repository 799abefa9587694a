"""Bundles side by side on the same inputs: accuracy, macro-F1, and batch-1 latency timed in one rotation."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .host import host_text
from .inputs import load_inputs
from .metrics import accuracy, accuracy_interval, macro_f1, mcnemar_p, p_text, pareto_front
from .session import Runtime
from .timing import percentiles, time_until_steady


def score(rt: Runtime, images: np.ndarray, targets: np.ndarray) -> dict:
    """Accuracy (with its 95 % interval), macro-F1 and which inputs were right, for one bundle over labelled
    inputs (images in batches of 32, texts one by one); ``correct`` lets two bundles be compared pairwise."""
    if rt.kind == "text":
        prepared = rt.prepare(images)
        preds = [rt.infer(rt.one(prepared, i))[0].argmax(1) for i in range(len(images))]
    else:
        preds = [rt.infer(rt.prepare(images[i:i + 32]))[0].argmax(1) for i in range(0, len(images), 32)]
    pred = np.concatenate(preds)
    correct = pred == np.asarray(targets)
    return {"accuracy": accuracy(pred, targets), "accuracy_ci95": accuracy_interval(correct),
            "macro_f1": macro_f1(pred, targets), "correct": correct.astype(int).tolist()}


def compare_bundles(bundles: dict[str, Path], data: Path | None = None, runs: int = 200,
                    threads: int | None = None, progress: Callable[[int], None] | None = None, timings: int = 1,
                    log: Callable[[str], None] | None = None) -> dict:
    """Score and time several bundles on one data folder (or the first bundle's held-out samples);
    ``progress(1)`` per timed input, up to ``runs``; ``timings``: rotations at most (``measure_bundles``)."""
    runtimes = {name: Runtime(path, threads=threads) for name, path in bundles.items()}
    first = next(iter(runtimes.values()))
    kinds = {rt.kind for rt in runtimes.values()}
    if len(kinds) > 1:
        raise UserError("the bundles take different inputs (images and texts); compare bundles of one kind")
    sizes = {rt.bundle.image_size for rt in runtimes.values()} if kinds == {"image"} else set()
    if len(sizes) > 1:
        raise UserError(f"the bundles take different image sizes ({', '.join(map(str, sorted(sizes)))}); "
                        "compare bundles trained at one size")
    if any(rt.bundle.labels != first.bundle.labels for rt in runtimes.values()):
        raise UserError("the bundles have different labels; compare bundles trained on the same classes")
    images, targets = load_inputs(first, data)
    if targets is None:
        raise UserError(f"--data {data} needs a label for every input (a sub-folder per class, or a CSV "
                        "'label' column), named as the bundles' labels")
    rows, host = measure_bundles(runtimes, images, targets, runs, progress, threads, timings, log)
    return {"inputs": int(len(images)), "runs": runs, "threads": threads or "onnxruntime default",
            "data": str(data) if data else "held-out samples of the first bundle", "host": host, "entries": rows}


def measure_bundles(runtimes: dict[str, Runtime], images: np.ndarray, targets: np.ndarray, runs: int,
                    progress: Callable[[int], None] | None = None, threads: int | None = None, timings: int = 1,
                    log: Callable[[str], None] | None = None) -> tuple[list[dict], dict]:
    """Per bundle: accuracy and macro-F1 on ``images``, batch-1 latency timed in one rotation, Pareto flag;
    and how steadily the host ran meanwhile (``host_summary``).

    While the host probe calls a rotation unsteady the bundles are timed again, ``timings`` rotations at most,
    and the steadiest is kept: its ``host`` lists every rotation's spread (``rotations``)."""
    times, host = time_until_steady({name: (rt, None) for name, rt in runtimes.items()}, images, runs, timings,
                                    threads, log=log, progress=progress)
    rows = [{"name": name, "bundle": str(rt.bundle.root), "mode": rt.bundle.manifest.get("mode", "sparse"),
             **score(rt, images, targets), "latency_ms": percentiles(times[name])} for name, rt in runtimes.items()]
    for row, front in zip(rows, pareto_front([(r["latency_ms"]["p50"], r["accuracy"]) for r in rows])):
        row["pareto"] = front
    return rows, host


def paired_p(a: dict, b: dict) -> float:
    """McNemar p-value of two measured rows (``score``'s ``correct``), scored on the same inputs."""
    return mcnemar_p(np.asarray(a["correct"]), np.asarray(b["correct"]))


def format_comparison(result: dict) -> str:
    """One line per bundle: accuracy, macro-F1, p50/p90, and p50 relative to the first."""
    rows = result["entries"]
    base = rows[0]["latency_ms"]["p50"]
    lines = [f"{result['inputs']} inputs, {result['runs']} timed runs each, batch 1, interleaved",
             f"{'name':22}{'mode':>14}{'acc':>8}{'95% interval':>15}{'F1':>8}{'p50 ms':>9}{'p90 ms':>9}"
             f"{'vs first':>10}  pareto"]
    for r in rows:
        lat = r["latency_ms"]
        lo, hi = r["accuracy_ci95"]
        lines.append(f"{r['name']:22}{r['mode']:>14}{r['accuracy']:8.3f}{f'{lo:.3f}-{hi:.3f}':>15}{r['macro_f1']:8.3f}"
                     f"{lat['p50']:9.2f}{lat['p90']:9.2f}{lat['p50'] / base:9.2f}x  {'*' if r['pareto'] else ''}")
    if len(rows) == 2:
        lines.append(f"accuracy gap {abs(rows[0]['accuracy'] - rows[1]['accuracy']) * 100:.1f} points, "
                     + p_text(paired_p(*rows)))
    if result.get("host"):
        lines.append(host_text(result["host"]))
    return "\n".join(lines)
