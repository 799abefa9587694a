"""What keeps gates input-dependent in training: the margin hinge, the detached gate input, difficulty routing,
and coupled gates (one route per input through the later blocks)."""
from __future__ import annotations

import pytest
import torch

from edgeadapt.adapters import GatedAdapterConfig, GatedAdapterModel, create_model, layer
from edgeadapt.losses import agreement_loss, difficulty_loss

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


def test_agreement_loss_is_the_cost_weighted_spread_of_the_coupled_gates() -> None:
    agree = torch.tensor([[0.3, 0.3, 0.3], [0.9, 0.9, 0.9]])
    assert agreement_loss(agree, torch.tensor([1.0, 2.0, 3.0])).item() == 0.0
    # costs 3:1, gates open 1 and 0: mean 0.75, variance 0.75 * 0.25^2 + 0.25 * 0.75^2
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = agreement_loss(p, torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx(0.1875)
    loss.backward()
    assert p.grad[0, 0] > 0 > p.grad[0, 1]  # a descent step moves the two toward each other


def _coupled(scope: str = "block", first: int = 9) -> GatedAdapterModel:
    torch.manual_seed(0)
    return create_model(GatedAdapterConfig(num_classes=3, image_size=SIZE, gate_scope=scope, coupled_from=first),
                        pretrained=False)


def test_coupled_gates_sample_one_noise_draw_per_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """At equal margins the coupled gates (blocks 9-14) open and close together in training; the others draw alone."""
    model = _coupled()
    assert model.coupled_columns == [4, 5, 6, 7, 8]
    for block in model.gated_blocks():
        torch.nn.init.zeros_(block.gate.proj.weight)
        torch.nn.init.zeros_(block.gate.proj.bias)  # every margin 0: each gate opens with probability 1/2
    hard = []
    original = layer.sample_gate
    monkeypatch.setattr(layer, "sample_gate", lambda *a: hard.append(original(*a).detach()) or hard[-1])
    feats = _feats(model, 64)
    model.train()
    model.suffix(feats)
    decisions = torch.cat(hard, dim=1)  # [64, 9]
    late = decisions[:, 4:]
    assert bool((late == late[:, :1]).all())  # one decision per input across blocks 9-14
    assert 10 < int(late[:, 0].sum()) < 54  # ...and it differs between inputs
    assert all(bool((decisions[:, k] != decisions[:, 4]).any()) for k in range(4))  # blocks 2-7 draw their own


@pytest.mark.parametrize("kwargs, message", [
    ({"coupled_from": 8}, "block 8 has no gate; the gated blocks are 2, 4, 6, 7, 9, 10, 12, 13, 14"),
    ({"coupled_from": 14}, "block 14 is the last gated block"),
    ({"coupled_from": 9, "mode": "dense"}, "coupled gates (couple_from) need mode sparse"),
    ({"coupled_from": 9, "gate_scope": "exit"}, "with gate scope block or adapter"),
])
def test_coupling_refuses_what_it_cannot_couple(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        create_model(GatedAdapterConfig(num_classes=3, image_size=SIZE, **kwargs), pretrained=False)
    assert message in str(err.value)


def test_uncoupled_models_draw_noise_per_gate() -> None:
    model = create_model(GatedAdapterConfig(num_classes=3, image_size=SIZE), pretrained=False)
    assert model.coupled_columns == [] and all(b.noise is None for b in model.gated_blocks())
