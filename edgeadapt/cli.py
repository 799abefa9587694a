"""The ``edgeadapt`` command. Training and export import torch lazily, so run and bench work without it."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .choices import GATE_SCOPES, MODES
from .errors import UserError

if TYPE_CHECKING:
    from .spec import TrainSpec

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


def _spec_epilog(skip: tuple[str, ...] = ()) -> str:
    """Every spec key with its default, for the help's end: the keys without an option of their own are set there."""
    import textwrap

    from .spec import DEFAULTS

    def shown(v) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v)) or "''"
        return "none" if v is None else str(v) or "''"

    keys = ", ".join(f"{k}={shown(v)}" for k, v in DEFAULTS.to_dict().items() if k not in skip)
    head = ("Spec keys and their defaults, for --set KEY=VALUE or the --config file (lists comma-separated; none "
            "unsets lr or couple_from):")
    return "\b\n" + "\n".join(textwrap.wrap(head, 78) + textwrap.wrap(keys, 78))


def _spec_options(grid: bool):
    """--config, --set and the spec keys shown as options, shared by train and sweep (``grid``: the sweep, whose
    mode, budget and gate scope are grid axes instead)."""
    from .spec import DEFAULTS as D

    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A training spec (TOML, keys as --set takes them; a run's or sweep's spec.toml trains it "
                          "again)."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                     help="Set any spec key (repeatable; keys below), e.g. --set exits=2,4,7. Precedence: defaults < "
                          "--config < options < --set."),
        click.option("--backbone", default=None,
                     help="efficientnet_lite0 (images); all-minilm-l6-v2, or bert with --backbone-dir (texts); "
                          "module:pkg.mod:factory with --set blocks=PATTERN (your module, .npz data). "
                          f"[default: {D.backbone}]"),
        click.option("--backbone-dir", default=None, type=click.Path(file_okay=False, path_type=str),
                     help="A Hugging Face model directory (config.json, model.safetensors, tokenizer.json) for "
                          "--backbone bert."),
    ]
    if not grid:
        options += [
            click.option("--mode", default=None, type=click.Choice(MODES),
                         help="sparse: gated adapters; the rest are baselines to compare with (docs/concepts/gates-and-scopes.md). "
                              f"[default: {D.mode}]"),
            click.option("--budget", default=None, type=click.FloatRange(0.0, 1.0, min_open=True),
                         help="Target fraction of gated compute that runs (static: of residual-block compute kept). "
                              f"[default: {D.budget}]"),
            click.option("--gate-scope", default=None, type=click.Choice(GATE_SCOPES),
                         help="block: a closed gate skips the frozen block; adapter: only the adapter; exit: early "
                              "exits after stages skip the rest of the network (EfficientNet-Lite0). "
                              f"[default: {D.gate_scope}]"),
        ]
    options += [
        click.option("--epochs", default=None, type=click.IntRange(1, 10000), help=f"[default: {D.epochs}]"),
        click.option("--image-size", default=None, type=click.IntRange(32, 1024), help=f"[default: {D.image_size}]"),
        click.option("--seed", default=None, type=int, help=f"[default: {D.seed}]"),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _resolve_spec(config_file: Path | None, options: dict, settings: tuple[str, ...]) -> TrainSpec:
    """The spec a command trains: defaults < --config file < the options given < --set."""
    from .spec import DEFAULTS, TrainSpec

    spec = TrainSpec.from_toml(config_file) if config_file else DEFAULTS
    spec = spec.replace(**{k: v for k, v in options.items() if v is not None}).with_settings(settings)
    if spec.backbone_dir:  # made absolute: runs and sweeps outlive the cwd
        spec = spec.replace(backbone_dir=str(Path(spec.backbone_dir).resolve()))
    return spec


@cli.command(epilog=_spec_epilog())
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Image folder (one sub-folder per class); a CSV with 'text,label' rows for a text backbone; an "
                   ".npz with X and y for a custom backbone.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run folder to write.")
@_spec_options(grid=False)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
def train(data_dir, out_dir, config_file, settings, force, as_json, **options) -> None:
    """Train gated adapters (or a baseline) on images, texts or arrays; writes RUN_DIR with weights, metrics.json
    and spec.toml (train --config RUN_DIR/spec.toml trains the same run again)."""
    spec = _resolve_spec(config_file, options, settings).check()
    _need_training_extra()
    spec.check_buildable()  # exits and coupling the network rejects fail here, before any data is read
    metrics = spec.train(data_dir, out_dir, force=force, log=_log, progress_bar=_progressbar)
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
    from .runtime.bench import run_bench
    from .runtime.devices import resolve_profile
    from .runtime.report import format_table, write_result

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


