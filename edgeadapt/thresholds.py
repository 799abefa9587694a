"""Threshold calibration: how much gated compute a gate pattern costs, the one threshold offset that meets a
budget, and the blocks the ``static`` baseline drops."""
from __future__ import annotations

import numpy as np
import torch

from .adapters.base import GatedModel
from .evaluate import evaluate


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


def calibrate_thresholds(model: GatedModel, feats: torch.Tensor, costs: list[int], budget: float, statistic: str = "mean",
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
