"""Numerics of the exported graph against PyTorch, with gates forced open, closed, mixed and as deployed."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from ..adapters import GatedModel
from ..errors import UserError
from ..runtime.gates import CLOSE_ALL, OPEN_ALL
from .onnx_graph import THRESHOLDS

TOLERANCE = 1e-4
GATE_TIE = 1e-3  # a sample whose gate margin lies this close to zero may go either way in float32


def threshold_cases(deployed: np.ndarray) -> dict[str, np.ndarray]:
    """The gate settings parity is checked under."""
    n = len(deployed)
    mixed = np.where(np.arange(n) % 2 == 0, OPEN_ALL, CLOSE_ALL).astype(np.float32)
    return {
        "deployed": deployed.astype(np.float32),
        "all_open": np.full(n, OPEN_ALL, np.float32),
        "all_closed": np.full(n, CLOSE_ALL, np.float32),
        "mixed": mixed,
    }


def check_parity(model: GatedModel, onnx_path: str, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs logit difference per case; raises if any exceeds the tolerance or gates disagree.

    ``feeds``: the graph's inputs by name (``input``, or ``input_ids`` and ``attention_mask``).
    The reference is the PyTorch model in float64: logits of magnitude ~30 carry ~1e-4 of float32 rounding
    in either framework, so float32 against float32 would measure two roundings, not the export."""
    args = [_exact(torch.from_numpy(feeds[name])) for name in model.input_names]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    report = {}
    model.double()
    try:
        if not model.gate_names:  # a baseline: one graph, one case
            (logits,) = sess.run(None, feeds)
            with torch.no_grad():
                ref = model(*args)[0].numpy()
            diff = float(np.abs(logits - ref).max())
            if diff > TOLERANCE:
                raise ParityError(f"logits differ from PyTorch by {diff:.2e} (> {TOLERANCE:g})")
            return {"model": diff}
        for name, thr in threshold_cases(model.thresholds.float().numpy()).items():
            report[name] = _case(model, sess, feeds, args, name, thr)
    finally:
        model.float()
    return report


def _exact(t: torch.Tensor) -> torch.Tensor:
    """Float inputs in float64 for the reference; token ids and masks as they are."""
    return t.double() if t.is_floating_point() else t


def _case(model: GatedModel, sess: ort.InferenceSession, feeds: dict[str, np.ndarray], args: list[torch.Tensor],
          name: str, thr: np.ndarray) -> float:
    """One threshold setting: identical gate decisions and logits within the tolerance.

    A sample on a tie (a gate margin within ``GATE_TIE`` of zero in the float64 reference) may decide otherwise in
    float32 and then takes another path: it is left out of the comparison, and every other sample must agree."""
    logits, gates = sess.run(None, {**feeds, THRESHOLDS: thr})
    ref_logits, ref_gates = _reference(model, args, thr)
    agree = (gates.astype(bool) == ref_gates).all(axis=1)
    if not agree.all():
        tie = _on_a_tie(model, args, thr)
        if not (agree | tie).all():
            raise ParityError(f"gate decisions differ from PyTorch with gates {name}")
        logits, ref_logits = logits[~tie], ref_logits[~tie]
    diff = float(np.abs(logits - ref_logits).max()) if len(logits) else 0.0
    if diff > TOLERANCE:
        raise ParityError(f"logits differ from PyTorch by {diff:.2e} (> {TOLERANCE:g}) with gates {name}")
    return diff


def _reference(model: GatedModel, args: list[torch.Tensor], thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 model's logits and gate decisions (bool) at thresholds ``thr``."""
    with torch.no_grad():
        logits, gates = model(*args, torch.from_numpy(thr).double())
    return logits.numpy(), gates.numpy() > 0.5


def _on_a_tie(model: GatedModel, args: list[torch.Tensor], thr: np.ndarray) -> np.ndarray:
    """Per sample: whether moving every threshold by ``GATE_TIE`` either way changes any of its decisions."""
    below = _reference(model, args, thr.astype(np.float64) - GATE_TIE)[1]
    above = _reference(model, args, thr.astype(np.float64) + GATE_TIE)[1]
    return (below != above).any(axis=1)


class ParityError(UserError):
    """The exported graph does not compute what the PyTorch model computes."""


def check_dense_parity(gated_path, dense_path, feeds: dict[str, np.ndarray], n_gates: int) -> float:
    """The graph without ``If`` must compute what the gated graph computes, for every case above."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    gated = ort.InferenceSession(str(gated_path), opts, providers=["CPUExecutionProvider"])
    dense = ort.InferenceSession(str(dense_path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for name, thr in threshold_cases(np.zeros(n_gates, np.float32)).items():
        a = gated.run(None, {**feeds, THRESHOLDS: thr})
        b = dense.run(None, {**feeds, THRESHOLDS: thr})
        if not np.array_equal(a[1], b[1]):
            raise ParityError(f"the graph without If decides gates differently with gates {name}")
        worst = max(worst, float(np.abs(a[0] - b[0]).max()))
        if worst > TOLERANCE:
            raise ParityError(f"the graph without If differs by {worst:.2e} (> {TOLERANCE:g}) with gates {name}")
    return worst
