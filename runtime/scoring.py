"""Device scoring (``edgeadapt devices score``): time a fixed reference workload on the device, keep the score
in a local copy of its profile.

With scores for this host and for a target, a latency measured here can be scaled to an estimate for
the target (always labelled as an estimate). No score is shipped: each comes from running this.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .devices import DeviceProfile, DeviceScore, local_profiles_dir, to_toml
from .host import HostProbe

REFERENCE = "mbconv-v1"


def measure_reference(profile: DeviceProfile, runs: int = 100, warmup: int = 10) -> float:
    """Median batch-1 latency (ms) of the reference workload under the profile's threads and providers."""
    probe = HostProbe(profile.runtime.threads, profile.runtime.spin_wait, list(profile.runtime.execution_providers))
    for _ in range(warmup + runs):
        probe()
    return float(np.median(probe.ms[warmup:]))


def score_device(profile: DeviceProfile, runs: int = 100) -> tuple[DeviceProfile, Path]:
    """Measure, then write the profile with its ``[score]`` table to the local profiles folder."""
    ms = measure_reference(profile, runs)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    scored = replace(profile, score=DeviceScore(REFERENCE, round(ms, 4), stamp, ort.__version__))
    folder = local_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{profile.name}.toml"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_toml(scored))
    tmp.replace(path)
    return replace(scored, path=path), path


def estimate_on_target(host_ms: float, host: DeviceProfile | None, target: DeviceProfile) -> dict | None:
    """Scale a host latency by the ratio of reference scores; None unless both are scored alike."""
    if not (host and host.score and target.score):
        return None
    if host.score.reference != target.score.reference:
        return None
    ratio = target.score.reference_ms / host.score.reference_ms
    return {"estimated_ms": host_ms * ratio, "ratio": ratio, "basis": f"reference workload {REFERENCE} scores",
            "label": "estimate"}
