"""Training of gated adapters under a compute budget, calibration of gate thresholds, evaluation."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .adapters import GatedAdapterConfig, GatedAdapterModel
from .adapters.model import OPEN_ALL
from .cost import count_macs
from .runtime.metrics import macro_f1
from .runtime.preprocess import normalize

Log = Callable[[str], None]


@dataclass
class TrainOptions:
    """Knobs of one training run (the command line's flags)."""

    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    budget_weight: float = 8.0
    temperature: tuple[float, float] = (1.0, 0.3)
    seed: int = 0
    calibration_samples: int = 160
    open_weight: float = 0.0  # weight of an every-gate-open loss (keeps the full network valid; doubles step cost)


def default_lr(mode: str) -> float:
    """Adapters and heads train fast at 1e-2; a whole pretrained backbone needs 1e-4 (at 1e-3 AdamW wrecked
    Lite0's features within an epoch and the loss stayed at ln(classes))."""
    return 1e-4 if mode == "full" else 1e-2


@dataclass
class GateCosts:
    """MACs of each adapter site's block and adapter, and of the whole network with every gate open."""

    block_macs: list[int]
    adapter_macs: list[int]
    total_macs: int

    def for_scope(self, scope: str) -> list[int]:
        return self.block_macs if scope == "block" else self.adapter_macs


def measure_costs(model: GatedAdapterModel, image_size: int) -> GateCosts:
    """Count MACs per gated block and adapter by running each on its real input shape."""
    inputs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, o: inputs.append(a[0])) for b in model.adapter_blocks()]
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    try:
        with torch.no_grad():
            model(x, torch.full_like(model.thresholds, OPEN_ALL))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    blocks = model.adapter_blocks()
    return GateCosts(
        block_macs=[count_macs(b.block, h) for b, h in zip(blocks, inputs)],
        adapter_macs=[count_macs(b.adapter, h) for b, h in zip(blocks, inputs)],
        total_macs=count_macs(_AllOpen(model), x),
    )


class _AllOpen(torch.nn.Module):
    """Adapter to count MACs of the model with every gate open."""

    def __init__(self, model: GatedAdapterModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, torch.full_like(self.model.thresholds, OPEN_ALL))[0]


