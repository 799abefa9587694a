"""``edgeadapt sweep``: every mode, and the sparse and static models at every budget, trained on one split with one
training spec, exported, and timed side by side; writes spec.toml, sweep.json and an accuracy-latency plot with
the Pareto front."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .choices import GATE_SCOPES, MODES, model_kind
from .errors import UserError
from .formats import SWEEP_VERSION, migrate_sweep
from .rundir import METRICS, RunDir, prepare_output, write_json
from .runtime.bundle import MANIFEST
from .runtime.compare import measure_bundles, paired_p
from .runtime.host import host_text
from .runtime.metrics import p_text
from .runtime.provenance import command_line, provenance
from .runtime.session import Runtime
from .spec import DEFAULTS, EXIT_KNOBS, GRID_AXES, SPEC_TOML, TrainSpec, read_toml, toml_value

SWEEP_JSON = "sweep.json"
SWEEP_PNG = "sweep.png"
BUDGETED = ("sparse", "static")  # modes trained once per budget


@dataclass
class Grid:
    """The sweep's axes: the modes, the budgets of the sparse and static models, the sparse model's gate scopes."""

    modes: list[str] = field(default_factory=lambda: list(MODES))
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    gate_scopes: list[str] = field(default_factory=lambda: ["block"])

    def replace(self, **changes) -> Grid:
        return dataclasses.replace(self, **changes)

    def to_toml(self) -> str:
        return "[grid]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in dataclasses.asdict(self).items())


def read_grid(path: Path | None) -> Grid:
    """The ``[grid]`` table of a sweep's spec.toml (the default grid without a file or a table)."""
    table = read_toml(path).get("grid", {}) if path else {}
    unknown = sorted(set(table) - {f.name for f in dataclasses.fields(Grid)})
    if not isinstance(table, dict) or unknown:
        raise UserError(f"{path}: [grid] takes modes, budgets and gate_scopes, not {', '.join(unknown) or table!r}")
    for key, kind in (("modes", str), ("budgets", (int, float)), ("gate_scopes", str)):
        value = table.get(key, [])
        if not isinstance(value, list) or any(not isinstance(v, kind) or isinstance(v, bool) for v in value):
            raise UserError(f"{path}: [grid] {key} must be a list of {'numbers' if key == 'budgets' else 'names'}, "
                            f"got {value!r}")
    return Grid(**{k: [float(b) for b in v] if k == "budgets" else v for k, v in table.items()})


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

    @property
    def has_exits(self) -> bool:
        return self.mode == "sparse" and self.gate_scope == "exit"

    @property
    def couples(self) -> bool:
        """Whether ``couple_from`` applies: a sparse model gated by block or adapter."""
        return self.mode == "sparse" and self.gate_scope != "exit"

    def spec(self, spec: TrainSpec) -> TrainSpec:
        """The spec this entry trains: the sweep's at the entry's grid point, the early-exit knobs on exit entries
        only and the coupling on sparse block and adapter entries only."""
        spec = spec.replace(mode=self.mode, budget=self.budget or DEFAULTS.budget, gate_scope=self.gate_scope)
        if not self.has_exits:
            spec = spec.replace(**{k: getattr(DEFAULTS, k) for k in EXIT_KNOBS})
        return spec if self.couples else spec.replace(couple_from=None)


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


def check_sweep(spec: TrainSpec, entries: list[SweepEntry]) -> None:
    """The spec suits every entry, in one line naming the key at fault, before any data is read: its values in
    range, the early-exit knobs only with exit entries, the coupling only with sparse block or adapter entries,
    and every gate scope, exit and coupling buildable on the backbone."""
    exits = next((e for e in entries if e.has_exits), None)
    spec.replace(mode="sparse", gate_scope="exit" if exits else "block", budget=DEFAULTS.budget).check(
        exits_need="exit in --gate-scopes and sparse in --modes")
    for scope in dict.fromkeys(e.gate_scope for e in entries if e.mode == "sparse"):
        try:
            spec.replace(mode="sparse", gate_scope=scope, couple_from=None, **{
                k: getattr(DEFAULTS, k) for k in EXIT_KNOBS}).model_config()
        except UserError as exc:
            raise UserError(f"--gate-scopes {scope}: {exc}") from None
    coupled = next((e for e in entries if e.couples), None)
    if spec.couple_from is not None:
        if coupled is None:
            raise UserError("couple_from couples the gates of sparse block or adapter entries; it needs sparse in "
                            "--modes and block or adapter in --gate-scopes")
        coupled.spec(spec).check_buildable()
    if exits is not None:
        exits.spec(spec).check_buildable()