@cli.command(epilog=_spec_epilog(skip=("mode", "budget", "gate_scope")))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Image folder (one sub-folder per class), a text CSV or an array NPZ, as for train.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Sweep folder: runs/, bundles/, spec.toml, sweep.json, sweep.png.")
@_spec_options(grid=True)
@click.option("--modes", default=None, help=f"Grid axis: the modes to train. [default: {','.join(MODES)}]")
@click.option("--budgets", default=None, help="Grid axis: budgets for the sparse and static models. "
              "[default: 0.25,0.5,0.75]")
@click.option("--gate-scopes", default=None,
              help=f"Grid axis: gate scopes for the sparse model, from {', '.join(GATE_SCOPES)}; each is trained at "
                   "every budget (sparse@B for block, sparse-exit@B for exit). [default: block]")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1), help="Timed runs per bundle.")
@click.option("--timings", default=3, show_default=True, type=click.IntRange(1, 20), help=TIMINGS_HELP)
@click.option("--freeze-static-gates", is_flag=True, help="Export every sparse entry as 'export --freeze-static-gates' does: "
              + FREEZE_STATIC_HELP)
@click.option("--resume", is_flag=True, help="Keep the entries an interrupted sweep in --out finished and do the rest; "
              "the spec must be the kept sweep's (its spec.toml).")
@click.option("--force", is_flag=True, help="Replace an existing sweep folder.")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json on stdout instead of the table.")
def sweep(data_dir, out_dir, config_file, settings, modes, budgets, gate_scopes, runs, timings, freeze_static_gates,
          resume, force, as_json, **options) -> None:
    """Train, export and time every mode on one split, each entry with the same training spec at its grid point;
    spec.toml, sweep.json and an accuracy-latency plot."""
    from .spec import GRID_AXES

    for setting in settings:
        key = setting.partition("=")[0].strip()
        if key in GRID_AXES:
            raise UserError(f"--set {key}: a sweep sets {key} per entry; use --{key.replace('_', '-')}s")
    spec = _resolve_spec(config_file, options, settings)
    _need_training_extra()
    from .sweep import SWEEP_PNG, format_sweep, read_grid, run_sweep

    grid = read_grid(config_file).replace(**{k: _csv(v, kind, f"--{k.replace('_', '-')}") for k, v, kind in (
        ("modes", modes, str), ("budgets", budgets, float), ("gate_scopes", gate_scopes, str)) if v is not None})
    with contextlib.ExitStack() as stack:
        result = run_sweep(data_dir, out_dir, spec, grid, runs=runs, force=force, resume=resume, log=_log,
                           freeze_static=freeze_static_gates, progress=_lazy_progress(stack, runs, "timing"),
                           timings=timings)
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
    from .runtime.compare import compare_bundles, format_comparison
    from .runtime.report import write_result

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


@data.command("tickets")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="CSV file to write.")
@click.option("--per-class", default=80, show_default=True, type=click.IntRange(2, 100000), help="Tickets per label.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def data_tickets(out_file, per_class, seed, force) -> None:
    """Write generated maintenance tickets (text,label; three fault labels) for the text backbones."""
    from .data.synthetic_text import CUES, write_text_dataset

    if out_file.is_dir():
        raise UserError(f"{out_file} is a folder; --out names the CSV file to write")
    _refuse_overwrite(out_file, force)
    write_text_dataset(out_file, per_class=per_class, seed=seed)
    click.echo(f"wrote {per_class * len(CUES)} tickets in {len(CUES)} classes to {out_file}")


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


def _score_options(f: Callable) -> Callable:
    """The options ``devices score`` and its old name ``devices calibrate`` share."""
    f = click.option("--force", is_flag=True, help="Score even though this host does not match the profile.")(f)
    f = click.option("--runs", default=100, show_default=True, type=click.IntRange(5, 10**6))(f)
    return click.argument("name_or_path")(f)


@devices.command("score")
@_score_options
def devices_score(name_or_path, runs, force) -> None:
    """Time the reference workload here, on the device itself, and keep the score in a local profile copy."""
    from .runtime.devices import resolve_profile
    from .runtime.scoring import score_device
    from .runtime.verdict import host_mismatch

    profile = resolve_profile(name_or_path)
    mismatch = host_mismatch(profile)
    if mismatch and not force:
        raise UserError(f"this host is not {profile.name} ({'; '.join(mismatch)}): run 'devices score' on the "
                        "device itself, or pass --force")
    scored, path = score_device(profile, runs)
    click.echo(f"{profile.name}: reference workload {scored.score.reference} median "
               f"{scored.score.reference_ms:.3f} ms; wrote {path}")


@devices.command("calibrate", hidden=True)
@_score_options
@click.pass_context
def devices_calibrate(ctx, name_or_path, runs, force) -> None:
    """Old name of ``devices score``."""
    click.echo("note: 'devices calibrate' is deprecated; it is now 'devices score' (same arguments)", err=True)
    ctx.invoke(devices_score, name_or_path=name_or_path, runs=runs, force=force)


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
