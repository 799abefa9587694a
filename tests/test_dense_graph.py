"""The bundle's graph without ``If`` (same results) and the branch-local weights of the gated graph."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import Trained, run_cli
from edgeadapt.runtime import Runtime, load_bundle
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from tiny_bundle import Tiny


def test_tiny_dense_graph_has_no_if_and_matches_gated(tiny: Tiny) -> None:
    """The inlining on a hand-built graph whose branches hold their own weights: same logits and gates."""
    gated_proto = onnx.load(str(tiny.bundle / "model.onnx"))
    dense = onnx.load(str(tiny.bundle / "model_dense.onnx"))
    assert sum(n.op_type == "If" for n in gated_proto.graph.node) == 3
    assert not any(n.op_type == "If" for n in dense.graph.node)
    bundle = load_bundle(tiny.bundle)
    images, _ = bundle.samples()
    gated, flat = Runtime(bundle, threads=1), Runtime(bundle, threads=1, graph="dense")
    for thr in (None, OPEN_ALL, CLOSE_ALL, -0.5, 0.4):
        thr = None if thr is None else np.full(3, thr, np.float32)
        a, b = gated.infer(gated.prepare(images), thr), flat.infer(flat.prepare(images), thr)
        np.testing.assert_allclose(a[0], b[0], atol=1e-5)
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.slow
def test_dense_graph_has_no_if_and_matches_gated(trained: Trained) -> None:
    dense = onnx.load(str(trained.bundle / "model_dense.onnx"))
    assert not any(n.op_type == "If" for n in dense.graph.node)
    bundle = load_bundle(trained.bundle)
    assert bundle.manifest["dense_parity_max_abs_diff"] <= 1e-4 and "model_dense.onnx" in bundle.manifest["files"]
    images, _ = bundle.samples()
    gated, flat = Runtime(bundle, threads=1), Runtime(bundle, threads=1, graph="dense")
    for thr in (None, np.full(9, OPEN_ALL, np.float32), np.full(9, CLOSE_ALL, np.float32)):
        a, b = gated.infer(gated.prepare(images[:3]), thr), flat.infer(flat.prepare(images[:3]), thr)
        np.testing.assert_allclose(a[0], b[0], atol=1e-4)
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.slow
def test_if_branches_hold_their_own_weights(trained: Trained) -> None:
    model = onnx.load(str(trained.bundle / "model.onnx"))
    branches = [a.g for n in model.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch"]
    assert len(branches) == 9 and all(len(b.initializer) > 0 for b in branches)
    outer = {i.name for i in model.graph.initializer}
    assert not any(i.name in outer for b in branches for i in b.initializer)


def test_bench_reports_dense_graph_and_whether_gating_pays(tiny: Tiny) -> None:
    proc = run_cli("bench", tiny.bundle, "--runs", "10", "--warmup", "1", "--threads", "1",
                   "--no-cold-start", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["graph"] == "gated" and set(r["dense_latency_ms"]) == {"p50", "p90", "p99", "mean"}
    assert r["gating_pays"] == (r["latency_ms"]["p50"] < r["dense_latency_ms"]["p50"])
