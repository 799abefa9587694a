"""Execution-provider choice: the profile's providers in order, each proven by a real inference."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import UserError

CPU = "CPUExecutionProvider"


@dataclass
class OpenedSession:
    """The session, the provider that actually ran a test inference, and why others were passed over."""

    session: ort.InferenceSession
    provider: str
    session_ms: float
    first_inference_ms: float  # the test inference is the session's first: its cost is the first-run cost
    warnings: list[str] = field(default_factory=list)


def open_session(model_path: Path, providers: list[str] | None, threads: int | None,
                 probe_feed: dict[str, np.ndarray], spin_wait: bool = True) -> OpenedSession:
    """Try each provider in order; a listed provider can still fail at run time, so each must run ``probe_feed``."""
    wanted = list(providers or [CPU])
    available = set(ort.get_available_providers())
    warnings: list[str] = []
    for name in wanted + ([CPU] if CPU not in wanted else []):
        if name not in available:
            warnings.append(f"{name} is not available in this onnxruntime build")
            continue
        try:
            started = time.perf_counter()
            session = ort.InferenceSession(str(model_path), _options(threads, spin_wait), providers=[name])
            created = time.perf_counter()
            session.run(None, probe_feed)
            ran = time.perf_counter()
        except Exception as exc:  # onnxruntime raises several private types
            if name == CPU:
                raise UserError(f"{model_path} could not be loaded by onnxruntime "
                                f"({str(exc).splitlines()[0][:160]}); re-export the bundle") from None
            warnings.append(f"{name} failed a test inference ({str(exc).splitlines()[0][:120]})")
            continue
        if name != wanted[0]:
            warnings.append(f"falling back to {name}")
        return OpenedSession(session, name, (created - started) * 1e3, (ran - created) * 1e3, warnings)
    raise UserError(f"no execution provider could run {model_path}: {'; '.join(warnings)}")


def _options(threads: int | None, spin_wait: bool = True) -> ort.SessionOptions:
    """``spin_wait``: during a run, idle pool threads spin for the next operator instead of sleeping; they stop
    when the run returns (``force_spinning_stop``), so no CPU burns between runs and two sessions timed in turn
    do not take each other's cores. Without it every operator pays a thread wake-up: at 2 threads on 2 cores
    the demo bundle ran about 30 % slower, slower than on 1 thread (docs/concepts/measuring-latency.md)."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts
