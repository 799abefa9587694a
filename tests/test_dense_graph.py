"""The bundle's graph without ``If`` (same results) and the branch-local weights of the gated graph."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import Trained, run_cli
from edgeadapt.runtime import Runtime, load_bundle

pytestmark = pytest.mark.slow


def test_dense_graph_has_no_if_and_matches_gated(trained: Trained) -> None:
    dense = onnx.load(str(trained.bundle / "model_dense.onnx"))
    assert not any(n.op_type == "If" for n in dense.graph.node)
    bundle = load_bundle(trained.bundle)
    assert bundle.manifest["dense_parity_max_abs_diff"] <= 1e-4 and "model_dense.onnx" in bundle.manifest["files"]
    images, _ = bundle.samples()
    gated, flat = Runtime(bundle, threads=1), Runtime(bundle, threads=1, graph="dense")
    for thr in (None, np.full(9, -1e9, np.float32), np.full(9, 1e9, np.float32)):
        a, b = gated.infer(gated.prepare(images[:3]), thr), flat.infer(flat.prepare(images[:3]), thr)
        np.testing.assert_allclose(a[0], b[0], atol=1e-4)
        np.testing.assert_array_equal(a[1], b[1])


def test_if_branches_hold_their_own_weights(trained: Trained) -> None:
    model = onnx.load(str(trained.bundle / "model.onnx"))
    branches = [a.g for n in model.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch"]
    assert len(branches) == 9 and all(len(b.initializer) > 0 for b in branches)
    outer = {i.name for i in model.graph.initializer}
    assert not any(i.name in outer for b in branches for i in b.initializer)


def test_bench_reports_dense_graph_and_whether_gating_pays(trained: Trained) -> None:
    proc = run_cli("bench", trained.bundle, "--runs", "10", "--warmup", "1", "--threads", "1",
                   "--no-cold-start", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["graph"] == "gated" and set(r["dense_latency_ms"]) == {"p50", "p90", "p99", "mean"}
    assert r["gating_pays"] == (r["latency_ms"]["p50"] < r["dense_latency_ms"]["p50"])
