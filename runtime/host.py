"""How steadily the host ran while bundles were timed: a fixed workload timed once per turn.

On a shared machine the host can slow down for part of a timing run. A uniform slowdown keeps the ratios
between bundles; a change halfway does not when one model's latency has two modes (early exits: inputs that
leave, inputs that go on), because its median then lands in another mode than a one-mode model's
(docs/concepts/measuring-latency.md, "Host steadiness"). The probe says when that happened.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .providers import CPU, open_session

REFERENCE_PATH = Path(__file__).with_name("reference_workload.onnx")  # built by export/reference_workload.py

STEADY_SPREAD = 1.3  # p90 / p10 of the probe's times above this: the host's speed changed during timing


class HostProbe:
    """The reference workload (also what ``devices score`` scores a device by) in its own session; each call
    times one batch-1 inference."""

    def __init__(self, threads: int | None = None, spin_wait: bool = True, providers: list[str] | None = None):
        x = np.random.default_rng(0).standard_normal((1, 32, 56, 56)).astype(np.float32)
        self._feed = {"input": x}
        self._session = open_session(REFERENCE_PATH, providers or [CPU], threads, self._feed, spin_wait).session
        self.ms: list[float] = []

    def __call__(self) -> None:
        started = time.perf_counter()
        self._session.run(None, self._feed)
        self.ms.append((time.perf_counter() - started) * 1e3)

    def summary(self) -> dict:
        return host_summary(self.ms)


def host_summary(ms: list[float]) -> dict:
    """The probe's p10/p50/p90, their spread (p90 / p10) and whether that stayed within ``STEADY_SPREAD``."""
    p10, p50, p90 = (float(v) for v in np.percentile(np.asarray(ms, np.float64), [10, 50, 90]))
    spread = p90 / p10
    return {"reference_ms": {"p10": p10, "p50": p50, "p90": p90}, "probes": len(ms), "spread": spread,
            "steady": spread <= STEADY_SPREAD}


def host_text(host: dict) -> str:
    """One line for the human tables; an unsteady host says what it spoils and what to do."""
    turns = f"{host['probes']} turn{'s' if host['probes'] != 1 else ''}"
    figures = f"reference workload p90/p10 {host['spread']:.2f} over {turns}"
    rotations = host.get("rotations") or []  # results from before commit 7e373f4 timed one rotation
    if len(rotations) > 1:
        figures += f"; the steadiest of {len(rotations)} rotations, which read " + ", ".join(f"{r:.2f}" for r in rotations)
    if host["steady"]:
        return f"host          steady ({figures})"
    return (f"host          UNSTEADY ({figures}, above {STEADY_SPREAD}): its speed changed while timing, so p50 "
            "ratios against models with two latency modes (early exits) are unreliable; time again on a quiet host")
