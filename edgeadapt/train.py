"""Training of gated adapters under a compute budget, and the whole ``edgeadapt train`` job (``run_training``).

Costs live in ``cost``, evaluation in ``evaluate``, threshold calibration in ``thresholds``, losses in ``losses``."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .adapters import GatedAdapterConfig
from .adapters.base import GatedModel
from .cost import GateCosts, measure_costs
from .distributed import Group, join_from_env, training_device
from .evaluate import batches, cache_prefix, evaluate, linear_probe
from .losses import agreement_loss, difficulty_loss
from .runtime.gates import OPEN_ALL
from .runtime.metrics import accuracy_interval, mcnemar_p
from .spec import DEFAULTS as _SPEC
from .thresholds import calibrate_thresholds, choose_static_blocks, compute_fraction, compute_median

Log = Callable[[str], None]


@dataclass
class TrainOptions:
    """Knobs of one training run; the defaults are the training spec's (``spec.TrainSpec``, one place)."""

    epochs: int = _SPEC.epochs
    batch_size: int = _SPEC.batch_size
    lr: float = _SPEC.learning_rate
    weight_decay: float = _SPEC.weight_decay
    budget_weight: float = _SPEC.budget_weight
    temperature: tuple[float, float] = _SPEC.temperature
    seed: int = _SPEC.seed
    calibration_fraction: float = _SPEC.calibration_split  # of the training split, kept out for threshold calibration
    calibration_samples: int = _SPEC.calibration_samples  # at most this many of them are used
    open_weight: float = _SPEC.open_weight  # every-gate-open loss (keeps the full network valid; ~1.6x step cost)
    balance_weight: float = _SPEC.balance_weight  # adapter banks: pull toward every expert being used
    exit_weight: float = _SPEC.exit_weight  # early exits: each exit's own cross-entropy (deep supervision)
    exit_distill: float = _SPEC.exit_distill  # early exits: also learn the final head's softened predictions
    label_smoothing: float = _SPEC.label_smoothing  # every cross-entropy term: less over-confident gates and exits
    margin_weight: float = _SPEC.margin_weight  # hinge on gate margins beyond ±gate_margin: keeps gradients alive
    gate_margin: float = _SPEC.gate_margin
    difficulty_weight: float = _SPEC.difficulty_weight  # more compute for inputs that gain most (needs the open loss)
    couple_weight: float = _SPEC.couple_weight  # coupled gates: pull each input's coupled gates to one decision
    accelerator: str = _SPEC.accelerator  # where training runs: auto (a GPU when torch sees one, else the CPU), cpu, cuda
    fast_layout: bool = _SPEC.fast_layout  # BatchNorm folded into frozen convs, channels-last: faster, other rounding


def trains_open(config: GatedAdapterConfig) -> bool:
    """Whether the every-gate-open loss means anything: not without gates (the same forward twice), and not for
    confidence exits, whose training already runs every input to the final head."""
    return config.has_gates and not config.budget_free_training


class _Step(torch.nn.Module):
    """One training forward as a module, so DistributedDataParallel can wrap it: logits, open probabilities,
    the gate-margin loss of that forward, and the logits with every gate open when that loss is on."""

    def __init__(self, model: GatedModel, open_all: bool, gate_margin: float):
        super().__init__()
        self.model = model
        self.open_all = open_all
        self.gate_margin = gate_margin

    def forward(self, feats: torch.Tensor):
        logits, p_open = self.model.suffix(feats)
        margin = self.model.margin_loss(self.gate_margin)  # before the all-open forward replaces the margins
        if not self.open_all:
            return logits, p_open, margin, None
        return logits, p_open, margin, self.model.suffix(feats, torch.full_like(self.model.thresholds, OPEN_ALL))[0]


