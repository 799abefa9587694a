"""``edgeadapt sweep``: every mode, and the sparse and static models at every budget, trained on one split,
exported, and timed side by side; writes sweep.json and an accuracy-latency plot with the Pareto front."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .adapters import GATE_SCOPES, MODES, GatedAdapterConfig, check_buildable, exit_fields, refuse_exit_options
from .choices import model_kind
from .errors import UserError
from .rundir import CONFIG, METRICS, RunDir, prepare_output, write_json
from .runtime.bundle import MANIFEST
from .runtime.compare import measure_bundles, paired_p
from .runtime.host import host_text
from .runtime.metrics import p_text
from .runtime.session import Runtime
from .train import TrainOptions, default_lr, run_training

SWEEP_JSON = "sweep.json"
SWEEP_PNG = "sweep.png"
BUDGETED = ("sparse", "static")  # modes trained once per budget


@dataclass
class SweepEntry:
    """One model of the sweep: its mode, its budget (for sparse and static), its gate scope and its folder name."""

    mode: str
    budget: float | None
    gate_scope: str = "block"

    @property
    def name(self) -> str:
        """``sparse@0.5`` for block gates (the default scope), ``sparse-exit@0.5`` for another scope."""
        kind = model_kind(self.mode, self.gate_scope)
        return kind if self.budget is None else f"{kind}@{self.budget:g}"


def plan(modes: list[str], budgets: list[float], gate_scopes: list[str] = ("block",)) -> list[SweepEntry]:
    """The entries in the order they are trained: cheap baselines first, full fine-tuning last.

    The sparse model is trained once per gate scope and budget; the other modes ignore the scope.
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise UserError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    unknown = sorted(set(gate_scopes) - set(GATE_SCOPES))
    if unknown or not gate_scopes:
        raise UserError(f"unknown gate scope(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(GATE_SCOPES)}")
    if not budgets or any(not 0 < b <= 1 for b in budgets):
        raise UserError(f"--budgets must be fractions in (0, 1], got {budgets}")
    order = ["linear-probe", "dense", "static", "sparse", "full"]
    entries = []
    for m in (m for m in order if m in modes):
        for scope in (dict.fromkeys(gate_scopes) if m == "sparse" else ["block"]):
            entries += [SweepEntry(m, b if m in BUDGETED else None, scope) for b in (budgets if m in BUDGETED else [None])]
    return entries


