"""Classification scores shared by training, sweep and compare (numpy only, so the device side has them)."""
from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, targets: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(targets)).mean())


def macro_f1(pred: np.ndarray, targets: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``targets``: rare defects count fully."""
    pred, targets = np.asarray(pred), np.asarray(targets)
    scores = []
    for c in np.unique(targets):
        tp = float(((pred == c) & (targets == c)).sum())
        denom = float((pred == c).sum() + (targets == c).sum())
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (latency, accuracy) pairs: True where no other point is at least as fast and as accurate, and
    strictly better in one of the two."""
    out = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(l2 <= lat and a2 >= acc and (l2 < lat or a2 > acc)
                        for j, (l2, a2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out
