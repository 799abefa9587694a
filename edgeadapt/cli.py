"""The ``edgeadapt`` command. Training and export import torch lazily, so run and bench work without it."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .choices import ACCELERATORS, BUDGET_STATISTICS, DEFAULT_EPOCHS, EXIT_RULES, GATE_SCOPES, MODES
from .errors import UserError

EXIT_ERROR = 1  # bad input or state; click uses 2 for usage mistakes
EXIT_BUDGET_MISSED = 3  # bench --device: a budget of the profile was missed (a CI on the line can gate on it)
BENCH_RUNS = 300
DEVICE_RUNS = 1024  # MLPerf single-stream's minimum query count
DEVICE_MIN_SECONDS = 60.0  # MLPerf asks 600 s; pass --min-duration 600 for a submission-grade run
QUICK_RUNS = 100
FREEZE_STATIC_HELP = ("Gates that never or always opened on the held-out set lose their If, and early exits that no "
                      "held-out input took lose their head (--budget cannot move them).")
TIMINGS_HELP = ("Time the bundles again while the host probe says the host's speed changed, at most this many "
                "rotations in all; the steadiest is reported.")


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _need_training_extra() -> None:
    """One clear line when the workstation extra is not installed."""
    try:
        import onnx  # noqa: F401
        import safetensors  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError(f"this command needs the training extra ({exc.name} is missing): "
                        "pip install 'edgeadapt[train]'") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeadapt")
def cli() -> None:
    """Adapt a frozen pretrained model with sparse gated adapters, export it, run and benchmark it on devices."""


def _backbone_options(command):
    """--backbone, --backbone-dir, --max-length, --blocks, --accelerator and --fast-layout, shared by train and sweep."""
    for option in reversed([
        click.option("--backbone", default="efficientnet_lite0", show_default=True,
                     help="efficientnet_lite0 (images); all-minilm-l6-v2, or bert with --backbone-dir (texts); "
                          "module:pkg.mod:factory with --blocks (your module, .npz data)."),
        click.option("--backbone-dir", default="", type=click.Path(file_okay=False, path_type=str),
                     help="A Hugging Face model directory (config.json, model.safetensors, tokenizer.json) for "
                          "--backbone bert."),
        click.option("--max-length", default=64, show_default=True, type=click.IntRange(4, 512),
                     help="Text backbones: tokens per text (longer texts are truncated)."),
        click.option("--blocks", default="", help="Custom backbones: the pattern naming the gateable blocks, "
                                                  "e.g. 'stage?.*' (docs/custom.md)."),
        click.option("--accelerator", default="auto", show_default=True, type=click.Choice(ACCELERATORS),
                     help="Where training runs: auto takes a CUDA GPU when torch sees one (under torchrun one per "
                          "process, nccl), else the CPU (gloo). Not the target device: that is export/bench --device."),
        click.option("--fast-layout", is_flag=True,
                     help="Fold the frozen BatchNorms into their convs and train channels-last: about 35 % faster "
                          "steps on CPUs, the same model up to float rounding, but a different run than without "
                          "(docs/gating.md, \"Training speed\")."),
    ]):
        command = option(command)
    return command


def _backbone_fields(backbone: str, backbone_dir: str, max_length: int, blocks: str) -> dict:
    """The config fields the backbone options set (the directory made absolute: runs outlive the cwd)."""
    return {"backbone": backbone, "backbone_dir": str(Path(backbone_dir).resolve()) if backbone_dir else "",
            "max_length": max_length, "blocks": blocks}


@cli.command()
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Image folder (one sub-folder per class); a CSV with 'text,label' rows for a text backbone; an "
                   ".npz with X and y for a custom backbone.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run folder to write.")
@_backbone_options
@click.option("--mode", default="sparse", show_default=True,
              type=click.Choice(MODES),
              help="sparse: gated adapters; the rest are baselines to compare with (docs/baselines.md).")
@click.option("--budget", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Target fraction of gated compute that runs (static: of residual-block compute kept).")
@click.option("--budget-statistic", default="mean", show_default=True, type=click.Choice(BUDGET_STATISTICS),
              help="Calibrate thresholds so the mean compute over inputs meets --budget, or the median input's "
                   "(p50 latency follows it; see docs/gating.md).")
@click.option("--gate-scope", default="block", show_default=True, type=click.Choice(GATE_SCOPES),
              help="block: a closed gate skips the frozen block; adapter: it skips only the adapter; exit: early "
                   "exits after stages, a closed gate skips the rest of the network (EfficientNet-Lite0).")
@click.option("--exit-rule", default="confidence", show_default=True, type=click.Choice(EXIT_RULES),
              help="Gate scope exit: leave when the exit's prediction is confident enough (hard inputs go "
                   "deeper), or let a trained gate decide.")
@click.option("--exits", default=None,
              help="Gate scope exit: the backbone blocks after which an exit sits, comma-separated in order "
                   "[default: 2,4,7 on EfficientNet-Lite0, the ends of its stages]. Exits where the features cannot "
                   "tell the classes apart only cost time (docs/gating.md).")
@click.option("--exit-distill", default=None, type=click.FloatRange(0.0),
              help="Gate scope exit: each exit also learns the final head's softened predictions, at this weight "
                   "(self-distillation; see docs/gating.md) [default: 0, labels only].")
@click.option("--exit-expand", default=None, type=click.IntRange(0, 16),
              help="Gate scope exit: each exit head widens its features this many times with a 1x1 conv before "
                   "pooling, so more inputs are sure enough to leave (0: none; see docs/gating.md) [default: 4].")
@click.option("--exit-joint", is_flag=True,
              help="Gate scope exit: the exits' loss also trains the adapters before them (deep supervision); by "
                   "default each exit learns on detached features, so the final head trains as dense's does.")
@click.option("--exit-mix", default=None, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Gate scope exit: an input that passes every exit gets the final head's probabilities mixed with "
                   "this share of the last exit's, which is more accurate than the final head alone (0: off; see "
                   "docs/gating.md) [default: 0.4].")
@click.option("--epochs", default=DEFAULT_EPOCHS, show_default=True, type=click.IntRange(1, 10000))
@click.option("--image-size", default=128, show_default=True, type=click.IntRange(32, 1024))
@click.option("--lr", default=None, type=click.FloatRange(0, min_open=True),
              help="Peak learning rate [default: 1e-2; 1e-4 for --mode full].")
@click.option("--open-weight", default=0.3, show_default=True, type=click.FloatRange(0.0),
              help="Also train the network with every gate open, at this loss weight, so that opening gates at run "
                   "time never costs accuracy (0: off, faster; see docs/gating.md).")
@click.option("--difficulty-weight", default=4.0, show_default=True, type=click.FloatRange(0.0),
              help="Route more of the budget to inputs that gain most from every gate open and less to easy ones "
                   "(needs --open-weight above 0; 0: off; see docs/gating.md).")
@click.option("--couple-from", default=None, type=int,
              help="The gates from this backbone block on train to decide together: each input takes one shallow "
                   "or one deep route through the later blocks, so most inputs run less than the mean and p50 "
                   "latency drops (gate scope block or adapter; docs/gating.md, \"Coupled gates\") [default: off].")
@click.option("--label-smoothing", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.5, max_open=True),
              help="Label smoothing of every cross-entropy term.")
@click.option("--experts", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Adapters per site; above 1 a router picks --top-k of them per input (one If per expert).")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(1, 64), help="Experts each input runs.")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0.05, 0.5), help="Held-out fraction.")
@click.option("--calibration", "calibration_fraction", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="Fraction of the training split kept out of training to calibrate gate thresholds on (0: "
                   "calibrate on training inputs).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
def train(data_dir, out_dir, backbone, backbone_dir, max_length, blocks, accelerator, fast_layout, mode, budget,
          budget_statistic, gate_scope, exit_rule, exits, exit_distill, exit_expand, exit_joint, exit_mix, epochs, image_size, lr,
          open_weight, difficulty_weight, couple_from, label_smoothing, experts, top_k, holdout, calibration_fraction, seed, force,
          as_json) -> None:
    """Train gated adapters (or a baseline) on images, texts or arrays; writes RUN_DIR with weights and
    metrics.json."""
    _need_training_extra()
    from .adapters import GatedAdapterConfig, check_buildable, exit_fields, refuse_exit_options
    from .train import TrainOptions, default_lr, run_training

    exits = _exit_blocks(exits)
    if gate_scope != "exit" or mode != "sparse":
        refuse_exit_options({"--exits": bool(exits), "--exit-distill": exit_distill is not None,
                             "--exit-expand": exit_expand is not None, "--exit-joint": exit_joint,
                             "--exit-mix": exit_mix is not None}, "--gate-scope exit (and --mode sparse)")
    try:
        config = GatedAdapterConfig(image_size=image_size, gate_scope=gate_scope, budget=budget, mode=mode,
                                    budget_statistic=budget_statistic, exit_rule=exit_rule, experts=experts, top_k=top_k,
                                    exits=exits or [], coupled_from=couple_from,
                                    **exit_fields(exit_expand, exit_joint, exit_mix),
                                    **_backbone_fields(backbone, backbone_dir, max_length, blocks))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if config.exits:
        check_buildable(config, "--exits")
    if config.coupled_from is not None:
        check_buildable(config, "--couple-from")
    opts = TrainOptions(epochs=epochs, lr=lr or default_lr(mode), seed=seed, open_weight=open_weight,
                        difficulty_weight=difficulty_weight, label_smoothing=label_smoothing, calibration_fraction=calibration_fraction,
                        exit_distill=exit_distill or 0.0, accelerator=accelerator, fast_layout=fast_layout)
    metrics = run_training(data_dir, out_dir, config, opts, holdout=holdout, force=force, log=_log,
                           progress_bar=_progressbar)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        _report_metrics(metrics, out_dir, as_json)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle folder.")
@click.option("--device", default=None,
              help="Device profile (name or .toml path): choose thresholds that fit its latency budget.")
@click.option("--freeze-static-gates", is_flag=True, help=FREEZE_STATIC_HELP)
def export(run_dir, out_dir, force, device, freeze_static_gates) -> None:
    """Export RUN_DIR to an ONNX bundle (one If per gate), checked against PyTorch."""
    _need_training_extra()
    from .export.bundle import export_run
    from .runtime.devices import resolve_profile

    profile = resolve_profile(device) if device else None
    manifest = export_run(run_dir, out_dir, force=force, log=_log, device=profile, freeze_static=freeze_static_gates)
    click.echo(f"wrote {out_dir}: {len(manifest['gates'])} gates, opset {manifest['opset']}, "
               f"parity {max(manifest['parity_max_abs_diff'].values()):.1e}")


@cli.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None)
@click.option("--budget", type=click.FloatRange(0.0, 1.0), default=None,
              help="Run at this fraction of gated compute (thresholds from the bundle's budget table).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input, one per line.")
def run(bundle_dir, inputs, threads, budget, as_json) -> None:
    """Classify inputs with a bundle; prints label, score and the gates that fired.

    INPUTS are image files; for a text bundle the texts themselves or .csv ('text' column) / .txt (one
    text per line) files of them; for an array bundle .npz files whose rows X are classified one by one."""
    from .runtime import Runtime
    from .runtime.text import read_texts

    rt = Runtime(bundle_dir, threads=threads, budget=budget)
    if rt.kind == "text":
        texts = read_texts(list(inputs))
        results = zip(texts, (p for t in texts for p in rt.predict_texts([t])))  # one at a time, as a device
    elif rt.kind == "array":
        from .runtime.arrays import read_rows

        rows = [(f"{path}[{i}]", x) for path in inputs for i, x in enumerate(read_rows(path)[0])]
        results = ((name, rt.predict(x[None])[0]) for name, x in rows)
    else:
        results = zip(inputs, rt.predict_files(list(inputs)))
    for path, pred in results:
        if as_json:
            click.echo(json.dumps({"input": str(path), **pred.to_dict()}))
        else:
            fired = [k for k, v in pred.gates.items() if v]
            gates = f"\tgates open {len(fired)}/{len(pred.gates)}: {','.join(fired) or '-'}" if pred.gates else ""
            click.echo(f"{path}\t{pred.label}\t{pred.score:.3f}{gates}")


@cli.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Benchmark on these images instead of the held-out samples in the bundle.")
@click.option("--runs", default=None, type=click.IntRange(1, 10**7),
              help=f"Measured inferences [default: {BENCH_RUNS}; with --device {DEVICE_RUNS}].")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0, 10**6))
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="onnxruntime intra-op threads [default: the device's, else onnxruntime's].")
@click.option("--device", default=None, help="Device profile (name or .toml path): its threads, providers and budgets.")
@click.option("--min-duration", default=None, type=click.FloatRange(0),
              help=f"Measure for at least this many seconds [default: 0; with --device {DEVICE_MIN_SECONDS:g}].")
@click.option("--budget", type=click.FloatRange(0.0, 1.0), default=None,
              help="Run at this fraction of gated compute (thresholds from the bundle's budget table).")
@click.option("--spin-wait/--no-spin-wait", default=None,
              help="Idle onnxruntime threads spin for the next operator (fastest) or sleep (for a CPU shared with "
                   "other work) [default: the device's, else spin].")
@click.option("--quick", is_flag=True, help=f"A quick look: {QUICK_RUNS} runs and no minimum duration.")
@click.option("--per-gate", is_flag=True,
              help="Also time each gate closed alone: what it saves on this device against the cost model's share.")
@click.option("--no-cold-start", is_flag=True, help="Skip the fresh-process cold-start measurement.")
@click.option("--timings", default=3, show_default=True, type=click.IntRange(1, 20), help=TIMINGS_HELP)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the result as JSON to this file ('-' for stdout).")
@click.option("--force", is_flag=True, help="Replace an existing --json file.")
def bench(bundle_dir, data_dir, runs, warmup, threads, device, min_duration, budget, spin_wait, quick, per_gate,
          no_cold_start, timings, json_out, force) -> int:
    """Single-stream latency, throughput, memory, gate rates and saving against every gate open.

    With --device, the profile's percentile is the headline and each budget gets a verdict; the exit
    status is 3 when a budget is missed (1 and 2 mean errors and usage mistakes).
    """
    if json_out and str(json_out) != "-":
        _refuse_overwrite(json_out, force)
    from .runtime.bench import format_table, run_bench, write_result
    from .runtime.devices import resolve_profile

    profile = resolve_profile(device) if device else None
    if runs is None:
        runs = QUICK_RUNS if quick else (DEVICE_RUNS if profile else BENCH_RUNS)
    if min_duration is None:
        min_duration = DEVICE_MIN_SECONDS if profile and not quick else 0.0
    with contextlib.ExitStack() as stack:
        progress = _lazy_progress(stack, runs, "benchmarking")
        result = run_bench(bundle_dir, data_dir, runs=runs, warmup=warmup, threads=threads,
                           measure_cold_start=not no_cold_start, progress=progress, device=profile,
                           min_duration_s=min_duration, budget=budget, spin_wait=spin_wait, per_gate=per_gate,
                           timings=timings, log=_log)
    if json_out and str(json_out) == "-":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_table(result))
        if json_out:
            write_result(json_out, result)
    if profile and not result["all_budgets_met"]:
        missed = [name for name, v in result["budgets"].items() if not v["met"]]
        click.echo(f"budget missed on {profile.name}: {', '.join(missed)}", err=True)
        return EXIT_BUDGET_MISSED
    return 0


@cli.command()
@click.option("--out", "out_dir", default=Path("demo-out"), show_default=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace the run and bundle inside --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def demo(out_dir, force, as_json) -> None:
    """Generate the embedded inspection data set, then train, export and benchmark on it."""
    _need_training_extra()
    from .demo import run_demo

    summary = run_demo(out_dir, force=force, log=_log, progress_bar=_progressbar)
    report = summary.pop("report")
    click.echo(json.dumps(summary, indent=2) if as_json else report)


@cli.command()
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Image folder (one sub-folder per class), a text CSV or an array NPZ, as for train.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Sweep folder: runs/, bundles/, sweep.json, sweep.png.")
@_backbone_options
@click.option("--budgets", default="0.25,0.5,0.75", show_default=True, help="Budgets for the sparse and static models.")
@click.option("--modes", default=",".join(MODES), show_default=True)
@click.option("--gate-scopes", default="block", show_default=True,
              help=f"Gate scopes for the sparse model, comma-separated from {', '.join(GATE_SCOPES)}; "
                   "each is trained at every budget (sparse@B for block, sparse-exit@B for exit).")
@click.option("--epochs", default=DEFAULT_EPOCHS, show_default=True, type=click.IntRange(1, 10000))
@click.option("--image-size", default=128, show_default=True, type=click.IntRange(32, 1024))
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1), help="Timed runs per bundle.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace an existing sweep folder.")
@click.option("--resume", is_flag=True, help="Keep the entries an interrupted sweep in --out finished; do the rest.")
@click.option("--exits", default=None, help="Where the exit-scope entries place their exits, as train --exits.")
@click.option("--exit-distill", default=0.0, show_default=True, type=click.FloatRange(0.0),
              help="How the exit-scope entries learn from the final head, as train --exit-distill.")
@click.option("--exit-expand", default=None, type=click.IntRange(0, 16),
              help="How wide the exit-scope entries' exit heads are, as train --exit-expand [default: 4].")
@click.option("--exit-joint", is_flag=True, help="The exit-scope entries' exits also train the adapters before them, "
              "as train --exit-joint.")
@click.option("--exit-mix", default=None, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="How much of the last exit the exit-scope entries mix into the final head, as train --exit-mix "
                   "[default: 0.4].")
@click.option("--freeze-static-gates", is_flag=True, help="Export every sparse entry as 'export --freeze-static-gates' does: "
              + FREEZE_STATIC_HELP)
@click.option("--timings", default=3, show_default=True, type=click.IntRange(1, 20), help=TIMINGS_HELP)
@click.option("--couple-from", default=None, type=int,
              help="The sparse block and adapter entries couple their gates from this backbone block on, as "
                   "train --couple-from does [default: off].")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json on stdout instead of the table.")
def sweep(data_dir, out_dir, backbone, backbone_dir, max_length, blocks, accelerator, fast_layout, budgets, modes, gate_scopes,
          epochs, image_size, runs, seed, force, resume, exits, exit_distill, exit_expand, exit_joint, exit_mix,
          freeze_static_gates, timings, couple_from, as_json) -> None:
    """Train, export and time every mode on one split; sweep.json and an accuracy-latency plot."""
    _need_training_extra()
    from .sweep import SWEEP_PNG, format_sweep, run_sweep

    with contextlib.ExitStack() as stack:
        result = run_sweep(data_dir, out_dir, _csv(modes, str, "--modes"), _csv(budgets, float, "--budgets"), epochs,
                           image_size, runs=runs, seed=seed, force=force, resume=resume, log=_log,
                           backbone=_backbone_fields(backbone, backbone_dir, max_length, blocks),
                           gate_scopes=_csv(gate_scopes, str, "--gate-scopes"), accelerator=accelerator,
                           fast_layout=fast_layout, freeze_static=freeze_static_gates, exits=_exit_blocks(exits),
                           exit_distill=exit_distill, exit_expand=exit_expand, exit_joint=exit_joint,
                           exit_mix=exit_mix, progress=_lazy_progress(stack, runs, "timing"), timings=timings, coupled_from=couple_from)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_sweep(result))
        click.echo(f"wrote {Path(out_dir) / 'sweep.json'} and {Path(out_dir) / SWEEP_PNG}")


@cli.command()
@click.argument("bundle_a", type=click.Path(path_type=Path))
@click.argument("bundle_b", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", default=None, type=click.Path(path_type=Path),
              help="Labelled image folder [default: the first bundle's held-out samples].")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1), help="Timed runs per bundle.")
@click.option("--threads", type=click.IntRange(1, 256), default=None)
@click.option("--json", "json_file", default=None, type=click.Path(path_type=Path), help="Also write the result here.")
@click.option("--plot", "plot_file", default=None, type=click.Path(path_type=Path),
              help="Also draw accuracy against p50 latency here (PNG; needs matplotlib).")
@click.option("--timings", default=3, show_default=True, type=click.IntRange(1, 20), help=TIMINGS_HELP)
@click.option("--force", is_flag=True, help="Replace existing --json and --plot files.")
def compare(bundle_a, bundle_b, data_dir, runs, threads, json_file, plot_file, timings, force) -> None:
    """Two bundles on one data folder: accuracy, macro-F1 and interleaved batch-1 latency."""
    for path in (json_file, plot_file):
        if path:
            _refuse_overwrite(path, force)
    if plot_file:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'edgeadapt[train]' or pip install matplotlib") from None
    from .runtime.bench import write_result
    from .runtime.compare import compare_bundles, format_comparison

    names = [str(bundle_a), str(bundle_b)] if bundle_a.name == bundle_b.name else [bundle_a.name, bundle_b.name]
    with contextlib.ExitStack() as stack:
        result = compare_bundles(dict(zip(names, [bundle_a, bundle_b])), data_dir, runs=runs, threads=threads,
                                 progress=_lazy_progress(stack, runs, "timing"), timings=timings, log=_log)
    click.echo(format_comparison(result))
    if json_file:
        write_result(json_file, result)
    if plot_file:
        from .plot import plot_tradeoff

        plot_tradeoff(result["entries"], plot_file, f"{result['inputs']} inputs, batch 1 on this host")


def _refuse_overwrite(path: Path, force: bool) -> None:
    """Nothing the user had is replaced without --force; checked before any work starts."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to replace it")


