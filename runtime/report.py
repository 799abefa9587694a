"""What a benchmark result says: figures derived from its timings, its text view, and its JSON file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .host import host_text
from .timing import percentiles
from .verdict import format_verdict


def gating_figures(latency: dict, other_ms: dict[str, list[float]]) -> dict:
    """Against the same bundle with every gate open, and closed (the ceiling); None for baselines."""
    if "all_open" not in other_ms:
        return {"all_open_latency_ms": None, "saving": None, "all_closed_latency_ms": None, "saving_ceiling": None}
    all_open, all_closed = percentiles(other_ms["all_open"]), percentiles(other_ms["all_closed"])
    return {"all_open_latency_ms": all_open, "saving": 1.0 - latency["p50"] / all_open["p50"],
            "all_closed_latency_ms": all_closed,
            # the most gating can save on this bundle (accuracy then drops; see the budget table)
            "saving_ceiling": 1.0 - all_closed["p50"] / all_open["p50"]}


def per_gate_figures(single_ms: dict[str, list[float]], other_ms: dict[str, list[float]],
                     rates: dict[str, float], gates: list[dict], nested: bool = False) -> dict:
    """What each gate saves on this device when it alone closes (all-open p50 minus its p50), its share of the
    sum of those savings beside the share the training cost model gave it, and how far the two disagree.

    A large disagreement means the budget spent during training is not the latency saved here: refit
    the cost model or pick the gated blocks for this device (docs/concepts/measuring-latency.md). ``nested`` (early exits):
    closing one alone skips everything after it, so the savings nest and there are no shares to compare."""
    open_p50 = float(np.percentile(other_ms["all_open"], 50))
    saved = {name: open_p50 - float(np.percentile(ms, 50)) for name, ms in single_ms.items()}
    total = 0.0 if nested else sum(saved.values())
    costs = {} if nested else {g["name"]: float(g["cost"]) for g in gates if "cost" in g}
    cost_total = sum(costs.get(name, 0.0) for name in saved)
    rows = {}
    for name, ms in saved.items():
        rows[name] = {"saved_ms": ms, "latency_share": ms / total if total > 0 else None,
                      "cost_share": costs[name] / cost_total if name in costs and cost_total > 0 else None,
                      "open_rate": rates.get(name)}
    gaps = [abs(r["latency_share"] - r["cost_share"]) for r in rows.values()
            if r["latency_share"] is not None and r["cost_share"] is not None]
    span = open_p50 - float(np.percentile(other_ms["all_closed"], 50))
    return {"gates": rows, "sum_saved_ms": None if nested else total, "all_closed_saved_ms": span,
            "max_share_gap": max(gaps) if gaps else None, "nested": nested}


def format_table(r: dict) -> str:
    """The human view of a benchmark result."""
    lines = [
        f"bundle        {r['bundle']}  ({r['inputs']} inputs, {r['runs']} runs, batch 1, {r['provider']}"
        + (f", {r['threads']} threads" if isinstance(r.get("threads"), int) else "")
        + ("" if r.get("spin_wait", True) else ", no spin-wait") + ")",
        f"{'':14}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}   ms",
        _row("gated" if r.get("saving") is not None else r.get("mode", "model"), r["latency_ms"]),
        *_saving_lines(r),
        *_dense_lines(r),
        f"throughput    {r['throughput_per_s']:.1f} inferences/s (single stream)",
        f"first infer   {r['first_inference_ms']:.1f} ms" + (
            f"   cold start {r['cold_start_ms']:.0f} ms (fresh process: import + session + first inference)"
            if "cold_start_ms" in r else ""),
        f"peak memory   {r['peak_rss_mb']:.0f} MB resident",
        *([host_text(r["host"])] if r.get("host") else []),
    ]
    if "budgets" in r:
        lines.append(format_verdict(r))
    if r.get("provider_warnings"):
        lines.append("providers     " + "; ".join(r["provider_warnings"]))
    if r.get("accuracy") is not None:
        lines.append(f"accuracy      {r['accuracy'] * 100:.1f}% on the benchmark inputs")
    if r["gate_rates"]:
        lines.append("gate open rate  " + "  ".join(f"{k} {v:.2f}" for k, v in r["gate_rates"].items()))
    if r.get("per_gate"):
        lines += _per_gate_lines(r["per_gate"])
    return "\n".join(lines)


def _per_gate_lines(pg: dict) -> list[str]:
    """One row per gate: p50 saved when it alone closes, its share of the savings and of the cost model."""
    lines = ["", f"{'gate closed alone':20}{'saves ms':>10}{'share':>8}{'cost model':>12}{'open rate':>11}"]
    for name, r in pg["gates"].items():
        share = "-" if r["latency_share"] is None else f"{r['latency_share'] * 100:.1f}%"
        cost = "-" if r["cost_share"] is None else f"{r['cost_share'] * 100:.1f}%"
        rate = "-" if r["open_rate"] is None else f"{r['open_rate']:.2f}"
        lines.append(f"{name:20}{r['saved_ms']:10.3f}{share:>8}{cost:>12}{rate:>11}")
    if pg.get("nested"):
        lines.append("early exits nest: closing one alone sends every input out there, skipping all after it")
        return lines
    lines.append(f"sum of single savings {pg['sum_saved_ms']:.3f} ms; every gate closed at once saves "
                 f"{pg['all_closed_saved_ms']:.3f} ms")
    if pg["max_share_gap"] is not None:
        lines.append(f"cost model vs this device: shares differ by at most {pg['max_share_gap'] * 100:.1f} points")
    return lines


def _row(name: str, lat: dict) -> str:
    return f"{name:14}" + "".join(f"{lat[k]:9.2f}" for k in ("p50", "p90", "p99", "mean"))


def _saving_lines(r: dict) -> list[str]:
    """All-open and all-closed beside the gated figures: what gating saves now, and the most it can."""
    if r.get("saving") is None:
        return []
    lines = [_row("all gates open", r["all_open_latency_ms"]),
             f"saving        {r['saving'] * 100:.1f}% of p50 latency against every gate open"]
    if r.get("all_closed_latency_ms"):
        lines += [_row("all closed", r["all_closed_latency_ms"]),
                  f"ceiling       {r['saving_ceiling'] * 100:.1f}% with every gate closed (the most gating can save here)"]
    return lines


def _dense_lines(r: dict) -> list[str]:
    """The graph without If beside the gated one, and a plain word when gating does not pay here."""
    if "dense_latency_ms" not in r:
        return []
    line = [_row("no If (dense)", r["dense_latency_ms"])]
    if r.get("gating_pays") is False:
        line.append(f"NOTE          on {r['provider']} the gated graph is slower than the graph without If: "
                    "gating costs more than it saves here; use the dense graph (graph = \"dense\" in the profile)")
    return line


def write_result(path: Path, result: dict) -> None:
    """JSON through a temporary name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