def train_gated(model: GatedModel, feats: torch.Tensor, targets: np.ndarray, costs: list[int],
                opts: TrainOptions, log: Log, group: Group | None = None) -> list[dict]:
    """Cross-entropy plus a squared pull of the expected compute fraction toward the budget.

    With a ``group`` (under torchrun) each process takes its share of every batch and DistributedDataParallel
    averages the gradients."""
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    steps = opts.epochs * math.ceil(len(feats) / opts.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=steps, pct_start=0.15)
    device = model.thresholds.device
    c = torch.tensor(costs, dtype=torch.float32, device=device)
    c = c / c.sum().clamp_min(1)
    y = torch.from_numpy(targets).to(device)
    coupled = model.coupled_columns
    step = _Step(model, bool(opts.open_weight) and trains_open(model.config), opts.gate_margin)
    if group is not None:
        step = torch.nn.parallel.DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)
    history = []
    t_hi, t_lo = opts.temperature
    for epoch in range(opts.epochs):
        start = time.perf_counter()
        model.train()
        model.set_temperature(t_hi * (t_lo / t_hi) ** (epoch / max(1, opts.epochs - 1)))
        tot = {"loss": 0.0, "correct": 0, "frac": 0.0, "n": 0}
        for idx in batches(len(feats), opts.batch_size, rng):
            if group is not None:
                if len(idx) < group.world:  # a process with no rows would miss the gradient exchange
                    continue
                idx = group.share(idx)
            logits, p_open, margin, open_logits = step(feats[idx])
            loss = F.cross_entropy(logits, y[idx], label_smoothing=opts.label_smoothing)
            gated = p_open.shape[1] > 0  # the baselines have no gates
            spent = (p_open * c).sum(1) if gated else None  # expected fraction of gated compute, per input
            frac = spent.mean() if gated else torch.tensor(1.0)
            if gated:
                loss = loss + opts.budget_weight * (frac - model.config.budget) ** 2 + opts.margin_weight * margin
            if open_logits is not None:
                loss = loss + opts.open_weight * F.cross_entropy(open_logits, y[idx], label_smoothing=opts.label_smoothing)
                if gated and opts.difficulty_weight:
                    loss = loss + opts.difficulty_weight * difficulty_loss(logits, open_logits, y[idx], spent)
            if coupled and opts.couple_weight:
                loss = loss + opts.couple_weight * agreement_loss(p_open[:, coupled], c[coupled])
            loss = loss + opts.balance_weight * model.balance_loss()  # adapter banks only
            loss = loss + opts.exit_weight * model.exit_loss(y[idx], opts.label_smoothing, opts.exit_distill)  # early exits only
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            n = len(idx)
            tot["loss"] += loss.item() * n
            tot["correct"] += int((logits.argmax(1) == y[idx]).sum())
            tot["frac"] += frac.item() * n
            tot["n"] += n
        if group is not None:
            tot = dict(zip(tot, group.sum(list(tot.values()))))
        row = {"epoch": epoch + 1, "loss": tot["loss"] / tot["n"], "train_accuracy": tot["correct"] / tot["n"],
               "compute_fraction": tot["frac"] / tot["n"], "seconds": time.perf_counter() - start}
        history.append(row)
        log(f"epoch {row['epoch']}/{opts.epochs}  loss {row['loss']:.3f}  train acc {row['train_accuracy']:.3f}  "
            f"expected compute {row['compute_fraction']:.2f}  ({row['seconds']:.1f}s)")
    model.eval()
    return history


def calibration_split(train_idx: np.ndarray, targets: np.ndarray, opts: TrainOptions) -> tuple[np.ndarray, np.ndarray]:
    """(train, calibration) indices: thresholds are set on inputs training never saw, so compute on new inputs
    meets the budget (on training inputs gates and exits are over-confident). Fraction 0: calibrate on training
    inputs, the calibration indices then being a shuffled subset of the training ones."""
    from .data.folder import stratified_split

    keep = cal = train_idx
    if opts.calibration_fraction > 0:
        kept, held = stratified_split(targets[train_idx], opts.calibration_fraction, opts.seed + 1)
        keep, cal = train_idx[kept], train_idx[held]
    return keep, np.random.default_rng(opts.seed).permutation(cal)


