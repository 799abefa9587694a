"""How the benchmarks time: interleaved timing loops under a host probe, percentiles, peak memory, cold start.

``bench``, ``compare``, ``sweep`` and export's device fit all time through ``time_interleaved``.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .host import STEADY_SPREAD, HostProbe
from .session import Runtime

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