def batches(n: int, size: int, rng: np.random.Generator | None = None):
    """Index batches over ``n`` items, shuffled when given a generator."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i:i + size]


@torch.no_grad()
def cache_prefix(model: GatedAdapterModel, images: np.ndarray, mean, std, progress: Callable[[int], None]) -> torch.Tensor:
    """Run the frozen layers before the first gate once; training then starts from their output."""
    model.eval()
    out = []
    for idx in batches(len(images), 64):
        out.append(model.prefix(torch.from_numpy(normalize(images[idx], mean, std))))
        progress(len(idx))
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: GatedAdapterModel, feats: torch.Tensor, targets: np.ndarray,
             thresholds: torch.Tensor | None = None) -> dict:
    """Accuracy and per-gate open rate of the deployed (hard-gated) model on cached features."""
    model.eval()
    preds, gates = [], []
    for idx in batches(len(feats), 64):
        logits, g = model.suffix(feats[idx], thresholds)
        preds.append(logits.argmax(1))
        gates.append(g)
    pred = torch.cat(preds).numpy()
    gate = torch.cat(gates).numpy()
    return {"accuracy": float((pred == targets).mean()), "macro_f1": macro_f1(pred, targets),
            "gate_rates": gate.mean(0).tolist(), "gates": gate}


def compute_fraction(gates: np.ndarray, costs: list[int]) -> float:
    """Cost-weighted fraction of gated compute that ran, averaged over samples."""
    c = np.asarray(costs, np.float64)
    return float((gates @ c).mean() / c.sum())


def calibrate(model: GatedAdapterModel, feats: torch.Tensor, costs: list[int], budget: float,
              iters: int = 10) -> torch.Tensor:
    """One offset for every gate threshold, found by bisection, so compute on ``feats`` meets the budget."""
    def frac(offset: float) -> float:
        return compute_fraction(evaluate(model, feats, np.zeros(len(feats)), torch.full_like(model.thresholds, offset))["gates"], costs)

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
def choose_static_blocks(model: GatedAdapterModel, feats: torch.Tensor, block_macs: list[int], budget: float) -> list[int]:
    """Blocks the ``static`` baseline drops: least change of the frozen features per MAC saved, until the
    dropped blocks hold ``1 - budget`` of the residual MACs (the compute the sparse model skips)."""
    sites = model.adapter_blocks()
    reference = pooled_features(model, feats)
    drift = []
    for site in sites:
        site.fixed = False
        drift.append(float(((pooled_features(model, feats) - reference).norm(dim=1) / reference.norm(dim=1)).mean()))
        site.fixed = True
    order = sorted(range(len(sites)), key=lambda k: drift[k] / block_macs[k])
    residual = model.site_indices()
    closed, saved = [], 0
    for k in order:
        if saved >= (1 - budget) * sum(block_macs):
            break
        closed.append(residual[k])
        saved += block_macs[k]
    return sorted(closed)


def train_gated(model: GatedAdapterModel, feats: torch.Tensor, targets: np.ndarray, costs: list[int],
                opts: TrainOptions, log: Log) -> list[dict]:
    """Cross-entropy plus a squared pull of the expected compute fraction toward the budget."""
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    steps = opts.epochs * math.ceil(len(feats) / opts.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=steps, pct_start=0.15)
    c = torch.tensor(costs, dtype=torch.float32)
    c = c / c.sum().clamp_min(1)
    y = torch.from_numpy(targets)
    open_thr = torch.full_like(model.thresholds, OPEN_ALL)
    history = []
    t_hi, t_lo = opts.temperature
    for epoch in range(opts.epochs):
        start = time.perf_counter()
        model.train()
        model.set_temperature(t_hi * (t_lo / t_hi) ** (epoch / max(1, opts.epochs - 1)))
        tot = {"loss": 0.0, "correct": 0, "frac": 0.0, "n": 0}
        for idx in batches(len(feats), opts.batch_size, rng):
            logits, p_open = model.suffix(feats[idx])
            loss = F.cross_entropy(logits, y[idx])
            frac = (p_open * c).sum(1).mean() if p_open.shape[1] else torch.tensor(1.0)
            if p_open.shape[1]:
                loss = loss + opts.budget_weight * (frac - model.config.budget) ** 2
            if opts.open_weight:
                open_logits, _ = model.suffix(feats[idx], open_thr)
                loss = loss + opts.open_weight * F.cross_entropy(open_logits, y[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            n = len(idx)
            tot["loss"] += loss.item() * n
            tot["correct"] += int((logits.argmax(1) == y[idx]).sum())
            tot["frac"] += frac.item() * n
            tot["n"] += n
        row = {"epoch": epoch + 1, "loss": tot["loss"] / tot["n"], "train_accuracy": tot["correct"] / tot["n"],
               "compute_fraction": tot["frac"] / tot["n"], "seconds": time.perf_counter() - start}
        history.append(row)
        log(f"epoch {row['epoch']}/{opts.epochs}  loss {row['loss']:.3f}  train acc {row['train_accuracy']:.3f}  "
            f"expected compute {row['compute_fraction']:.2f}  ({row['seconds']:.1f}s)")
    model.eval()
    return history


@torch.no_grad()
def pooled_features(model: GatedAdapterModel, feats: torch.Tensor) -> torch.Tensor:
    """Frozen backbone features without adapters (a site fixed closed skips its block) for the linear probe."""
    out = []
    blocks = model.backbone._blocks[model.cut:]
    for idx in batches(len(feats), 64):
        h = feats[idx]
        for b in blocks:
            if hasattr(b, "block"):
                h = b.block(h) if b.fixed is not False else h
            else:
                h = b(h)
        out.append(model.backbone.head_features(h))
    return torch.cat(out)


def linear_probe(train_x: torch.Tensor, train_y: np.ndarray, held_x: torch.Tensor, held_y: np.ndarray,
                 num_classes: int, seed: int, epochs: int = 200) -> float:
    """Held-out accuracy of a linear head alone on the frozen backbone: the floor adapters must beat."""
    torch.manual_seed(seed)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    head = torch.nn.Linear(train_x.shape[1], num_classes)
    optim = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    xs, ys = (train_x - mu) / sd, torch.from_numpy(train_y)
    for _ in range(epochs):
        loss = F.cross_entropy(head(xs), ys)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        return float((head((held_x - mu) / sd).argmax(1).numpy() == held_y).mean())


def run_training(data_dir: Path, out_dir: Path, config: GatedAdapterConfig, opts: TrainOptions,
                 holdout: float = 0.2, force: bool = False, log: Log = print,
                 progress_bar=None) -> dict:
    """The whole ``edgeadapt train`` job; writes the run folder atomically and returns its metrics."""
    from safetensors.torch import save_file

    from .data.folder import scan_image_folder, stratified_split
    from .rundir import CONFIG, HOLDOUT, METRICS, WEIGHTS, prepare_output, save_npz, staged_folder, write_json
    from .runtime.preprocess import DEFAULT_MEAN, DEFAULT_STD

    out_dir = Path(out_dir)
    prepare_output(out_dir, force, "run")
    started = time.perf_counter()
    torch.manual_seed(opts.seed)
    ds = scan_image_folder(data_dir)
    config.labels, config.num_classes = ds.labels, len(ds.labels)
    log(f"data: {len(ds.files)} images in {len(ds.labels)} classes from {data_dir}")
    with _bar(progress_bar, len(ds.files), "loading images") as step:
        images = ds.load(config.image_size, step)
    train_idx, held_idx = stratified_split(ds.targets, holdout, opts.seed)
    model = GatedAdapterModel(config)
    costs = measure_costs(model, config.image_size)
    with _bar(progress_bar, len(images), "caching frozen prefix") as step:
        feats = cache_prefix(model, images, DEFAULT_MEAN, DEFAULT_STD, step)
    f_train, f_held = feats[train_idx], feats[held_idx]
    y_train, y_held = ds.targets[train_idx], ds.targets[held_idx]
    log(f"split: {len(train_idx)} train, {len(held_idx)} held out; mode {config.mode}, "
        + (f"gate scope {config.gate_scope}, budget {config.budget}" if config.has_gates else "no gates"))
    calib = f_train[torch.randperm(len(f_train), generator=torch.Generator().manual_seed(opts.seed))[:opts.calibration_samples]]
    if config.mode == "static":
        model.set_static_closed(choose_static_blocks(model, calib, costs.block_macs, config.budget))
        log(f"static: blocks {', '.join(map(str, config.static_closed))} dropped for every input "
            "(least feature change per MAC)")
    probe = None
    if config.mode == "sparse":
        probe = linear_probe(pooled_features(model, f_train), y_train, pooled_features(model, f_held), y_held,
                             config.num_classes, opts.seed)
        log(f"baseline: linear probe on the frozen backbone scores {probe:.3f} held out")
    history = train_gated(model, f_train, y_train, costs.for_scope(config.gate_scope), opts, log)
    if config.has_gates:
        model.thresholds.copy_(calibrate(model, calib, costs.for_scope(config.gate_scope), config.budget))
    deployed = evaluate(model, f_held, y_held)
    all_open = evaluate(model, f_held, y_held, torch.full_like(model.thresholds, OPEN_ALL))
    metrics = _metrics(model, costs, deployed, all_open, probe, history, time.perf_counter() - started)
    with staged_folder(out_dir) as tmp:
        save_file(model.trainable_state(), str(tmp / WEIGHTS), metadata={"format": "edgeadapt-adapters-v1"})
        write_json(tmp / CONFIG, {
            "config": config.to_dict(),
            "normalization": {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)},
            "costs": {"block_macs": costs.block_macs, "adapter_macs": costs.adapter_macs,
                      "total_macs": costs.total_macs},
            "train": {**opts.__dict__, "holdout_fraction": holdout, "data": str(data_dir),
                      "n_train": int(len(train_idx)), "n_holdout": int(len(held_idx))},
        })
        write_json(tmp / METRICS, metrics)
        save_npz(tmp / HOLDOUT, images=images[held_idx], targets=y_held)
    return metrics


def _metrics(model: GatedAdapterModel, costs: GateCosts, deployed: dict, all_open: dict, probe: float | None,
             history: list[dict], seconds: float) -> dict:
    config = model.config
    if config.has_gates:
        scope_costs = costs.for_scope(config.gate_scope)
        frac = compute_fraction(deployed["gates"], scope_costs)
        skipped = (1 - frac) * sum(scope_costs)
    else:  # the baselines: only the static one skips blocks, and the same ones for every input
        closed = [b.fixed is False for b in model.adapter_blocks()]
        skipped = sum(m for m, c in zip(costs.block_macs, closed) if c)
        frac = 1 - skipped / sum(costs.block_macs) if costs.block_macs else 1.0
    return {
        "mode": config.mode,
        "heldout_accuracy": deployed["accuracy"],
        "heldout_macro_f1": deployed["macro_f1"],
        "heldout_accuracy_all_open": all_open["accuracy"],
        "linear_probe_accuracy": probe,
        "gate_rates": dict(zip(model.gate_names, deployed["gate_rates"])),
        "compute_fraction": frac,
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
