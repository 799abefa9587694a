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
                 probe_feed: dict[str, np.ndarray]) -> OpenedSession:
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
            session = ort.InferenceSession(str(model_path), _options(threads), providers=[name])
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


def _options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # idle pool threads must not spin: benchmarks interleave sessions (gated, dense) on few cores, and a
    # spinning pool would steal the next session's CPU and bias every comparison
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
