"""An adapter-scope model (no training) exports with one If per gate and matches PyTorch per sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import ORT_THREADS, median_thresholds
from edgeadapt.export.onnx_graph import count_if_nodes, export_onnx
from edgeadapt.export.parity import check_parity

from edgeadapt.adapters import GatedAdapterConfig, GatedAdapterModel

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[GatedAdapterModel, Path, np.ndarray]:
    torch.manual_seed(1)
    model = GatedAdapterModel(GatedAdapterConfig(num_classes=3, image_size=SIZE, gate_scope="adapter")).eval()
    with torch.no_grad():
        for block in model.gated_blocks():  # adapters that change the output, gates that disagree across samples
            torch.nn.init.normal_(block.adapter.up.weight, std=0.05)
            torch.nn.init.normal_(block.gate.proj.weight, std=0.5)
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    model.thresholds.copy_(median_thresholds(model, x))
    path = tmp_path_factory.mktemp("adapter_scope") / "model.onnx"
    proto = export_onnx(model, path)
    assert count_if_nodes(proto) == 9
    return model, path, x.numpy()


def test_graph_has_nine_ifs_and_threshold_default(exported) -> None:
    model, path, _ = exported
    proto = onnx.load(str(path))
    assert sum(n.op_type == "If" for n in proto.graph.node) == 9
    init = next(i for i in proto.graph.initializer if i.name == "gate_thresholds")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), model.thresholds.numpy())


def test_check_parity_passes(exported) -> None:
    model, path, x = exported
    report = check_parity(model, str(path), {"input": x})
    assert set(report) == {"deployed", "all_open", "all_closed", "mixed"}
    assert max(report.values()) <= 1e-4


def test_per_sample_gates_match_pytorch_in_a_batch_and_alone(exported) -> None:
    model, path, x = exported
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ORT_THREADS
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    logits, gates = sess.run(None, {"input": x})  # the default: median thresholds, half the samples open each gate
    with torch.no_grad():
        ref_logits, ref_gates = model(torch.from_numpy(x))
    np.testing.assert_array_equal(gates, ref_gates.numpy())
    assert np.array_equal(gates.sum(0), np.full(9, 2.0))
    assert np.abs(logits - ref_logits.numpy()).max() <= 1e-4
    for i in range(len(x)):
        one_logits, one_gates = sess.run(None, {"input": x[i:i + 1]})
        np.testing.assert_array_equal(one_gates[0], gates[i])
        assert np.abs(one_logits[0] - logits[i]).max() <= 1e-4
