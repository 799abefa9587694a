"""Numerics of the exported ONNX graph against PyTorch: every gate setting, batch independence, tamper detection."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import ORT_THREADS, Trained, median_thresholds
from edgeadapt.export.parity import ParityError, check_parity
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from edgeadapt.runtime.preprocess import normalize
from onnx import numpy_helper

pytestmark = pytest.mark.slow
TOL = 1e-4


@pytest.fixture(scope="module")
def session(trained: Trained) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = ORT_THREADS
    return ort.InferenceSession(str(trained.bundle / "model.onnx"), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def x(trained: Trained, holdout) -> np.ndarray:
    norm = json.loads((trained.run / "config.json").read_text())["normalization"]
    images, _ = holdout
    assert len(images) >= 8
    return normalize(images, norm["mean"], norm["std"])


def _thresholds(case: str, model, x: np.ndarray) -> np.ndarray:
    if case == "deployed":
        return model.thresholds.numpy().astype(np.float32)
    if case == "all_open":
        return np.full(9, OPEN_ALL, np.float32)
    if case == "all_closed":
        return np.full(9, CLOSE_ALL, np.float32)
    if case == "mixed":
        return np.where(np.arange(9) % 2 == 0, OPEN_ALL, CLOSE_ALL).astype(np.float32)
    return median_thresholds(model, torch.from_numpy(x)).numpy().astype(np.float32)  # "median"


def _torch(model, x: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logits, gates = model(torch.from_numpy(x), torch.from_numpy(thr))
    return logits.numpy(), gates.numpy() > 0.5


@pytest.mark.parametrize("case", ["deployed", "all_open", "all_closed", "mixed", "median"])
def test_onnx_matches_pytorch(case: str, session: ort.InferenceSession, trained_model, x: np.ndarray) -> None:
    thr = _thresholds(case, trained_model, x)
    logits, gates = session.run(None, {"input": x, "gate_thresholds": thr})
    ref_logits, ref_gates = _torch(trained_model, x, thr)
    assert logits.shape == ref_logits.shape == (len(x), len(trained_model.config.labels))
    assert gates.shape == (len(x), 9)
    assert np.abs(logits - ref_logits).max() <= TOL
    np.testing.assert_array_equal(gates.astype(bool), ref_gates)
    if case == "all_open":
        assert gates.all()
    elif case == "all_closed":
        assert not gates.any()
    elif case == "mixed":
        np.testing.assert_array_equal(gates.astype(bool), np.tile(np.arange(9) % 2 == 0, (len(x), 1)))
    elif case == "median":  # every gate open for some samples and closed for others
        assert np.all(gates.any(0)) and not np.any(gates.all(0))


def test_default_threshold_input_is_the_deployed_one(session: ort.InferenceSession, trained_model,
                                                      x: np.ndarray) -> None:
    """Leaving gate_thresholds out uses the initializer default, i.e. the calibrated thresholds."""
    logits, gates = session.run(None, {"input": x})
    ref_logits, ref_gates = _torch(trained_model, x, trained_model.thresholds.numpy())
    assert np.abs(logits - ref_logits).max() <= TOL
    np.testing.assert_array_equal(gates.astype(bool), ref_gates)


def test_gate_settings_change_the_logits(session: ort.InferenceSession, x: np.ndarray) -> None:
    """The If nodes really switch computation: all-open and all-closed give different logits."""
    open_logits, _ = session.run(None, {"input": x, "gate_thresholds": np.full(9, OPEN_ALL, np.float32)})
    closed_logits, _ = session.run(None, {"input": x, "gate_thresholds": np.full(9, CLOSE_ALL, np.float32)})
    assert np.abs(open_logits - closed_logits).max() > 1e-2


def test_check_parity_reports_every_case(trained: Trained, trained_model, x: np.ndarray) -> None:
    report = check_parity(trained_model, str(trained.bundle / "model.onnx"), {"input": x[:4]})
    assert set(report) == {"deployed", "all_open", "all_closed", "mixed"}
    assert all(0.0 <= v <= TOL for v in report.values())
    # the float64 reference is temporary: the model goes on to the budget table in float32
    assert {p.dtype for p in trained_model.parameters()} == {torch.float32}
    assert trained_model.thresholds.dtype == torch.float32


def test_onnx_is_batch_independent(session: ort.InferenceSession, trained_model, x: np.ndarray) -> None:
    thr = _thresholds("median", trained_model, x)
    logits, gates = session.run(None, {"input": x, "gate_thresholds": thr})
    for i in range(len(x)):
        one_logits, one_gates = session.run(None, {"input": x[i:i + 1], "gate_thresholds": thr})
        np.testing.assert_array_equal(one_gates[0], gates[i])
        assert np.abs(one_logits[0] - logits[i]).max() <= TOL


def _altered(src: Path, dst: Path, name: str, change) -> str:
    proto = onnx.load(str(src))
    init = next(i for i in proto.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init).copy()), name))
    onnx.save(proto, str(dst))
    return str(dst)


def test_check_parity_catches_an_altered_weight(trained: Trained, trained_model, x: np.ndarray,
                                                tmp_path: Path) -> None:
    path = _altered(trained.bundle / "model.onnx", tmp_path / "altered.onnx", "head.weight", lambda w: w * 1.05)
    with pytest.raises(ParityError, match=r"logits differ from PyTorch by \S+ \(> 0.0001\) with gates"):
        check_parity(trained_model, path, {"input": x[:4]})


def test_check_parity_catches_an_altered_gate(trained: Trained, trained_model, x: np.ndarray,
                                              tmp_path: Path) -> None:
    _, gates = _torch(trained_model, x[:4], trained_model.thresholds.numpy())
    k = int(gates.sum(0).argmax())
    assert gates[:, k].any()  # a gate that opens as deployed; force it shut in the ONNX graph only
    name = f"backbone._blocks.{trained_model.config.gated_blocks[k]}.gate.proj.bias"
    path = _altered(trained.bundle / "model.onnx", tmp_path / "gate.onnx", name, lambda b: b - 1e4)
    with pytest.raises(ParityError, match="gate decisions differ from PyTorch with gates deployed"):
        check_parity(trained_model, path, {"input": x[:4]})


def test_check_parity_lets_a_sample_on_a_tie_go_either_way(trained: Trained, trained_model, x: np.ndarray,
                                                           tmp_path: Path) -> None:
    """A sample whose gate logit sits 2e-4 above the threshold: the ONNX graph, its gate bias nudged by -4e-4,
    closes that gate. Float32 rounding can do the same to a real sample, so parity must accept it."""
    site = trained_model.blocks[trained_model.config.gated_blocks[0]]
    with torch.no_grad():
        logit = float(site.gate(trained_model.prefix(torch.from_numpy(x[:4])))[0, 0])
    kept = trained_model.thresholds.clone()
    name = f"backbone._blocks.{trained_model.config.gated_blocks[0]}.gate.proj.bias"
    path = _altered(trained.bundle / "model.onnx", tmp_path / "tie.onnx", name, lambda b: b - 4e-4)
    try:
        trained_model.thresholds[0] = logit - 2e-4
        thr = trained_model.thresholds.numpy().copy()
        _, ref_gates = _torch(trained_model, x[:4], thr)
        _, onnx_gates = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"input": x[:4], "gate_thresholds": thr})
        assert ref_gates[0, 0] and not onnx_gates[0, 0]  # the tie went the other way, or the test shows nothing
        report = check_parity(trained_model, path, {"input": x[:4]})
    finally:
        trained_model.thresholds.copy_(kept)
    assert 0.0 <= report["deployed"] <= TOL
