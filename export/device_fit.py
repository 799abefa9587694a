"""Budget-aware export: pick the gate threshold whose latency, measured on this host, fits a device's budget.

Each distinct row of the budget table is timed at batch 1 with onnxruntime under the profile's threads;
the profile's percentile of those times is the expected latency. Among rows that fit, the one with the
best held-out accuracy wins (less compute on a tie). Without calibration scores the expectation is this
host's own figure, and the manifest says so.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..runtime.bundle import Bundle
from ..runtime.devices import DeviceProfile
from ..runtime.session import Runtime
from ..runtime.timing import time_interleaved

RUNS_PER_ROW = 40
WARMUP = 3


def fit_to_device(model_path: Path, manifest: dict, samples: np.ndarray, profile: DeviceProfile,
                  log: Callable[[str], None]) -> dict:
    """The chosen table row with its measured latency; raises when no threshold fits the budget.

    ``samples``: the bundle's stored inputs of its kind (uint8 images, float array rows or texts)."""
    rt = Runtime(Bundle(model_path.parent, manifest), threads=profile.runtime.threads,
                 providers=list(profile.runtime.execution_providers),
                 spin_wait=profile.runtime.spin_wait)
    pct, budget = profile.budgets.latency_percentile, profile.budgets.latency_ms
    rows = _distinct(manifest["budget_table"])
    log(f"timing {len(rows)} threshold settings on this host for {profile.name} "
        f"(p{pct:g} budget {budget:g} ms, {rt.provider})...")
    settings = {k: (rt, np.full(len(manifest["gates"]), row["threshold"], np.float32)) for k, row in enumerate(rows)}
    times = time_interleaved(settings, samples, RUNS_PER_ROW, WARMUP)  # rows interleaved: drift hits all alike
    measured = [{**row, "expected_latency_ms": float(np.percentile(times[k], pct))} for k, row in enumerate(rows)]
    fitting = [r for r in measured if r["expected_latency_ms"] <= budget]
    if not fitting:
        fastest = min(r["expected_latency_ms"] for r in measured)
        raise UserError(f"no gate setting fits {profile.name}'s p{pct:g} budget of {budget:g} ms: the fastest "
                        f"measures {fastest:.2f} ms on this host; raise the budget or pick another device")
    best = max(fitting, key=lambda r: (r["heldout_accuracy"], -r["compute_fraction"]))
    return {"device": profile.name, "latency_budget_ms": budget, "latency_percentile": pct,
            "provider": rt.provider, "threads": profile.runtime.threads,
            "expected_latency_basis": "measured on the exporting host (no calibration scores)",
            "chosen": best, "measured": measured}


def _distinct(table: list[dict]) -> list[dict]:
    """One row per distinct compute fraction (the lowest threshold reaching it): equal rows time the same."""
    seen: dict[float, dict] = {}
    for row in sorted(table, key=lambda r: r["threshold"]):
        seen.setdefault(row["compute_fraction"], row)
    return list(seen.values())
