"""Single-stream (batch 1) benchmark of a bundle: gated vs. the same graph with every gate open."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .bundle import DENSE, load_bundle, require_gates
from .calibrate import estimate_on_target
from .devices import HOST, DeviceProfile, resolve_profile
from .host import STEADY_SPREAD, HostProbe, host_text
from .preprocess import load_image
from .session import ALL_CLOSED, ALL_OPEN, Runtime

COLD_START_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from edgeadapt.runtime import Runtime
t1 = time.perf_counter()
rt = Runtime(sys.argv[1], threads=int(sys.argv[2]) or None, providers=json.loads(sys.argv[3]),
             spin_wait=sys.argv[4] == "1")
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "session_ms": rt.session_ms, "first_inference_ms": rt.first_inference_ms}))
"""


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """The latency summary used everywhere: p50, p90, p99 and mean, in milliseconds."""
    a = np.asarray(samples_ms, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


SESSION_TURN = 20  # inputs a session runs before the next takes its turn (time_interleaved)

Setting = tuple[Runtime, "np.ndarray | None"]  # a runtime and its gate thresholds (None: its default)


def time_interleaved(settings: dict[str, Setting], images: np.ndarray, runs: int, warmup: int = 10,
                     min_duration_s: float = 0.0, record: Callable[[str, int, tuple], None] | None = None,
                     progress: Callable[[int], None] | None = None,
                     probe: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """ms per call of every setting on the same inputs, after ``warmup`` inputs per session.

    Settings of one runtime run input by input in turn, so drift on a busy machine hits them alike. Separate
    runtimes (sessions) take turns of SESSION_TURN inputs, each turn opened by one untimed round: switching
    sessions on every call would time each with the other's weights in the caches. Runs until every setting has
    ``runs`` calls and ``min_duration_s`` has passed; ``record(name, i, outputs)`` sees every timed call and
    ``progress(1)`` every input done, up to ``runs``. ``probe()`` (a ``HostProbe``) runs before every turn, and
    then every session opens its turn with an untimed round.
    """
    groups: dict[int, list[str]] = {}
    for name, (rt, _) in settings.items():
        groups.setdefault(id(rt), []).append(name)
    prepared = {key: settings[names[0]][0].prepare(images) for key, names in groups.items()}

    def call(key: int, name: str, i: int) -> tuple[tuple, float]:
        """One inference of input ``i`` under setting ``name``: its outputs and ms."""
        rt, thr = settings[name]
        x = rt.one(prepared[key], i % len(images))
        t = time.perf_counter()
        out = rt.infer(x, thr)
        return out, (time.perf_counter() - t) * 1e3

    for key, names in groups.items():
        for i in range(warmup):
            for name in names:
                call(key, name, i)
    times: dict[str, list[float]] = {name: [] for name in settings}
    last = list(groups)[-1]  # an input counts as done once the last session has timed it
    started, done = time.perf_counter(), 0
    while done < runs or time.perf_counter() - started < min_duration_s:
        turn = range(done, done + (min(SESSION_TURN, runs - done) if done < runs else SESSION_TURN))
        if probe is not None:
            probe()
        for key, names in groups.items():
            if len(groups) > 1 or probe is not None:  # untimed: threads and caches were another session's
                for name in names:
                    call(key, name, turn[0])
            for i in turn:
                for name in names:
                    out, ms = call(key, name, i)
                    times[name].append(ms)
                    if record:
                        record(name, i, out)
                if progress and key == last and i < runs:
                    progress(1)
        done += len(turn)
    return times


def time_until_steady(settings: dict[str, Setting], images: np.ndarray, runs: int, timings: int = 1,
                      threads: int | None = None, spin_wait: bool = True, log: Callable[[str], None] | None = None,
                      progress: Callable[[int], None] | None = None, **kwargs) -> tuple[dict[str, list[float]], dict]:
    """``time_interleaved`` under a host probe; while the probe calls a rotation unsteady, time it again,
    ``timings`` rotations at most, and keep the steadiest: its ``host`` lists every rotation's spread."""
    kept, spreads = None, []
    for attempt in range(1, timings + 1):
        probe = HostProbe(threads, spin_wait)
        times = time_interleaved(settings, images, runs, progress=progress if attempt == 1 else None, probe=probe,
                                 **kwargs)
        host = probe.summary()
        spreads.append(host["spread"])
        if kept is None or host["spread"] < kept[1]["spread"]:
            kept = (times, host)
        if host["steady"]:
            break
        if attempt < timings and log:
            log(f"host unsteady while timing (reference workload p90/p10 {host['spread']:.2f}, above "
                f"{STEADY_SPREAD}); timing again, rotation {attempt + 1} of at most {timings}...")
    times, host = kept
    return times, {**host, "rotations": spreads}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cold_start(bundle_dir: Path, threads: int, providers: list[str], spin_wait: bool = True) -> dict[str, float]:
    """A fresh interpreter: import, session, first inference; wall time seen from outside included."""
    started = time.perf_counter()
    # run from a neutral folder: ``python -c`` puts the working folder first on sys.path
    args = [sys.executable, "-c", COLD_START_SNIPPET, str(Path(bundle_dir).resolve()), str(threads or 0),
            json.dumps(providers), "1" if spin_wait else "0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    wall = (time.perf_counter() - started) * 1e3
    if proc.returncode != 0:
        raise UserError(f"cold-start run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"cold_start_ms": wall, **{f"cold_{k}": v for k, v in inner.items()}}


def load_inputs(rt: Runtime, data: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Real inputs: the bundle's held-out samples, or every image under ``data`` (labels if foldered)."""
    if data is None:
        return rt.bundle.samples()
    data = Path(data)
    if rt.kind == "text":
        return _load_texts(rt, data)
    if rt.kind == "array":
        return _load_arrays(rt, data)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder of images")
    from .preprocess import IMAGE_SUFFIXES

    files = sorted(f for f in data.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--data {data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = np.stack([load_image(f, rt.bundle.image_size) for f in files])
    labels = rt.bundle.labels
    targets = [labels.index(f.parent.name) if f.parent.name in labels else -1 for f in files]
    return images, (np.asarray(targets) if min(targets) >= 0 else None)


def _load_texts(rt: Runtime, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Texts of a ``text,label`` CSV (labels used where every one is the bundle's)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"--data {path} is not a readable UTF-8 CSV ({exc.__class__.__name__})") from None
    if not rows or "text" not in rows[0]:
        raise UserError(f"--data {path} needs a 'text' column and at least one row")
    labels = rt.bundle.labels
    targets = [labels.index(r.get("label") or "") if (r.get("label") or "") in labels else -1 for r in rows]
    return np.array([r["text"] for r in rows], dtype=np.str_), (np.asarray(targets) if min(targets) >= 0 else None)


def _load_arrays(rt: Runtime, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows ``X`` of an .npz (labels ``y`` used where every one is the bundle's)."""
    from .arrays import read_rows

    x, y = read_rows(path)
    labels = rt.bundle.labels
    if y is None or any(str(v) not in labels for v in y.tolist()):
        return x, None
    return x, np.array([labels.index(str(v)) for v in y.tolist()])


def run_bench(bundle_dir: Path, data: Path | None = None, runs: int = 200, warmup: int = 10,
              threads: int | None = None, measure_cold_start: bool = True,
              progress: Callable[[int], None] | None = None, device: DeviceProfile | None = None,
              min_duration_s: float = 0.0, budget: float | None = None, spin_wait: bool | None = None,
              per_gate: bool = False, timings: int = 1, log: Callable[[str], None] | None = None) -> dict:
    """Gated and all-open runs interleaved one to one, so machine noise hits both alike.

    Measures at least ``runs`` queries and for at least ``min_duration_s`` (MLPerf single-stream style);
    with a ``device`` its threads, providers and spin-waiting are used and every budget gets a verdict.
    ``per_gate``: also time every gate closed alone (see ``per_gate_figures``). ``timings``: rotations at most
    while the host probe reads unsteady (``time_until_steady``).
    """
    if runs < 1:
        raise UserError("--runs must be at least 1")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    if per_gate:
        require_gates(bundle, "--per-gate")
    threads = threads or (device.runtime.threads if device else None)
    providers = list(device.runtime.execution_providers) if device else ["CPUExecutionProvider"]
    graph = device.runtime.graph if device else "gated"
    if spin_wait is None:
        spin_wait = device.runtime.spin_wait if device else True
    settings = {"threads": threads, "providers": providers, "budget": budget, "spin_wait": spin_wait}
    rt = Runtime(bundle, graph=graph, **settings)
    gated = rt if graph == "gated" else Runtime(bundle, **settings)
    # the graph without If is timed beside the gated one; when it is the measured graph, it is rt itself
    dense = (Runtime(bundle, graph="dense", **settings)
             if graph == "gated" and bundle.has_gates and (bundle.root / DENSE).exists() else None)
    images, targets = load_inputs(rt, data)
    others = ({"all_open": (gated, np.full_like(rt.thresholds, ALL_OPEN)),
               "all_closed": (gated, np.full_like(rt.thresholds, ALL_CLOSED))} if bundle.has_gates else {})
    if dense is not None:
        others["dense"] = (dense, None)
    singles = _single_closures(gated, bundle.gate_names) if per_gate else {}
    others.update(singles)
    gate_rows: dict[int, np.ndarray] = {}  # per timed call; a rotation timed again repeats the same calls
    correct: dict[int, bool] = {}

    def record(name: str, i: int, out: tuple) -> None:
        if name == "gated":
            gate_rows[i] = out[1][0]
            if targets is not None:
                correct[i] = bool(out[0][0].argmax() == targets[i % len(images)])

    started = time.perf_counter()
    times, host = time_until_steady({"gated": (rt, None), **others}, images, runs, timings, threads, spin_wait, log,
                                    progress, warmup=warmup, min_duration_s=min_duration_s, record=record)
    gated_ms = times.pop("gated")
    single_ms = {key.removeprefix(CLOSED_ALONE): times.pop(key) for key in singles}
    other_ms, i = times, len(gated_ms)
    dense_ms = gated_ms if graph == "dense" else other_ms.get("dense", [])
    latency = percentiles(gated_ms)
    rates = np.mean(list(gate_rows.values()), axis=0)
    result = {
        "bundle": str(bundle_dir),
        "inputs": int(len(images)),
        "runs": i,
        "duration_s": time.perf_counter() - started,
        "threads": threads or "onnxruntime default",
        "spin_wait": spin_wait,
        "provider": rt.provider,
        "provider_warnings": rt.provider_warnings,
        "budget": budget,
        "thresholds": rt.thresholds.tolist(),
        "mode": bundle.manifest.get("mode", "sparse"),
        "graph": graph,
        "latency_ms": latency,
        **_gating_figures(latency, other_ms),
        "throughput_per_s": 1000.0 / latency["mean"],
        "first_inference_ms": rt.first_inference_ms,
        "session_ms": rt.session_ms,
        "gate_rates": dict(zip(rt.bundle.gate_names, map(float, rates))),
        "accuracy": sum(correct.values()) / len(correct) if targets is not None else None,
        "peak_rss_mb": peak_rss_mb(),
        "host": host,
    }
    if single_ms:
        result["per_gate"] = per_gate_figures(single_ms, other_ms, result["gate_rates"], bundle.manifest["gates"],
                                              nested=bundle.manifest.get("gate_scope") == "exit")
    if dense_ms:
        result["dense_latency_ms"] = percentiles(dense_ms)
        result["gating_pays"] = latency["p50"] < result["dense_latency_ms"]["p50"] if graph == "gated" else None
    if device:
        result.update(verdict(device, gated_ms, result["peak_rss_mb"]))
    if measure_cold_start:
        result.update(cold_start(bundle_dir, threads or 0, providers, spin_wait))
    return result


def _gating_figures(latency: dict, other_ms: dict[str, list[float]]) -> dict:
    """Against the same bundle with every gate open, and closed (the ceiling); None for baselines."""
    if "all_open" not in other_ms:
        return {"all_open_latency_ms": None, "saving": None, "all_closed_latency_ms": None, "saving_ceiling": None}
    all_open, all_closed = percentiles(other_ms["all_open"]), percentiles(other_ms["all_closed"])
    return {"all_open_latency_ms": all_open, "saving": 1.0 - latency["p50"] / all_open["p50"],
            "all_closed_latency_ms": all_closed,
            # the most gating can save on this bundle (accuracy then drops; see the budget table)
            "saving_ceiling": 1.0 - all_closed["p50"] / all_open["p50"]}


CLOSED_ALONE = "closed alone: "  # settings key prefix of a per-gate run (every other gate open)


def _single_closures(rt: Runtime, names: list[str]) -> dict[str, Setting]:
    """One setting per gate: that gate closed, every other open."""
    out = {}
    for g, name in enumerate(names):
        thr = np.full_like(rt.thresholds, ALL_OPEN)
        thr[g] = ALL_CLOSED
        out[CLOSED_ALONE + name] = (rt, thr)
    return out


def per_gate_figures(single_ms: dict[str, list[float]], other_ms: dict[str, list[float]],
                     rates: dict[str, float], gates: list[dict], nested: bool = False) -> dict:
    """What each gate saves on this device when it alone closes (all-open p50 minus its p50), its share of the
    sum of those savings beside the share the training cost model gave it, and how far the two disagree.

    A large disagreement means the budget spent during training is not the latency saved here: recalibrate
    the cost model or pick the gated blocks for this device (docs/runtime.md). ``nested`` (early exits):
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
    estimate = estimate_on_target(headline, _calibrated_host(), device) if mismatch else None
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


def _calibrated_host() -> DeviceProfile | None:
    """This host's calibrated local copy, if ``devices calibrate host`` was run here."""
    host = resolve_profile(HOST)
    return host if host.calibration else None


_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


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
        lines.append(f"              no estimate: run 'edgeadapt devices calibrate host' here and "
                     f"'edgeadapt devices calibrate {r['device']}' on the device")
    return "\n".join(lines)


def write_result(path: Path, result: dict) -> None:
    """JSON through a temporary name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
