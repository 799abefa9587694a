"""The bundle's budget table: compute fraction and held-out accuracy across gate-threshold offsets.

Lets the runtime move the same ``model.onnx`` to another compute budget (``--budget F``) without
re-export: the table maps a budget to the threshold that met it on held-out images.
"""
from __future__ import annotations

import numpy as np
import torch

from ..adapters import GatedModel
from ..evaluate import cache_prefix, evaluate
from ..runtime.gates import CLOSE_ALL, OPEN_ALL
from ..thresholds import compute_fraction, compute_median

# gate logits sit within a few units of their threshold (training hinges the margin at ±3), so the coarse
# grid is dense near 0; the refinement then adds rows only where compute jumps (34 rows on the demo, not 48)
COARSE = np.array([-12.0, -6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0, 12.0])
MAX_STEP = 0.05    # refine until neighbouring rows differ by at most this much compute (or REFINE rounds)
REFINE = 6


def budget_table(model: GatedModel, arrays: dict[str, np.ndarray], targets: np.ndarray, norm: dict,
                 costs: list[int]) -> list[dict]:
    """One row per shared threshold: the compute it gives (mean and median input) and the accuracy it keeps.

    A coarse grid, then midpoints wherever compute jumps, so steep regions get rows where they matter.
    """
    feats = cache_prefix(model, arrays, norm, lambda n: None)
    rows: dict[float, dict] = {}

    def add(off: float) -> None:
        if off not in rows:
            ev = evaluate(model, feats, targets, torch.full_like(model.thresholds, off))
            rows[off] = {"threshold": off, "compute_fraction": round(compute_fraction(ev["gates"], costs), 6),
                         "compute_median": round(compute_median(ev["gates"], costs), 6),
                         "heldout_accuracy": round(ev["accuracy"], 6)}

    for off in [OPEN_ALL, *COARSE.tolist(), round(float(model.thresholds[0]), 6), CLOSE_ALL]:
        add(off)
    for _ in range(REFINE):
        keys = sorted(rows)
        gaps = [(a, b) for a, b in zip(keys, keys[1:])
                if abs(rows[a]["compute_fraction"] - rows[b]["compute_fraction"]) > MAX_STEP]
        if not gaps:
            break
        for a, b in gaps:
            add(round((a + b) / 2, 6))
    return [rows[k] for k in sorted(rows)]