def run_training(data_dir: Path, out_dir: Path, config: GatedAdapterConfig, opts: TrainOptions,
                 holdout: float = 0.2, force: bool = False, log: Log = print,
                 progress_bar=None, weights_from: Path | None = None) -> dict:
    """The whole ``edgeadapt train`` job; writes the run folder atomically and returns its metrics.

    ``weights_from``: a run of the same data, seed and options at another budget whose weights this one
    shares instead of training (``config.budget_free_training`` only); only calibration runs."""
    from safetensors.torch import save_file

    from .adapters import create_model
    from .data import load_training_data
    from .data.folder import stratified_split
    from .formats import RUN_CONFIG_VERSION
    from .rundir import CONFIG, HOLDOUT, METRICS, WEIGHTS, prepare_output, save_npz, staged_folder, write_json
    from .runtime.preprocess import DEFAULT_MEAN, DEFAULT_STD
    from .spec import SPEC_TOML, TrainSpec

    out_dir = Path(out_dir)
    spec = TrainSpec.of_run(config, opts, holdout)  # before training fills the config in (labels, exits)
    device = training_device(opts.accelerator)
    prepare_output(out_dir, force, "run")
    group = join_from_env(device)  # under torchrun: data-parallel over the group's processes
    if group is not None and not group.leader:
        log, progress_bar = (lambda m: None), None
    elif group is not None:
        log(f"distributed: {group.world} processes ({group.backend}); each trains on 1/{group.world} of every batch")
    started = time.perf_counter()
    torch.manual_seed(opts.seed)
    data = load_training_data(data_dir, config, lambda n, label: _bar(progress_bar, n, label))
    config.labels, config.num_classes = data.labels, len(data.labels)
    log(f"data: {data.summary}")
    train_idx, held_idx = stratified_split(data.targets, holdout, opts.seed)
    train_idx, cal_idx = calibration_split(train_idx, data.targets, opts)
    model = create_model(config)
    costs = measure_costs(model)
    model.to(device)
    norm = {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)}
    if opts.fast_layout:  # before caching: the prefix's frozen convs then run folded and channels-last too (~2.5x faster)
        model.prepare_training(torch.zeros(1, 1, 1, 1))
    with _bar(progress_bar, len(data.targets), "caching frozen prefix") as step:
        feats = cache_prefix(model, data.arrays, norm, step)
    if opts.fast_layout:
        feats = model.prepare_training(feats)
    f_train, f_held = feats[train_idx], feats[held_idx]
    y_train, y_held = data.targets[train_idx], data.targets[held_idx]
    log(f"split: {len(train_idx)} train, {len(cal_idx)} calibration, {len(held_idx)} held out; on {device}; mode {config.mode}, "
        + (f"gate scope {config.gate_scope}, budget {config.budget}" if config.has_gates else "no gates"))
    calib = feats[cal_idx[:opts.calibration_samples]]
    if config.mode == "static":
        model.set_static_closed(choose_static_blocks(model, calib, costs.for_scope("block"), config.budget))
        log(f"static: blocks {', '.join(map(str, config.static_closed))} dropped for every input "
            "(least feature change per unit of cost saved)")
    probe = None
    if config.mode == "sparse":
        probe = linear_probe(_frozen_features(model, f_train), y_train, _frozen_features(model, f_held), y_held,
                             config.num_classes, opts.seed)
        log(f"baseline: linear probe on the frozen backbone scores {probe:.3f} held out")
    if weights_from is not None:
        history = _shared_weights(model, Path(weights_from), log)
    else:
        history = train_gated(model, f_train, y_train, costs.for_scope(config.gate_scope), opts, log, group)
    if config.has_gates:
        model.thresholds.copy_(calibrate_thresholds(model, calib, costs.for_scope(config.gate_scope), config.budget,
                                                    config.budget_statistic))
    deployed = evaluate(model, f_held, y_held)
    all_open = evaluate(model, f_held, y_held, torch.full_like(model.thresholds, OPEN_ALL))
    metrics = _metrics(model, costs, deployed, all_open, probe, history, time.perf_counter() - started)
    metrics["processes"] = group.world if group else 1
    if weights_from is not None:
        metrics["weights_from"] = str(weights_from)
    metrics["device"] = str(device)
    if group is not None and not group.leader:  # every process holds the same weights; one writes them
        group.close()
        return metrics
    with staged_folder(out_dir) as tmp:
        weights = {k: v.cpu() for k, v in model.trainable_state().items()}  # a run loads on any machine
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": "edgeadapt-adapters-v1"})
        (tmp / SPEC_TOML).write_text(spec.to_toml())  # train --config RUN/spec.toml trains this run again
        write_json(tmp / CONFIG, {
            "format_version": RUN_CONFIG_VERSION,
            "config": config.to_dict(),
            "normalization": norm,
            "costs": asdict(costs),
            "train": {**opts.__dict__, "holdout_fraction": holdout, "data": str(data_dir),
                      "n_train": int(len(train_idx)), "n_calibration": int(len(cal_idx)),
                      "n_holdout": int(len(held_idx))},
        })
        write_json(tmp / METRICS, metrics)
        save_npz(tmp / HOLDOUT, targets=y_held, **{k: v[held_idx] for k, v in data.arrays.items()})
    if group is not None:
        group.close()
    return metrics


