"""What keeps gates input-dependent in training: the margin hinge, the detached gate input, difficulty routing."""
from __future__ import annotations

import pytest
import torch

from edgeadapt.adapters import GatedAdapterConfig, GatedAdapterModel
from edgeadapt.train import difficulty_loss

SIZE = 64


@pytest.fixture(scope="module")
def model() -> GatedAdapterModel:
    torch.manual_seed(0)
    return GatedAdapterModel(GatedAdapterConfig(num_classes=3, image_size=SIZE, gate_scope="block"))


def _feats(model: GatedAdapterModel, n: int = 4) -> torch.Tensor:
    x = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval().prefix(x)


def test_margin_loss_is_the_mean_excess_beyond_the_bound(model: GatedAdapterModel) -> None:
    feats = _feats(model)
    model.train()
    model.suffix(feats)
    margins = torch.cat([b.margin for b in model.gated_blocks()], dim=1)
    assert margins.shape == (4, 9)
    for bound in (0.0, 1.0, 2.5):
        expected = (margins.abs() - bound).clamp_min(0).mean()
        assert model.margin_loss(bound).item() == pytest.approx(expected.item(), rel=1e-6)
    assert model.margin_loss(margins.abs().max().item() + 1).item() == 0.0


def test_margins_are_dropped_outside_training(model: GatedAdapterModel) -> None:
    feats = _feats(model)
    model.train()
    model.suffix(feats)
    model.eval()
    assert all(b.margin is None for b in model.gated_blocks())
    assert float(model.margin_loss(0.0)) == 0.0


def test_gate_losses_do_not_reach_the_features(model: GatedAdapterModel) -> None:
    """The gate reads a detached input: a loss on the margins trains the gates, not the adapters before them."""
    feats = _feats(model)
    model.train()
    model.zero_grad()
    model.suffix(feats)
    model.margin_loss(0.0).backward()
    gates = model.gated_blocks()
    assert all(b.gate.proj.weight.grad is not None and b.gate.proj.weight.grad.abs().sum() > 0 for b in gates)
    assert all(b.adapter.down.weight.grad is None for b in gates)


def test_difficulty_loss_rewards_compute_where_opening_helps_most() -> None:
    targets = torch.tensor([0, 0, 0])
    open_logits = torch.zeros(3, 2)
    logits = torch.tensor([[0.0, 3.0], [0.0, 0.0], [0.0, 1.0]])  # gains from opening: 3 > 1 > 0 (roughly)
    spent = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    loss = difficulty_loss(logits, open_logits, targets, spent)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)  # ranks are centred: equal compute costs nothing
    loss.backward()
    # d loss / d spent = -(rank - 0.5) / N: the hardest input is pushed to more compute, the easiest to less
    assert spent.grad.tolist() == pytest.approx([-0.5 / 3, 0.5 / 3, 0.0])
