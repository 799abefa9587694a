"""export --freeze-static-gates: gates that never or always opened lose their If; the manifest says which."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import Trained, run_cli
from edgeadapt.export.bundle import static_gates
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL


def test_static_gates_are_exactly_the_never_and_always_open_ones() -> None:
    rates = {"block02": 1.0, "block04": 0.99, "block09": 0.0, "block10": 0.01}
    assert static_gates(rates) == {"block02": "always runs", "block09": "dropped"}


@pytest.fixture(scope="module")
def frozen(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's run with block06 recorded as always open and block12 as never open, exported frozen."""
    root = tmp_path_factory.mktemp("frozen")
    run = Path(shutil.copytree(trained.run, root / "run"))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["gate_rates"] = {**{k: 0.5 for k in metrics["gate_rates"]}, "block06": 1.0, "block12": 0.0}
    (run / "metrics.json").write_text(json.dumps(metrics))
    proc = run_cli("export", run, "--out", root / "bundle", "--freeze-static-gates")
    assert proc.returncode == 0, proc.stderr
    assert "static gates without If: block06 always runs, block12 dropped" in proc.stderr
    return root / "bundle"


@pytest.mark.slow
def test_frozen_bundle_has_an_if_per_remaining_gate(frozen: Path) -> None:
    manifest = json.loads((frozen / "manifest.json").read_text())
    assert manifest["static_gates"] == {"block06": "always runs", "block12": "dropped"}
    names = [g["name"] for g in manifest["gates"]]
    assert names == ["block02", "block04", "block07", "block09", "block10", "block13", "block14"]
    proto = onnx.load(str(frozen / "model.onnx"))
    assert sum(n.op_type == "If" for n in proto.graph.node) == 7
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4


@pytest.mark.slow
def test_frozen_block_runs_always_or_never(frozen: Path, trained_model) -> None:
    """The frozen graph equals the unfrozen model with block06 forced open and block12 forced closed."""
    import torch

    rt = Runtime(frozen, threads=1)
    images, _ = rt.bundle.samples()
    x = rt.prepare(images[:4])
    open_rest = np.full(7, OPEN_ALL, np.float32)
    logits, gates = rt.infer(x, open_rest)
    thr = torch.full((9,), OPEN_ALL)
    thr[[2, 6]] = torch.tensor([OPEN_ALL, CLOSE_ALL])  # gate order: 02 04 06 07 09 10 12 13 14 -> block06 open, block12 closed
    with torch.no_grad():
        ref, _ = trained_model(torch.from_numpy(x), thr)
    assert gates.shape == (4, 7) and gates.all()
    assert np.abs(logits - ref.numpy()).max() <= 1e-4
