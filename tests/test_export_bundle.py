"""The exported bundle's structure: ONNX graph with one If per gate, manifest, hashes, and the --force guard."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import GATED_BLOCKS, IMAGE_SIZE, Trained
from onnx import numpy_helper

from edgeadapt.errors import UserError


@pytest.fixture(scope="module")
def proto(trained: Trained) -> onnx.ModelProto:
    model = onnx.load(str(trained.bundle / "model.onnx"))
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def manifest(trained: Trained) -> dict:
    return json.loads((trained.bundle / "manifest.json").read_text())


@pytest.mark.slow
def test_one_top_level_if_node_per_gate(proto: onnx.ModelProto) -> None:
    ifs = [n for n in proto.graph.node if n.op_type == "If"]
    assert len(ifs) == 9
    for node in ifs:  # each If really holds two branches
        assert sorted(a.name for a in node.attribute) == ["else_branch", "then_branch"]


@pytest.mark.slow
def test_each_gate_costs_few_ops_outside_its_branches(proto: onnx.ModelProto) -> None:
    """A closed gate still pays for what sits in the main graph, so that part stays small.

    Per gate: ReduceMean, Gemm (the gate), Sub, ReduceMax, Greater (the condition), If. The adapter's sum is
    inside both branches: a closed branch is that one Add, not a copy of its input.
    """
    from collections import Counter

    ops = Counter(n.op_type for n in proto.graph.node if n.op_type not in ("Conv", "Clip"))
    per_gate = {op: ops[op] for op in ("ReduceMean", "Gemm", "Sub", "ReduceMax", "Greater", "If")}
    assert all(count in (9, 10) for count in per_gate.values()), per_gate  # 10: the head's pooling and linear
    assert ops["Cast"] <= 1 and ops["Unsqueeze"] == 0 and ops["Gather"] == 0 and ops["Add"] == 0, ops
    for node in (n for n in proto.graph.node if n.op_type == "If"):
        closed = next(a.g for a in node.attribute if a.name == "else_branch")
        assert [n.op_type for n in closed.node] == ["Add"]


@pytest.mark.slow
def test_graph_inputs_outputs_and_threshold_default(proto: onnx.ModelProto, manifest: dict) -> None:
    assert [i.name for i in proto.graph.input] == ["input", "gate_thresholds"]
    assert [o.name for o in proto.graph.output] == ["logits", "gates"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # symbolic batch dimension
    assert [d.dim_value for d in dims[1:]] == [3, IMAGE_SIZE, IMAGE_SIZE]
    inits = {i.name: i for i in proto.graph.initializer}
    default = numpy_helper.to_array(inits["gate_thresholds"])
    expected = np.asarray([g["threshold"] for g in manifest["gates"]], np.float32)
    assert default.dtype == np.float32 and default.shape == (9,)
    np.testing.assert_array_equal(default, expected)


@pytest.mark.slow
def test_manifest_lists_gates_labels_and_input(manifest: dict, trained: Trained) -> None:
    assert manifest["format_version"] == 1
    assert [g["name"] for g in manifest["gates"]] == [f"block{i:02d}" for i in GATED_BLOCKS]
    assert [g["block"] for g in manifest["gates"]] == GATED_BLOCKS
    assert all(g["macs"] > 0 and 0.0 <= g["heldout_rate"] <= 1.0 for g in manifest["gates"])
    assert manifest["labels"] == sorted(p.name for p in trained.data.iterdir())
    assert manifest["input"]["shape"] == ["N", 3, IMAGE_SIZE, IMAGE_SIZE]
    assert manifest["gate_scope"] == "block" and manifest["budget"] == 0.5
    assert set(manifest["parity_max_abs_diff"]) == {"deployed", "all_open", "all_closed", "mixed"}
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4
    m = manifest["metrics"]  # training's figures travel with the bundle, the gap's p-value included
    assert m["heldout_accuracy_ci95"][0] <= m["heldout_accuracy"] <= m["heldout_accuracy_ci95"][1]
    assert 0.0 < m["gap_p_value"] <= 1.0


@pytest.mark.slow
def test_manifest_hashes_match_files(manifest: dict, trained: Trained) -> None:
    assert set(manifest["files"]) == {"model.onnx", "model_dense.onnx", "samples.npz"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((trained.bundle / name).read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_samples_cover_every_class(manifest: dict, trained: Trained) -> None:
    with np.load(trained.bundle / "samples.npz") as data:
        images, targets = data["images"], data["targets"]
    assert images.dtype == np.uint8 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert len(images) == len(targets)
    assert set(targets.tolist()) == set(range(len(manifest["labels"])))


@pytest.mark.slow
def test_export_refuses_non_empty_folder_without_force(trained: Trained, tmp_path: Path) -> None:
    from edgeadapt.export.bundle import export_run

    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="--force") as info:
        export_run(trained.run, out, log=lambda m: None)
    assert str(out) in str(info.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no temporary folder left behind


def test_export_of_missing_run_folder_is_a_user_error(tmp_path: Path) -> None:
    from edgeadapt.export.bundle import export_run

    with pytest.raises(UserError, match="does not exist; create it with 'edgeadapt train'"):
        export_run(tmp_path / "nope", tmp_path / "bundle", log=lambda m: None)
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_bundle_folder_has_ordinary_permissions(trained: Trained) -> None:
    """The staged temporary folder is private; the renamed bundle must not stay so."""
    mask = os.umask(0)
    os.umask(mask)
    mode = stat.S_IMODE(trained.bundle.stat().st_mode)
    assert mode == 0o777 & ~mask