def run_sweep(data: Path, out: Path, modes: list[str], budgets: list[float], epochs: int, image_size: int,
              runs: int = 200, seed: int = 0, force: bool = False, resume: bool = False,
              log: Callable[[str], None] = print, backbone: dict | None = None,
              gate_scopes: list[str] = ("block",), accelerator: str = "auto", fast_layout: bool = False,
              freeze_static: bool = False, exits: list[int] | None = None, exit_distill: float = 0.0,
              exit_expand: int | None = None, exit_joint: bool = False, exit_mix: float | None = None,
              progress: Callable[[int], None] | None = None, timings: int = 1, coupled_from: int | None = None) -> dict:
    """Train and export every entry into ``out/runs`` and ``out/bundles``, then time them all in one rotation.

    ``resume`` keeps the entries an earlier, interrupted sweep finished (each is complete or absent on disk).
    ``backbone``: config fields naming another backbone (``backbone``, ``backbone_dir``, ``max_length``,
    ``blocks``); the data is then a text CSV or an array NPZ. ``accelerator`` and ``fast_layout``: how each
    entry trains (``train --accelerator``, ``--fast-layout``). ``freeze_static``: how each entry exports
    (``export --freeze-static-gates``); a kept entry exported the other way is exported again, not retrained.
    ``exits``: where the exit-scope entries place their exits (``train --exits``; None: the backbone's default);
    a kept exit entry trained with others, or with another ``exit_distill``, ``exit_expand``, ``exit_joint`` or
    ``exit_mix`` (``train --exit-distill``, ``--exit-expand``, ``--exit-joint``, ``--exit-mix``; None: the config's
    default),
    stops the sweep before anything trains. ``progress(1)`` per input
    timed, up to ``runs``; ``timings``: rotations at most while the host is unsteady (``measure_bundles``).
    ``coupled_from``: the sparse block and adapter entries couple their gates from this block on (``train
    --couple-from``); a kept entry coupled otherwise stops the sweep before anything trains.
    """
    from .data import check_data, holdout_samples
    from .export.bundle import export_run
    from .plot import plot_tradeoff

    entries = plan(modes, budgets, gate_scopes)
    backbone = backbone or {}
    for scope in gate_scopes if "sparse" in modes else ():  # every scope must suit the backbone before training
        try:
            GatedAdapterConfig(image_size=image_size, gate_scope=scope, **backbone)
        except ValueError as exc:
            raise UserError(f"--gate-scopes {scope}: {exc}") from None
    if "exit" not in gate_scopes:
        refuse_exit_options({"--exits": bool(exits), "--exit-distill": bool(exit_distill),
                             "--exit-expand": exit_expand is not None, "--exit-joint": exit_joint,
                             "--exit-mix": exit_mix is not None}, "exit in --gate-scopes")
    expand = exit_fields(exit_expand, exit_joint, exit_mix)
    coupled = [e for e in entries if _couples(e)]
    if coupled_from is not None:
        if not coupled:
            raise UserError("--couple-from couples the gates of sparse block or adapter entries; it needs sparse in "
                            "--modes and block or adapter in --gate-scopes")
        check_buildable(GatedAdapterConfig(image_size=image_size, gate_scope=coupled[0].gate_scope,
                                           coupled_from=coupled_from, **backbone), "--couple-from")
    planned_exits = None  # the exit entries' config as this sweep builds it: where the exits go, defaults filled in
    if "exit" in gate_scopes and "sparse" in modes:
        planned_exits = check_buildable(GatedAdapterConfig(image_size=image_size, gate_scope="exit",
                                                           exits=list(exits or []), **expand, **backbone), "--exits")
        exits = planned_exits.exits
    check_data(data, GatedAdapterConfig(image_size=image_size, **backbone))  # before the sweep folder exists
    out = Path(out)
    if not resume:
        prepare_output(out, force, "sweep")
    out.mkdir(parents=True, exist_ok=True)
    kept_exits: dict[str, GatedAdapterConfig] = {}  # the configs of kept exit runs, checked before any training
    for entry in entries if resume else ():  # kept sparse runs must be built and trained as this sweep asks
        run_dir = out / "runs" / entry.name
        if entry.mode != "sparse" or not (run_dir / CONFIG).exists():
            continue
        built, train = _kept_config(run_dir)
        if entry.gate_scope == "exit":
            _kept_exits_match(built, train, planned_exits, exit_distill, entry.name)
            kept_exits[entry.name] = built
        else:
            _kept_coupling_matches(built, coupled_from, entry.name)
    trained = []
    shared: Path | None = None  # the first budget-free run (confidence exits): the others share its weights
    for k, entry in enumerate(entries, 1):
        run_dir, bundle_dir = out / "runs" / entry.name, out / "bundles" / entry.name
        freeze = freeze_static and entry.mode == "sparse"  # the baselines have no gates to freeze
        if resume and (bundle_dir / MANIFEST).exists() and (run_dir / METRICS).exists():
            metrics = RunDir(run_dir).load_json(METRICS)
            log(f"[{k}/{len(entries)}] {entry.name}: kept from the earlier sweep")
            if RunDir(bundle_dir).load_json(MANIFEST).get("freeze_static_gates", False) != freeze:
                export_run(run_dir, bundle_dir, force=True, log=lambda s: None, freeze_static=freeze)
                log(f"[{k}/{len(entries)}] {entry.name}: exported again, "
                    f"{'with' if freeze else 'without'} --freeze-static-gates")
            trained.append((entry, run_dir, bundle_dir, metrics))
            if shared is None and entry.name in kept_exits and kept_exits[entry.name].budget_free_training:
                shared = run_dir
            continue
        config = GatedAdapterConfig(image_size=image_size, mode=entry.mode, budget=entry.budget or 0.5,
                                    gate_scope=entry.gate_scope, exits=list(exits or []) if entry.gate_scope == "exit" else [],
                                    coupled_from=coupled_from if _couples(entry) else None,
                                    **(expand if entry.gate_scope == "exit" else {}), **backbone)
        sibling = shared if config.budget_free_training else None
        log(f"[{k}/{len(entries)}] {entry.name}: " + (f"calibrating the weights of {sibling.name}..." if sibling
                                                       else "training..."))
        opts = TrainOptions(epochs=epochs, lr=default_lr(entry.mode), seed=seed, accelerator=accelerator, fast_layout=fast_layout,
                            exit_distill=exit_distill)
        metrics = run_training(data, run_dir, config, opts, force=True, log=lambda s: None, progress_bar=None,
                               weights_from=sibling)
        export_run(run_dir, bundle_dir, force=True, log=lambda s: None, freeze_static=freeze)
        log(f"[{k}/{len(entries)}] {entry.name}: held-out accuracy {metrics['heldout_accuracy']:.3f}, "
            f"{'calibrated' if sibling else 'trained'} in {metrics['train_seconds']:.0f}s, exported")
        if config.budget_free_training and shared is None:
            shared = run_dir
        trained.append((entry, run_dir, bundle_dir, metrics))
    arrays, targets = RunDir(trained[0][1]).load_holdout_arrays()
    images = holdout_samples(arrays)
    runtimes = {e.name: Runtime(bundle_dir) for e, _, bundle_dir, _ in trained}
    log(f"timing {len(runtimes)} bundles at batch 1, interleaved, {runs} runs each...")
    measured, host = measure_bundles(runtimes, images, targets, runs, progress, timings=timings, log=log)
    rows = [{**row, **_training_figures(e, run_dir, runtimes[e.name].bundle.manifest, metrics)}
            for row, (e, run_dir, _, metrics) in zip(measured, trained)]
    _relative_to_dense(rows)
    result = {"data": str(data), "backbone": backbone.get("backbone", "efficientnet_lite0"),
              "image_size": image_size, "epochs": epochs, "seed": seed, "runs": runs, "freeze_static_gates": freeze_static,
              "coupled_from": coupled_from,
              "heldout_inputs": int(len(images)), "host": host, "entries": rows, "summary": summarize(rows)}
    write_json(out / SWEEP_JSON, result)
    plot_tradeoff(rows, out / SWEEP_PNG, f"{Path(data).name}: {len(images)} held-out inputs, batch 1 on this host")
    return result