def _frozen_features(model: GatedModel, feats: torch.Tensor, size: int = 64) -> torch.Tensor:
    """``model.frozen_features`` in batches: on the whole training split at once it ran 2.5x slower on a CPU."""
    return torch.cat([model.frozen_features(feats[i:i + size]) for i in range(0, len(feats), size)])


def _shared_weights(model: GatedModel, run_dir: Path, log: Log) -> list[dict]:
    """Load the weights a run at another budget trained (thresholds are calibrated afresh); its epoch history."""
    from .checkpoint import load_weights
    from .rundir import METRICS, RunDir

    if not model.config.budget_free_training:
        raise ValueError("only budget-free training (confidence exits) can share weights across budgets")
    load_weights(model, RunDir(run_dir))
    model.eval()
    log(f"weights: shared with {run_dir} (confidence exits train the same at every budget); calibrating only")
    return RunDir(run_dir).load_json(METRICS)["history"]


def _metrics(model: GatedModel, costs: GateCosts, deployed: dict, all_open: dict, probe: float | None,
             history: list[dict], seconds: float) -> dict:
    config = model.config
    if config.has_gates:
        ran, scope = deployed["gates"], config.gate_scope
    else:  # the baselines: only the static one skips blocks, and the same ones for every input
        ran, scope = np.array([[b.fixed is not False for b in model.adapter_blocks()]], np.float64), "block"
    frac = median = 1.0
    skipped = 0.0
    if ran.shape[1]:
        macs = costs.macs_for(scope)
        frac = compute_fraction(ran, costs.for_scope(scope))
        median = compute_median(ran, costs.for_scope(scope))
        skipped = (1 - compute_fraction(ran, macs)) * sum(macs)
    return {
        "mode": config.mode,
        "heldout_accuracy": deployed["accuracy"],
        "heldout_macro_f1": deployed["macro_f1"],
        "heldout_accuracy_all_open": all_open["accuracy"],
        "heldout_accuracy_ci95": accuracy_interval(deployed["correct"]),
        "heldout_accuracy_all_open_ci95": accuracy_interval(all_open["correct"]),
        # how sure the gap between gated and all-open is: the same weights on the same inputs, so a paired test
        "gap_p_value": mcnemar_p(deployed["correct"], all_open["correct"]) if config.has_gates else None,
        "linear_probe_accuracy": probe,
        "gate_rates": dict(zip(model.gate_names, deployed["gate_rates"])),
        "compute_fraction": frac,
        "compute_median": median,
        "mac_saving": skipped / costs.total_macs,
        "thresholds": model.thresholds.tolist(),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_seconds": seconds,
        "history": history,
    }


class _bar:
    """A click progress bar when given one, else nothing: ``with _bar(pb, n, label) as step: step(k)``."""

    def __init__(self, factory, total: int, label: str):
        self.cm = factory(length=total, label=label) if factory else None

    def __enter__(self):
        if self.cm is None:
            return lambda n: None
        bar = self.cm.__enter__()
        return bar.update

    def __exit__(self, *exc):
        if self.cm is not None:
            self.cm.__exit__(*exc)
