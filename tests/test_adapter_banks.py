"""Adapter banks: E adapters per site with a top-k router; in the exported graph one If per expert."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edgeadapt.export.bundle import export_run
from edgeadapt.export.onnx_graph import count_if_nodes, export_onnx
from edgeadapt.export.parity import check_parity
from edgeadapt.runtime import Runtime
from sensor_backbone import vibration_windows

from edgeadapt.adapters import GatedAdapterConfig, create_model
from edgeadapt.adapters.layer import AdapterBank, BottleneckAdapter
from edgeadapt.errors import UserError
from edgeadapt.train import TrainOptions, run_training


def _bank(experts: int = 4, top_k: int = 2) -> AdapterBank:
    torch.manual_seed(0)
    bank = AdapterBank([BottleneckAdapter(16) for _ in range(experts)], 16, top_k).eval()
    for p in bank.parameters():  # the up projections start at zero; make every expert visible
        torch.nn.init.normal_(p, std=0.3)
    return bank


def test_router_picks_top_k_with_weights_summing_to_one() -> None:
    bank = _bank()
    w = bank.route(torch.randn(6, 16, 8, 8))
    assert ((w > 0).sum(1) == 2).all()
    np.testing.assert_allclose(w.sum(1).detach().numpy(), 1.0, rtol=1e-6)


def test_unpicked_experts_do_not_run_and_samples_are_independent() -> None:
    bank = _bank(experts=4, top_k=1)
    x = torch.randn(5, 16, 8, 8)
    picked = set(bank.route(x).argmax(1).tolist())
    assert len(picked) < 4
    with torch.no_grad():
        for e in set(range(4)) - picked:  # an expert that ran would spread NaN (0 x NaN is NaN)
            bank.experts[e].up.weight.fill_(float("nan"))
        together = bank(x)
        alone = torch.cat([bank(x[i:i + 1]) for i in range(len(x))])
    assert torch.isfinite(together).all()
    np.testing.assert_allclose(together.numpy(), alone.numpy(), atol=1e-5)


@pytest.mark.slow
def test_export_has_an_if_per_expert_and_parity(tmp_path: Path) -> None:
    model = create_model(GatedAdapterConfig(num_classes=3, image_size=64, experts=3, top_k=1)).eval()
    torch.manual_seed(1)
    for bank in (m for m in model.modules() if isinstance(m, AdapterBank)):
        for p in bank.parameters():
            torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path)
    assert count_if_nodes(proto, nested=True) == model.expected_if_nodes == 9 + 9 * 3
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    report = check_parity(model, str(path), {"input": x})
    assert max(report.values()) <= 1e-4


def test_bank_options_are_checked() -> None:
    with pytest.raises(ValueError, match="top-k must be between 1 and the number of experts \\(2\\), not 3"):
        GatedAdapterConfig(experts=2, top_k=3)


@pytest.mark.slow
def test_train_export_run_with_a_bank(tmp_path: Path) -> None:
    x, y = vibration_windows(per_class=20)
    np.savez(tmp_path / "w.npz", X=x, y=y)
    config = GatedAdapterConfig(backbone="module:sensor_backbone:build", blocks="stage?.*", experts=3, top_k=1)
    metrics = run_training(tmp_path / "w.npz", tmp_path / "run", config,
                           TrainOptions(epochs=8, batch_size=16, calibration_samples=24), log=lambda m: None)
    assert metrics["heldout_accuracy_all_open"] > 0.5
    manifest = export_run(tmp_path / "run", tmp_path / "bundle", log=lambda m: None)
    assert count_if_nodes(onnx.load(str(tmp_path / "bundle" / "model.onnx")), nested=True) == 3 + 3 * 3
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4
    preds = Runtime(tmp_path / "bundle", threads=1).predict(x[:4])
    assert all(p.label in ("bearing", "imbalance", "normal") for p in preds)


def test_text_refuses_banks(tmp_path: Path) -> None:
    from edgeadapt.backbones.bert import write_tiny_bert
    from edgeadapt.data.synthetic_text import vocabulary

    model_dir = write_tiny_bert(tmp_path / "b", vocabulary(), hidden=32, layers=1, heads=4)
    with pytest.raises(UserError, match="adapter banks .experts above 1. route on image-like inputs"):
        create_model(GatedAdapterConfig(backbone="bert", backbone_dir=str(model_dir), experts=2))


def test_cli_refuses_top_k_above_experts(tmp_path: Path) -> None:
    from conftest import run_cli

    res = run_cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--set", "experts=2", "--set", "top_k=3")
    assert res.returncode == 1 and res.stderr.strip() == "error: top_k must be between 1 and experts (2), got 3"