def _couples(entry: SweepEntry) -> bool:
    """Whether ``--couple-from`` applies to the entry: a sparse model gated by block or adapter."""
    return entry.mode == "sparse" and entry.gate_scope != "exit"


def _kept_config(run_dir: Path) -> tuple[GatedAdapterConfig, dict]:
    """A kept run's model config and training options as it saved them; one line if they cannot be read."""
    saved = RunDir(run_dir).load_json(CONFIG)
    try:  # fields older runs lack get the values those runs were built with
        return GatedAdapterConfig.from_dict(saved["config"]), dict(saved["train"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir / CONFIG} has a bad config ({exc}); start a new sweep folder") from None


def _kept_coupling_matches(built: GatedAdapterConfig, coupled_from: int | None, name: str) -> None:
    """A kept sparse block or adapter entry must have coupled its gates as this sweep asks."""
    if built.coupled_from != coupled_from:
        how = f"with --couple-from {built.coupled_from}" if built.coupled_from is not None else "without --couple-from"
        raise UserError(f"{name} in this sweep folder was trained {how}; resume {how}, or start a new sweep folder")


def _kept_exits_match(built: GatedAdapterConfig, train: dict, planned: GatedAdapterConfig, exit_distill: float,
                      name: str) -> None:
    """A kept exit entry must have its exits where this sweep asks for them (``planned``), built, trained and
    answering the way it asks."""
    trained = built.exits
    distilled = train.get("exit_distill", 0.0)  # runs from before the option learned from labels only
    if distilled != exit_distill:
        raise UserError(f"{name} in this sweep folder was trained with --exit-distill {distilled:g}; resume with "
                        f"--exit-distill {distilled:g}, or start a new sweep folder")
    if built.exit_expand != planned.exit_expand:
        raise UserError(f"{name} in this sweep folder has exit heads built with --exit-expand {built.exit_expand}; "
                        f"resume with --exit-expand {built.exit_expand}, or start a new sweep folder")
    if built.exit_joint != planned.exit_joint:
        how = "with" if built.exit_joint else "without"
        raise UserError(f"{name} in this sweep folder was trained {how} --exit-joint; resume {how} it, or start a new "
                        "sweep folder")
    if built.exit_mix != planned.exit_mix:
        raise UserError(f"{name} in this sweep folder answers with --exit-mix {built.exit_mix:g}; resume with "
                        f"--exit-mix {built.exit_mix:g}, or start a new sweep folder")
    if planned.exits != trained:
        where = ",".join(map(str, trained))
        raise UserError(f"{name} in this sweep folder has exits after block{'s' if len(trained) > 1 else ''} {where}; "
                        f"resume with --exits {where}, or start a new sweep folder")


def _training_figures(entry: SweepEntry, run_dir: Path, manifest: dict, metrics: dict) -> dict:
    """What the sweep adds to the bundle's measured row: its budget, compute, training cost and the gates its
    export froze (from the ``manifest`` the timed runtime loaded)."""
    return {"budget": entry.budget, "gate_scope": entry.gate_scope if entry.mode == "sparse" else None,
            "static_gates": manifest.get("static_gates") or {},
            "compute_fraction": metrics["compute_fraction"],
            "mac_saving": metrics["mac_saving"], "trainable_parameters": metrics["trainable_parameters"],
            "training_seconds": metrics["train_seconds"], "run": str(run_dir),
            "weights_from": Path(metrics["weights_from"]).name if metrics.get("weights_from") else None}


def _relative_to_dense(rows: list[dict]) -> None:
    """``saving_vs_dense``: 1 - p50 / p50 of the dense adapter baseline (None without a dense entry)."""
    dense = next((r for r in rows if r["mode"] == "dense"), None)
    for r in rows:
        r["saving_vs_dense"] = 1 - r["latency_ms"]["p50"] / dense["latency_ms"]["p50"] if dense else None
        r["accuracy_vs_dense"] = r["accuracy"] - dense["accuracy"] if dense else None


def summarize(rows: list[dict]) -> dict:
    """The product's claims, checked on this sweep: sparse against dense, and against static at equal latency.

    Every accuracy comparison carries the exact McNemar p-value on the shared held-out inputs, so a gap of
    a few inputs reads as what it is."""
    dense = next((r for r in rows if r["mode"] == "dense"), None)
    sparse = [r for r in rows if r["mode"] == "sparse"]
    close = [r for r in sparse if dense and r["accuracy"] >= dense["accuracy"] - 0.01]
    best = max(close, key=lambda r: r["saving_vs_dense"], default=None)
    versus_static = []
    for s in sparse:
        slower_static = [t for t in rows if t["mode"] == "static" and s["latency_ms"]["p50"] <= t["latency_ms"]["p50"]]
        versus_static.append({"sparse": s["name"], "static_at_equal_or_more_latency": [t["name"] for t in slower_static],
                              "at_least_as_accurate": all(s["accuracy"] >= t["accuracy"] for t in slower_static),
                              "p_values": {t["name"]: paired_p(s, t) for t in slower_static}})
    holds = {v["sparse"] for v in versus_static if v["at_least_as_accurate"]}
    both = max((r for r in close if r["name"] in holds), key=lambda r: r["saving_vs_dense"], default=None)
    return {"fastest_sparse_within_1pt_of_dense": best["name"] if best else None,
            "its_saving_vs_dense": best["saving_vs_dense"] if best else None,
            "its_p_value_vs_dense": paired_p(best, dense) if best else None,
            "sparse_vs_static": versus_static,
            # both claims at once: the entry to ship (None when no sparse entry holds both)
            "fastest_sparse_holding_both": {"name": both["name"], "saving_vs_dense": both["saving_vs_dense"],
                                            "accuracy_vs_dense": both["accuracy"] - dense["accuracy"]} if both else None}


def format_sweep(result: dict) -> str:
    """The sweep table for people."""
    lines = [f"{'name':20}{'acc':>7}{'F1':>7}{'p50 ms':>9}{'p90 ms':>9}{'saving':>10}{'params':>12}{'train s':>9}  pareto"]
    for r in result["entries"]:
        vs = f"{r['saving_vs_dense'] * 100:.0f}%" if r['saving_vs_dense'] is not None else "-"
        lines.append(f"{r['name']:20}{r['accuracy']:7.3f}{r['macro_f1']:7.3f}{r['latency_ms']['p50']:9.2f}"
                     f"{r['latency_ms']['p90']:9.2f}{vs:>10}{r['trainable_parameters']:>12,}{r['training_seconds']:9.0f}"
                     f"  {'*' if r['pareto'] else ''}")
    shares: dict[str, list[str]] = {}
    for r in result["entries"]:
        if r.get("weights_from"):  # sweep.json files from before session 15 lack it
            shares.setdefault(r["weights_from"], []).append(r["name"])
    for source, names in shares.items():
        lines.append(f"{', '.join(names)} share the weights of {source} (confidence exits train the same at every "
                     "budget; only their calibration differs, and train s is its time)")
    for r in result["entries"]:
        if r.get("static_gates"):  # sweep.json files from before the field lack it
            lines.append(f"{r['name']} exported without the If of: "
                         + ", ".join(f"{g} ({state})" for g, state in r["static_gates"].items()))
    s = result["summary"]
    if s["fastest_sparse_within_1pt_of_dense"]:
        lines.append(f"fastest sparse within 1 point of dense: {s['fastest_sparse_within_1pt_of_dense']}, "
                     f"{s['its_saving_vs_dense'] * 100:.0f}% below dense p50 ({p_text(s['its_p_value_vs_dense'])})")
    else:
        lines.append("no sparse model is within 1 point of dense accuracy")
    if "fastest_sparse_holding_both" in s:  # sweep.json files from before session 17 lack it
        lines.append(_both_line(s["fastest_sparse_holding_both"]))
    lines += _static_lines(result)
    if result.get("host"):  # sweep.json files from before session 14 lack it
        lines.append(host_text(result["host"]))
    return "\n".join(lines)


def _both_line(both: dict | None) -> str:
    if both is None:
        return ("no sparse model is both within 1 point of dense and at least as accurate as every static model "
                "as slow or slower")
    return (f"fastest sparse within 1 point of dense and at least as accurate as every static model as slow or "
            f"slower: {both['name']}, {both['saving_vs_dense'] * 100:.0f}% below dense p50, "
            f"{both['accuracy_vs_dense'] * 100:+.1f} points against dense")


def _static_lines(result: dict) -> list[str]:
    """Each sparse model that a static one at equal or more latency beats, by how much and how surely."""
    acc = {r["name"]: r["accuracy"] for r in result["entries"]}
    lines = []
    for v in result["summary"]["sparse_vs_static"]:
        for name, p in v["p_values"].items():
            gap = acc[name] - acc[v["sparse"]]
            if gap > 0:
                lines.append(f"{v['sparse']} is {gap * 100:.1f} points below {name}, which is not faster ({p_text(p)})")
    halves = [(r["accuracy_ci95"][1] - r["accuracy_ci95"][0]) / 2 for r in result["entries"]]
    lines.append(f"accuracy 95% intervals: +/-{min(halves) * 100:.1f} to {max(halves) * 100:.1f} points "
                 f"on {result['heldout_inputs']} held-out inputs")
    return lines
