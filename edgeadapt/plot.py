"""Accuracy against latency as a PNG, the Pareto front marked: the picture a sweep or comparison is for."""
from __future__ import annotations

import os
from pathlib import Path

from .choices import model_kind

MODE_COLOURS = {"sparse": "#d62728", "sparse-exit": "#ff7f0e", "sparse-adapter": "#e377c2", "dense": "#1f77b4",
                "static": "#2ca02c", "linear-probe": "#7f7f7f", "full": "#9467bd"}


def plot_tradeoff(entries: list[dict], path: Path, title: str) -> None:
    """``entries`` carry ``name``, ``mode``, ``accuracy``, ``accuracy_ci95``, ``latency_ms.p50`` and ``pareto``;
    written atomically. Each point gets a bar over its 95 % interval: points whose bars overlap are not told
    apart by this held-out set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for mode, colour in MODE_COLOURS.items():
        pts = [e for e in entries if model_kind(e["mode"], e.get("gate_scope")) == mode]
        if pts:
            lat, acc = [e["latency_ms"]["p50"] for e in pts], [e["accuracy"] * 100 for e in pts]
            lo = [a - e["accuracy_ci95"][0] * 100 for a, e in zip(acc, pts)]
            hi = [e["accuracy_ci95"][1] * 100 - a for a, e in zip(acc, pts)]
            ax.errorbar(lat, acc, yerr=[lo, hi], fmt="none", ecolor=colour, alpha=0.45, lw=1, capsize=2, zorder=2)
            ax.scatter(lat, acc, s=42, color=colour, label=mode, zorder=3)
    for e in entries:
        ax.annotate(e["name"], (e["latency_ms"]["p50"], e["accuracy"] * 100), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    front = sorted((e for e in entries if e["pareto"]), key=lambda e: e["latency_ms"]["p50"])
    if len(front) > 1:
        ax.step([e["latency_ms"]["p50"] for e in front], [e["accuracy"] * 100 for e in front], where="post",
                color="black", lw=1, ls="--", label="Pareto front", zorder=2)
    ax.set_xlabel("p50 latency at batch 1 (ms, this host)")
    ax.set_ylabel("held-out accuracy (%), bars: 95 % interval")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
