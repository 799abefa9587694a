"""Builds ``runtime/reference_workload.onnx``: the fixed workload ``devices score`` times on a device.

Four MBConv-like blocks (1x1 expand, 3x3 depthwise, 1x1 project, residual) on a 32x56x56 input with
seeded weights, so the same bytes come out every time. Regenerate with
``python -m edgeadapt.export.reference_workload`` (a test checks the shipped file matches).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAME = "mbconv-v1"
CHANNELS, EXPAND, SIZE, BLOCKS = 32, 96, 56, 4


def build() -> onnx.ModelProto:
    """The reference graph; deterministic for a given onnx version."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "input"
    for b in range(BLOCKS):
        shapes = {"expand": (EXPAND, CHANNELS, 1, 1), "dw": (EXPAND, 1, 3, 3), "project": (CHANNELS, EXPAND, 1, 1)}
        for part, shape in shapes.items():
            fan_in = int(np.prod(shape[1:]))
            w = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            inits.append(numpy_helper.from_array(w, f"b{b}_{part}"))
        nodes += [
            helper.make_node("Conv", [x, f"b{b}_expand"], [f"b{b}_e"]),
            helper.make_node("Relu", [f"b{b}_e"], [f"b{b}_er"]),
            helper.make_node("Conv", [f"b{b}_er", f"b{b}_dw"], [f"b{b}_d"], group=EXPAND, pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"b{b}_d"], [f"b{b}_dr"]),
            helper.make_node("Conv", [f"b{b}_dr", f"b{b}_project"], [f"b{b}_p"]),
            helper.make_node("Add", [f"b{b}_p", x], [f"b{b}_out"]),
        ]
        x = f"b{b}_out"
    nodes.append(helper.make_node("Identity", [x], ["output"]))
    graph = helper.make_graph(
        nodes, NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeadapt")
    model.ir_version = 8
    return model


def shipped_path() -> Path:
    from ..runtime import host

    return host.REFERENCE_PATH


if __name__ == "__main__":
    onnx.save(build(), str(shipped_path()))
    print(f"wrote {shipped_path()}")
