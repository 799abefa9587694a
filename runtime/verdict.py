"""A benchmark against a device profile: each budget met or missed, whether this host is that device, and an
estimate for the device from both device scores when it is not."""
from __future__ import annotations

import os
import platform

import numpy as np

from .devices import HOST, DeviceProfile, resolve_profile
from .scoring import estimate_on_target


def verdict(device: DeviceProfile, gated_ms: list[float], peak_mb: float) -> dict:
    """The profile's percentile as the headline, a verdict per budget, and whether this host is that device."""
    b = device.budgets
    headline = float(np.percentile(np.asarray(gated_ms), b.latency_percentile))
    budgets = {
        "latency": {"budget_ms": b.latency_ms, "percentile": b.latency_percentile, "measured_ms": headline,
                    "met": headline <= b.latency_ms},
        "memory": {"budget_mb": b.memory_mb, "measured_mb": peak_mb, "met": peak_mb <= b.memory_mb},
    }
    mismatch = host_mismatch(device)
    estimate = estimate_on_target(headline, _scored_host(), device) if mismatch else None
    return {
        "estimated_on_device": estimate,
        "device": device.name,
        "headline_latency_ms": headline,
        "budgets": budgets,
        "all_budgets_met": all(v["met"] for v in budgets.values()),
        "host_matches_device": not mismatch,
        "host_mismatch": mismatch,
    }


def host_mismatch(device: DeviceProfile) -> list[str]:
    """Where this host differs from the profile (architecture, cores): then the figures describe this host."""
    arch = _ARCH_ALIASES.get(platform.machine().lower(), platform.machine().lower())
    want = _ARCH_ALIASES.get(device.hardware.arch.lower(), device.hardware.arch.lower())
    out = []
    if arch != want:
        out.append(f"architecture: this host is {arch}, {device.name} is {want}")
    cores = os.cpu_count() or 0
    if cores != device.hardware.cores:
        out.append(f"cores: this host has {cores}, {device.name} has {device.hardware.cores}")
    return out


def _scored_host() -> DeviceProfile | None:
    """This host's scored local copy, if ``devices score host`` was run here."""
    host = resolve_profile(HOST)
    return host if host.score else None


_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def format_verdict(r: dict) -> str:
    """Budget lines: the headline percentile against the latency budget, peak memory against the memory budget."""
    lat, mem = r["budgets"]["latency"], r["budgets"]["memory"]
    lines = [
        f"device        {r['device']}",
        f"latency       p{lat['percentile']:g} {lat['measured_ms']:.2f} ms vs budget {lat['budget_ms']:g} ms: "
        f"{'met' if lat['met'] else 'MISSED'}",
        f"memory        peak {mem['measured_mb']:.0f} MB vs budget {mem['budget_mb']:g} MB: "
        f"{'met' if mem['met'] else 'MISSED'}",
    ]
    for line in r["host_mismatch"]:
        lines.append(f"NOTE          this host is not {r['device']} ({line}): the figures describe this host")
    est = r.get("estimated_on_device")
    if est:
        lines.append(f"ESTIMATE      p{lat['percentile']:g} on {r['device']} about {est['estimated_ms']:.2f} ms "
                     f"(x{est['ratio']:.2f} from {est['basis']}; an estimate, not a measurement)")
    elif r["host_mismatch"]:
        lines.append(f"              no estimate: run 'edgeadapt devices score host' here and "
                     f"'edgeadapt devices score {r['device']}' on the device")
    return "\n".join(lines)