def check_resume(out: Path, spec: TrainSpec) -> None:
    """A sweep resumes only with the kept sweep's spec (its spec.toml; the grid may change: every entry is named by
    its grid point); one line naming every difference, before anything trains."""
    kept = out / SPEC_TOML
    if not kept.exists():
        if (out / "runs").exists():
            raise UserError(f"{out} has no {SPEC_TOML} (a sweep folder from before sweep format {SWEEP_VERSION}), so "
                            "its entries' spec is unknown; start a new sweep folder")
        return
    diff = TrainSpec.from_toml(kept).diff(spec, skip=GRID_AXES)
    if diff:
        raise UserError(f"--resume: the spec differs from the kept sweep's spec: {'; '.join(diff)}; resume with "
                        f"--config {kept}, or start a new sweep folder")


def write_spec(out: Path, spec: TrainSpec, grid: Grid) -> None:
    """``out/spec.toml``: the shared spec under ``[train]`` (no grid axes) and the grid under ``[grid]``."""
    tmp = out / (SPEC_TOML + ".tmp")
    tmp.write_text(spec.to_toml("train", skip=GRID_AXES) + "\n" + grid.to_toml())
    tmp.replace(out / SPEC_TOML)


def run_sweep(data: Path, out: Path, spec: TrainSpec = DEFAULTS, grid: Grid | None = None, runs: int = 200,
              force: bool = False, resume: bool = False, log: Callable[[str], None] = print, freeze_static: bool = False,
              progress: Callable[[int], None] | None = None, timings: int = 1) -> dict:
    """Train and export every entry of the ``grid`` with the ``spec`` into ``out/runs`` and ``out/bundles``, then
    time them all in one rotation.

    ``resume`` keeps the entries an earlier, interrupted sweep finished (each is complete or absent on disk); the
    spec must be the kept one. ``freeze_static``: how each entry exports (``export --freeze-static-gates``); a kept
    entry exported the other way is exported again, not retrained. ``progress(1)`` per input timed, up to ``runs``;
    ``timings``: rotations at most while the host is unsteady (``measure_bundles``).
    """
    from .data import check_data, holdout_samples
    from .export.bundle import export_run
    from .plot import plot_tradeoff

    grid = grid or Grid()
    entries = plan(grid.modes, grid.budgets, grid.gate_scopes)
    check_sweep(spec, entries)
    check_data(data, spec.model_config())  # before the sweep folder exists
    out = Path(out)
    if resume:
        check_resume(out, spec)
    else:
        prepare_output(out, force, "sweep")
    out.mkdir(parents=True, exist_ok=True)
    write_spec(out, spec, grid)
    trained = []
    shared: Path | None = None  # the first budget-free run (confidence exits): the others share its weights
    for k, entry in enumerate(entries, 1):
        run_dir, bundle_dir = out / "runs" / entry.name, out / "bundles" / entry.name
        freeze = freeze_static and entry.mode == "sparse"  # the baselines have no gates to freeze
        budget_free = entry.spec(spec).model_config().budget_free_training
        if resume and (bundle_dir / MANIFEST).exists() and (run_dir / METRICS).exists():
            metrics = RunDir(run_dir).load_json(METRICS)
            log(f"[{k}/{len(entries)}] {entry.name}: kept from the earlier sweep")
            if RunDir(bundle_dir).load_json(MANIFEST).get("freeze_static_gates", False) != freeze:
                export_run(run_dir, bundle_dir, force=True, log=lambda s: None, freeze_static=freeze)
                log(f"[{k}/{len(entries)}] {entry.name}: exported again, "
                    f"{'with' if freeze else 'without'} --freeze-static-gates")
            trained.append((entry, run_dir, bundle_dir, metrics))
            if shared is None and budget_free:
                shared = run_dir
            continue
        sibling = shared if budget_free else None
        log(f"[{k}/{len(entries)}] {entry.name}: " + (f"calibrating the weights of {sibling.name}..." if sibling
                                                       else "training..."))
        metrics = entry.spec(spec).train(data, run_dir, force=True, log=lambda s: None, weights_from=sibling)
        export_run(run_dir, bundle_dir, force=True, log=lambda s: None, freeze_static=freeze)
        log(f"[{k}/{len(entries)}] {entry.name}: held-out accuracy {metrics['heldout_accuracy']:.3f}, "
            f"{'calibrated' if sibling else 'trained'} in {metrics['train_seconds']:.0f}s, exported")
        if budget_free and shared is None:
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
    result = {"format_version": SWEEP_VERSION, "data": str(data), "backbone": spec.backbone,
              "image_size": spec.image_size, "epochs": spec.epochs, "seed": spec.seed, "runs": runs,
              "freeze_static_gates": freeze_static, "coupled_from": spec.couple_from,
              "spec": {k: v for k, v in spec.to_dict().items() if k not in GRID_AXES},
              "grid": dataclasses.asdict(grid),
              "heldout_inputs": int(len(images)), "host": host, "entries": rows, "summary": summarize(rows),
              "provenance": provenance(command_line())}
    write_json(out / SWEEP_JSON, result)
    plot_tradeoff(rows, out / SWEEP_PNG, f"{Path(data).name}: {len(images)} held-out inputs, batch 1 on this host")
    return result


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
    """The sweep table for people, from a sweep result or a sweep.json of any format."""
    result = migrate_sweep(result)
    lines = [f"{'name':20}{'acc':>7}{'F1':>7}{'p50 ms':>9}{'p90 ms':>9}{'saving':>10}{'params':>12}{'train s':>9}  pareto"]
    for r in result["entries"]:
        vs = f"{r['saving_vs_dense'] * 100:.0f}%" if r['saving_vs_dense'] is not None else "-"
        lines.append(f"{r['name']:20}{r['accuracy']:7.3f}{r['macro_f1']:7.3f}{r['latency_ms']['p50']:9.2f}"
                     f"{r['latency_ms']['p90']:9.2f}{vs:>10}{r['trainable_parameters']:>12,}{r['training_seconds']:9.0f}"
                     f"  {'*' if r['pareto'] else ''}")
    shares: dict[str, list[str]] = {}
    for r in result["entries"]:
        if r["weights_from"]:
            shares.setdefault(r["weights_from"], []).append(r["name"])
    for source, names in shares.items():
        lines.append(f"{', '.join(names)} share the weights of {source} (confidence exits train the same at every "
                     "budget; only their calibration differs, and train s is its time)")
    for r in result["entries"]:
        if r["static_gates"]:
            lines.append(f"{r['name']} exported without the If of: "
                         + ", ".join(f"{g} ({state})" for g, state in r["static_gates"].items()))
    s = result["summary"]
    if s["fastest_sparse_within_1pt_of_dense"]:
        lines.append(f"fastest sparse within 1 point of dense: {s['fastest_sparse_within_1pt_of_dense']}, "
                     f"{s['its_saving_vs_dense'] * 100:.0f}% below dense p50 ({p_text(s['its_p_value_vs_dense'])})")
    else:
        lines.append("no sparse model is within 1 point of dense accuracy")
    if "fastest_sparse_holding_both" in s:  # sweep.json format 1 files may lack it (no summary to rebuild it from)
        lines.append(_both_line(s["fastest_sparse_holding_both"]))
    lines += _static_lines(result)
    if result["host"]:
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
