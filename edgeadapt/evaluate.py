"""Running a gated model on stored data: model inputs, index batches, the cached frozen prefix, held-out
accuracy and gate rates, and the linear-probe floor."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .adapters.base import GatedModel
from .runtime.metrics import macro_f1
from .runtime.preprocess import normalize


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
