"""Training of gated adapters under a compute budget, calibration of gate thresholds, evaluation."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .adapters import GatedAdapterConfig
from .adapters.base import OPEN_ALL, GatedModel
from .choices import DEFAULT_EPOCHS
from .cost import count_macs, count_work
from .distributed import Group, join_from_env, training_device
from .runtime.metrics import accuracy_interval, macro_f1, mcnemar_p
from .runtime.preprocess import normalize

Log = Callable[[str], None]


@dataclass
class TrainOptions:
    """Knobs of one training run (the command line's flags)."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    budget_weight: float = 8.0
    temperature: tuple[float, float] = (1.0, 0.3)
    seed: int = 0
    calibration_fraction: float = 0.1  # of the training split, kept out of training for threshold calibration
    calibration_samples: int = 160  # at most this many of them are used
    open_weight: float = 0.3  # weight of an every-gate-open loss (keeps the full network valid; ~1.6x step cost)
    balance_weight: float = 0.01  # adapter banks: pull toward every expert being used
    exit_weight: float = 0.5  # early exits: each exit's own cross-entropy (deep supervision)
    exit_distill: float = 0.0  # early exits: also learn the final head's softened predictions (self-distillation)
    label_smoothing: float = 0.1  # every cross-entropy term: bounded logits, less over-confident gates and exits
    margin_weight: float = 0.1  # hinge on gate margins beyond ±gate_margin: keeps every gate's gradient alive
    gate_margin: float = 3.0
    difficulty_weight: float = 4.0  # more compute for inputs that gain most from it (needs the open loss)
    couple_weight: float = 16.0  # coupled gates (config.coupled_from): pull each input's coupled gates to one decision
    accelerator: str = "auto"  # where training runs: auto (a GPU when torch sees one, else the CPU), cpu or cuda
    fast_layout: bool = False  # BatchNorm folded into frozen convs, channels-last: ~35 % faster steps, other rounding


def default_lr(mode: str) -> float:
    """Adapters and heads train fast at 1e-2; a whole pretrained backbone needs 1e-4 (at 1e-3 AdamW wrecked
    Lite0's features within an epoch and the loss stayed at ln(classes))."""
    return 1e-4 if mode == "full" else 1e-2


@dataclass
class GateCosts:
    """MACs of each adapter site's block and adapter, and of the whole network with every gate open; and each
    branch's memory traffic in MAC-equivalents (``cost.count_work``; runs from before it was counted have none)."""

    block_macs: list[int]
    adapter_macs: list[int]
    total_macs: int
    exit_macs: list[int] = field(default_factory=list)  # exit scope: what going on past each exit costs
    block_traffic: list[int] = field(default_factory=list)
    adapter_traffic: list[int] = field(default_factory=list)
    exit_traffic: list[int] = field(default_factory=list)

    def macs_for(self, scope: str) -> list[int]:
        return getattr(self, f"{scope}_macs")

    def for_scope(self, scope: str) -> list[int]:
        """What each gate's branch costs in budget units: MACs plus memory traffic (MACs alone for older runs)."""
        macs, traffic = self.macs_for(scope), getattr(self, f"{scope}_traffic")
        return [m + t for m, t in zip(macs, traffic)] if traffic else list(macs)


def measure_costs(model: GatedModel) -> GateCosts:
    """Count MACs per gated block and adapter by running each on its real input (batch of one)."""
    calls: list[tuple] = []
    hooks = [b.register_forward_hook(lambda m, a, o: calls.append(a)) for b in model.adapter_blocks()]
    was_training = model.training
    model.eval()
    inputs = model.example_inputs(1)
    try:
        with torch.no_grad():
            model(*inputs, torch.full_like(model.thresholds, OPEN_ALL))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    blocks = model.adapter_blocks()
    # a site is called as (x, threshold, *context): the block reads x and the context, the adapter x alone
    block = [count_work(b.block, a[0], *a[2:]) for b, a in zip(blocks, calls)]
    adapter = [count_work(b.adapter, a[0]) for b, a in zip(blocks, calls)]
    exits = _exit_work(model, inputs)
    return GateCosts(
        block_macs=[m for m, _ in block], adapter_macs=[m for m, _ in adapter],
        total_macs=count_macs(_AllOpen(model), *inputs), exit_macs=[m for m, _ in exits],
        block_traffic=[t for _, t in block], adapter_traffic=[t for _, t in adapter],
        exit_traffic=[t for _, t in exits],
    )


def _exit_work(model: GatedModel, inputs: tuple) -> list[tuple[int, int]]:
    """Per exit: MACs and traffic of everything after it (the next segment, its exit head, and at the end the
    final head)."""
    heads = getattr(model, "exit_heads", [])
    if not len(heads):
        return []
    with torch.no_grad():
        h = model.prefix(*inputs)
        h = model.run_segment(0, h)
        costs = []
        for j in range(len(heads)):
            costs.append(count_work(_Segment(model, j + 1), h))
            h = model.run_segment(j + 1, h)
    return costs


class _Segment(torch.nn.Module):
    """Segment ``j`` of an exit model, then its exit's classifier (or the final head), for MAC counting."""

    def __init__(self, model: GatedModel, j: int):
        super().__init__()
        self.model, self.j = model, j

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.model.run_segment(self.j, h)
        if self.j == len(self.model.exit_heads):
            return self.model.final_logits(h)
        head = self.model.exit_heads[self.j]
        leave = head.logits(h)
        return leave + head.go_on(h, leave)


class _AllOpen(torch.nn.Module):
    """Adapter to count MACs of the model with every gate open."""

    def __init__(self, model: GatedModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs, torch.full_like(self.model.thresholds, OPEN_ALL))[0]


def batch_inputs(arrays: dict[str, np.ndarray], idx: np.ndarray, norm: dict) -> tuple[torch.Tensor, ...]:
    """The model's inputs for rows ``idx`` of stored arrays: images normalised, token ids and arrays as they are."""
    if "inputs" in arrays:
        return (torch.from_numpy(arrays["inputs"][idx]),)
    if "images" in arrays:
        return (torch.from_numpy(normalize(arrays["images"][idx], norm["mean"], norm["std"])),)
    return torch.from_numpy(arrays["input_ids"][idx]), torch.from_numpy(arrays["attention_mask"][idx])


def batches(n: int, size: int, rng: np.random.Generator | None = None):
    """Index batches over ``n`` items, shuffled when given a generator."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i:i + size]


@torch.no_grad()
def cache_prefix(model: GatedModel, arrays: dict[str, np.ndarray], norm: dict,
                 progress: Callable[[int], None]) -> torch.Tensor:
    """Run the frozen layers before the first gate once; training then starts from their output (on the
    model's device)."""
    model.eval()
    device = model.thresholds.device
    out = []
    for idx in batches(len(next(iter(arrays.values()))), 64):
        out.append(model.prefix(*(t.to(device) for t in batch_inputs(arrays, idx, norm))))
        progress(len(idx))
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: GatedModel, feats: torch.Tensor, targets: np.ndarray,
             thresholds: torch.Tensor | None = None) -> dict:
    """Accuracy and per-gate open rate of the deployed (hard-gated) model on cached features."""
    model.eval()
    preds, gates = [], []
    for idx in batches(len(feats), 64):
        logits, g = model.suffix(feats[idx], thresholds)
        preds.append(logits.argmax(1))
        gates.append(g)
    pred = torch.cat(preds).cpu().numpy()
    gate = torch.cat(gates).cpu().numpy()
    return {"accuracy": float((pred == targets).mean()), "macro_f1": macro_f1(pred, targets),
            "gate_rates": gate.mean(0).tolist(), "gates": gate, "correct": pred == targets}


def per_input_compute(gates: np.ndarray, costs: list[int]) -> np.ndarray:
    """Cost-weighted fraction of gated compute that ran, one value per sample."""
    c = np.asarray(costs, np.float64)
    return gates @ c / c.sum()


def compute_fraction(gates: np.ndarray, costs: list[int]) -> float:
    """Cost-weighted fraction of gated compute that ran, averaged over samples."""
    return float(per_input_compute(gates, costs).mean())


def compute_median(gates: np.ndarray, costs: list[int]) -> float:
    """The median sample's fraction of gated compute: what p50 latency follows."""
    return float(np.median(per_input_compute(gates, costs)))


BUDGET_MEASURES = {"mean": compute_fraction, "median": compute_median}


def calibrate(model: GatedModel, feats: torch.Tensor, costs: list[int], budget: float, statistic: str = "mean",
              iters: int = 10) -> torch.Tensor:
    """One offset for every gate threshold, found by bisection, so compute on ``feats`` meets the budget: the
    mean over inputs, or the median input's (``statistic='median'``: p50 latency follows the budget)."""
    measure = BUDGET_MEASURES[statistic]

    def frac(offset: float) -> float:
        return measure(evaluate(model, feats, np.zeros(len(feats)), torch.full_like(model.thresholds, offset))["gates"],
                       costs)

    lo, hi = -12.0, 12.0  # the highest offset opens fewest gates
    if frac(lo) <= budget:
        return torch.full_like(model.thresholds, lo)
    for _ in range(iters):
        mid = (lo + hi) / 2
        if frac(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return torch.full_like(model.thresholds, hi)


@torch.no_grad()
def choose_static_blocks(model: GatedModel, feats: torch.Tensor, block_costs: list[int], budget: float) -> list[int]:
    """Blocks the ``static`` baseline drops: least change of the frozen features per unit of cost saved, until
    the dropped blocks hold ``1 - budget`` of the residual blocks' cost (what the sparse model skips)."""
    sites = model.adapter_blocks()
    reference = model.frozen_features(feats)
    drift = []
    for site in sites:
        site.fixed = False
        drift.append(float(((model.frozen_features(feats) - reference).norm(dim=1) / reference.norm(dim=1)).mean()))
        site.fixed = True
    order = sorted(range(len(sites)), key=lambda k: drift[k] / block_costs[k])
    residual = model.site_indices()
    closed, saved = [], 0
    for k in order:
        if saved >= (1 - budget) * sum(block_costs):
            break
        closed.append(residual[k])
        saved += block_costs[k]
    return sorted(closed)


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


def difficulty_loss(logits: torch.Tensor, open_logits: torch.Tensor, targets: torch.Tensor,
                    spent: torch.Tensor) -> torch.Tensor:
    """Rewards compute ``spent`` ``[N]`` on the inputs whose loss drops most when every gate opens, and penalises
    it on the rest (ranks centred on zero, so the batch's mean compute, which the budget term holds, is untouched):
    hard inputs go through more blocks, easy ones through fewer."""
    with torch.no_grad():
        gain = F.cross_entropy(logits, targets, reduction="none") - F.cross_entropy(open_logits, targets, reduction="none")
        rank = gain.argsort().argsort().to(spent.dtype) / max(1, len(gain) - 1) - 0.5
    return -(spent * rank).mean()


def agreement_loss(p_open: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """How far each input's coupled gates ``[N, K]`` disagree: the cost-weighted variance of their open
    probabilities, averaged over inputs. Zero when they agree, whatever they agree on, so the budget and the
    routing still choose which inputs take the deep route."""
    w = costs / costs.sum()
    mean = (p_open * w).sum(1, keepdim=True)
    return ((p_open - mean) ** 2 * w).sum(1).mean()


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


def linear_probe(train_x: torch.Tensor, train_y: np.ndarray, held_x: torch.Tensor, held_y: np.ndarray,
                 num_classes: int, seed: int, epochs: int = 200) -> float:
    """Held-out accuracy of a linear head alone on the frozen backbone: the floor adapters must beat."""
    torch.manual_seed(seed)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    head = torch.nn.Linear(train_x.shape[1], num_classes).to(train_x.device)
    optim = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    xs, ys = (train_x - mu) / sd, torch.from_numpy(train_y).to(train_x.device)
    for _ in range(epochs):
        loss = F.cross_entropy(head(xs), ys)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        return float((head((held_x - mu) / sd).argmax(1).cpu().numpy() == held_y).mean())


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
    from .rundir import CONFIG, HOLDOUT, METRICS, WEIGHTS, prepare_output, save_npz, staged_folder, write_json
    from .runtime.preprocess import DEFAULT_MEAN, DEFAULT_STD

    out_dir = Path(out_dir)
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
        probe = linear_probe(model.frozen_features(f_train), y_train, model.frozen_features(f_held), y_held,
                             config.num_classes, opts.seed)
        log(f"baseline: linear probe on the frozen backbone scores {probe:.3f} held out")
    if weights_from is not None:
        history = _shared_weights(model, Path(weights_from), log)
    else:
        history = train_gated(model, f_train, y_train, costs.for_scope(config.gate_scope), opts, log, group)
    if config.has_gates:
        model.thresholds.copy_(calibrate(model, calib, costs.for_scope(config.gate_scope), config.budget,
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
        write_json(tmp / CONFIG, {
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
