"""``edgeadapt demo``: the main job on the embedded default data set, end to end in a few minutes."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .choices import DEFAULT_EPOCHS
from .data.synthetic import CLASSES, write_dataset
from .errors import UserError
from .runtime.provenance import command_line, provenance
from .spec import TrainSpec

PER_CLASS = 180  # 780 train, 84 calibration, 216 held out: a point of accuracy is about two images
IMAGE_SIZE = 128
EPOCHS = DEFAULT_EPOCHS
FAST_LAYOUT = True  # folded BatchNorm, channels-last: the 1.5x data in about the time 1x took (docs/concepts/backbones.md)
COUPLED_FROM = 9  # the gates of blocks 9-14 decide together: most inputs run blocks 2-7 only (docs/concepts/coupled-gates.md)
BENCH_RUNS = 200  # per setting and rotation (4 settings interleaved): 2/3 of the time 300 took
BENCH_TIMINGS = 2  # rotations at most while the host probe reads unsteady (bench --timings); a third cost 10 s on a slow host
SEED = 0


def demo_spec() -> TrainSpec:
    """The demo's training spec: the defaults, with this module's knobs (``edgeadapt train --config
    demo-out/run/spec.toml`` trains it again)."""
    return TrainSpec(image_size=IMAGE_SIZE, epochs=EPOCHS, gate_scope="block", budget=0.5, couple_from=COUPLED_FROM,
                     fast_layout=FAST_LAYOUT, seed=SEED).check()


def run_demo(out_dir: Path, force: bool = False, log: Callable[[str], None] = print, progress_bar=None) -> dict:
    """Generate data (or reuse it), train at budget 0.5 with gate scope ``block`` and the late gates coupled,
    export, benchmark."""
    from .export.bundle import export_run
    from .runtime.bench import run_bench
    from .runtime.metrics import gap_text
    from .runtime.report import format_table, write_result

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder; choose another --out")
    data, run, bundle = out_dir / "data", out_dir / "run", out_dir / "bundle"
    for sub in (run, bundle, out_dir / "bench.json"):
        if sub.exists() and not force:
            raise UserError(f"{sub} already exists; pass --force to replace the demo's run, bundle and bench.json")
    started = time.perf_counter()
    if not _complete(data):
        log(f"generating {PER_CLASS} images for each of {len(CLASSES)} classes in {data} (seed {SEED})...")
        write_dataset(data, per_class=PER_CLASS, seed=SEED)
    metrics = demo_spec().train(data, run, force=force, log=log, progress_bar=progress_bar)
    export_run(run, bundle, force=force, log=log)
    log("benchmarking (batch 1, gated and all-open interleaved)...")
    result = run_bench(bundle, runs=BENCH_RUNS, threads=None, timings=BENCH_TIMINGS, log=log)
    write_result(out_dir / "bench.json", result)
    summary = {
        "heldout_accuracy": metrics["heldout_accuracy"],
        "heldout_accuracy_all_open": metrics["heldout_accuracy_all_open"],
        "gap_p_value": metrics["gap_p_value"],
        "linear_probe_accuracy": metrics["linear_probe_accuracy"],
        "p50_ms": result["latency_ms"]["p50"],
        "all_open_p50_ms": result["all_open_latency_ms"]["p50"],
        "saving": result["saving"],
        "gate_rates": result["gate_rates"],
        "seconds": time.perf_counter() - started,
        "run": str(run), "bundle": str(bundle), "bench": str(out_dir / "bench.json"),
        "provenance": provenance(command_line()),
    }
    summary["report"] = "\n".join([
        format_table(result),
        "",
        f"held-out accuracy  {summary['heldout_accuracy']:.1%} gated, {summary['heldout_accuracy_all_open']:.1%} "
        f"with every gate open ({gap_text(summary['heldout_accuracy'], summary['heldout_accuracy_all_open'], summary['gap_p_value'])}), "
        f"{summary['linear_probe_accuracy']:.1%} for a linear probe on the frozen backbone",
        f"latency p50        {summary['p50_ms']:.2f} ms gated vs {summary['all_open_p50_ms']:.2f} ms all open: "
        f"saving {summary['saving']:.1%}",
        f"done in {summary['seconds']:.0f}s; bundle {bundle}, benchmark {out_dir / 'bench.json'}",
    ])
    return summary


def _complete(data: Path) -> bool:
    """The generated data set is reused only when every class folder is full."""
    return all(len(list((data / c).glob("*.png"))) == PER_CLASS for c in CLASSES)