def _exit_blocks(text: str | None) -> list[int] | None:
    """``--exits`` as block indices (None when not given; an empty list is refused)."""
    if text is None:
        return None
    blocks = _csv(text, int, "--exits")
    if not blocks:
        raise UserError("--exits is empty; name the blocks after which an exit sits, e.g. --exits 4,7")
    return blocks


def _csv(text: str, kind, option: str) -> list:
    """A comma-separated option as a list, or one clear line saying what is wrong with it."""
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option} must be a comma-separated list, got {text!r}") from None


@cli.group()
def data() -> None:
    """Data sets that ship with the project or its dependencies (no download)."""


@data.command("digits")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Image folder to write.")
@click.option("--size", default=32, show_default=True, type=click.IntRange(8, 512), help="Pixels per side.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
def data_digits(out_dir, size, force) -> None:
    """Write scikit-learn's 1,797 real handwritten digits (UCI, 8x8 scans) as an image folder."""
    from .data.digits import write_digits
    from .rundir import prepare_output, staged_folder

    prepare_output(out_dir, force, "data")
    with staged_folder(out_dir) as tmp:
        n = write_digits(tmp, size)
        classes = sum(1 for folder in Path(tmp).iterdir() if folder.is_dir())
    click.echo(f"wrote {n} digit images in {classes} classes to {out_dir}")


@cli.group()
def devices() -> None:
    """Device profiles: hardware facts, runtime settings and latency/memory budgets per target."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every profile as a JSON list.")
def devices_list(as_json) -> None:
    """List the built-in profiles and host (this machine)."""
    from .runtime.devices import format_table, list_profiles

    profiles = list_profiles()
    click.echo(json.dumps([p.to_dict() for p in profiles], indent=2) if as_json else format_table(profiles))


@devices.command("show")
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
def devices_show(name_or_path, as_json) -> None:
    """Show every field of one profile: a built-in name, host, or a path to a .toml file."""
    from .runtime.devices import format_profile, resolve_profile

    profile = resolve_profile(name_or_path)
    click.echo(json.dumps(profile.to_dict(), indent=2) if as_json else format_profile(profile))


@devices.command("calibrate")
@click.argument("name_or_path")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(5, 10**6))
@click.option("--force", is_flag=True, help="Calibrate even though this host does not match the profile.")
def devices_calibrate(name_or_path, runs, force) -> None:
    """Time the reference workload here, on the device itself, and keep the score in a local profile copy."""
    from .runtime.bench import host_mismatch
    from .runtime.calibrate import calibrate
    from .runtime.devices import resolve_profile

    profile = resolve_profile(name_or_path)
    mismatch = host_mismatch(profile)
    if mismatch and not force:
        raise UserError(f"this host is not {profile.name} ({'; '.join(mismatch)}): run calibrate on the device "
                        "itself, or pass --force")
    calibrated, path = calibrate(profile, runs)
    click.echo(f"{profile.name}: reference workload {calibrated.calibration.reference} median "
               f"{calibrated.calibration.reference_ms:.3f} ms; wrote {path}")


def _report_metrics(metrics: dict, out_dir: Path, as_json: bool) -> None:
    from .runtime.metrics import gap_text

    if as_json:
        click.echo(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
        return
    if metrics.get("mode", "sparse") != "sparse":
        click.echo(f"{metrics['mode']}: held-out accuracy {metrics['heldout_accuracy']:.3f}, macro-F1 "
                   f"{metrics['heldout_macro_f1']:.3f}, {metrics['trainable_parameters']:,} trainable parameters")
    else:
        click.echo(f"held-out accuracy {metrics['heldout_accuracy']:.3f} with gates as deployed, "
                   f"{metrics['heldout_accuracy_all_open']:.3f} with every gate open "
                   f"({gap_text(metrics['heldout_accuracy'], metrics['heldout_accuracy_all_open'], metrics.get('gap_p_value'))}), "
                   f"linear probe {metrics['linear_probe_accuracy']:.3f}")
    click.echo(f"gated compute that runs {metrics['compute_fraction']:.2f} on average, "
               f"{metrics.get('compute_median', metrics['compute_fraction']):.2f} for the median input; "
               f"MACs saved {metrics['mac_saving']:.1%}; wrote {out_dir}")


def _progressbar(**kwargs):
    return click.progressbar(file=sys.stderr, show_pos=True, **kwargs)


def _lazy_progress(stack: contextlib.ExitStack, length: int, label: str) -> Callable[[int], None]:
    """``progress(n)`` for a bar opened on its first update, so that bad input found before the measured
    work fails with one stderr line and no half-drawn bar."""
    bars = []

    def progress(n: int) -> None:
        if not bars:
            bars.append(stack.enter_context(_progressbar(length=length, label=label)))
        bars[0].update(n)

    return progress


def main() -> None:
    """Console entry: user errors become one line on stderr and exit status 1, never a traceback."""
    try:
        status = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)
