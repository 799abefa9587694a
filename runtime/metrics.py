"""Classification scores shared by training, sweep and compare (numpy only, so the device side has them)."""
from __future__ import annotations

import math

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


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of an accuracy measured on ``n`` inputs (Wilson score): on the demo's 216 held-out
    images a point of accuracy is about two images, well inside the noise."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_interval(correct: np.ndarray) -> list[float]:
    """The Wilson interval of an accuracy from its per-input 0/1 scores, as JSON takes it."""
    correct = np.asarray(correct, bool)
    return list(wilson_interval(int(correct.sum()), len(correct)))


def mcnemar_p(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for two models scored on the same inputs: only the inputs one gets
    right and the other wrong count. Small p: the accuracy difference is unlikely to be chance."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


NOISE_P = 0.05  # a paired p-value at or above this: the accuracy gap is not told apart from chance


def p_text(p: float) -> str:
    """How a paired p-value is printed in every table: the value, and a plain word when it is noise."""
    return f"McNemar p {p:.2f}" + (", within the noise" if p >= NOISE_P else "")


def gap_text(gated: float, all_open: float, p: float | None) -> str:
    """What closing gates costs in accuracy against the same weights all open, in points, and how sure it is
    (runs from before the p-value was recorded: the points alone)."""
    points = 100 * (all_open - gated)
    side = "below" if points >= 0 else "above"
    return f"{abs(points):.1f} points {side} all open" + ("" if p is None else f", {p_text(p)}")
