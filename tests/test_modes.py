"""The baseline modes: what trains, what runs, and how the static baseline picks the blocks it drops."""
from __future__ import annotations

import pytest
import torch
from edgeadapt.runtime.gates import OPEN_ALL

from edgeadapt.adapters import GatedAdapterConfig, GatedAdapterModel
from edgeadapt.cost import measure_costs
from edgeadapt.thresholds import choose_static_blocks

RESIDUAL = [2, 4, 6, 7, 9, 10, 12, 13, 14]


def _model(mode: str, **kw) -> GatedAdapterModel:
    torch.manual_seed(0)
    return GatedAdapterModel(GatedAdapterConfig(num_classes=3, labels=["a", "b", "c"], image_size=64, mode=mode, **kw))


def _trainable(model: GatedAdapterModel) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("mode", ["dense", "static", "linear-probe", "full"])
def test_baselines_have_no_gates_and_return_an_empty_gate_matrix(mode: str) -> None:
    model = _model(mode).eval()
    assert model.gate_names == [] and model.thresholds.shape == (0,)
    with torch.no_grad():
        logits, gates = model(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, 3) and gates.shape == (2, 0)


def test_what_each_mode_trains() -> None:
    lp, full, dense, sparse = (_trainable(_model(m)) for m in ("linear-probe", "full", "dense", "sparse"))
    assert lp == {"head.weight", "head.bias"}
    assert "backbone._conv_stem.weight" in full and not any(".adapter." in n for n in full)
    assert any(".adapter." in n for n in dense) and not any(".gate." in n for n in dense)
    assert not any(n.startswith("backbone.") and ".adapter." not in n for n in dense)  # backbone frozen
    assert sparse - dense == {n for n in sparse if ".gate." in n} and len(sparse - dense) == 18


def test_static_model_skips_exactly_its_closed_blocks() -> None:
    model = _model("static").eval()
    model.set_static_closed([9, 12])
    x = torch.randn(1, 3, 64, 64)
    seen: dict[int, torch.Tensor] = {}
    hooks = [model.backbone._blocks[i].block.register_forward_hook(lambda m, a, o, i=i: seen.setdefault(i, o))
             for i in RESIDUAL]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert sorted(seen) == [i for i in RESIDUAL if i not in (9, 12)]
    assert model.config.static_closed == [9, 12]


def test_dense_mode_equals_sparse_weights_with_every_gate_open() -> None:
    sparse, dense = _model("sparse").eval(), _model("dense").eval()
    for s, d in zip(sparse.adapter_blocks(), dense.adapter_blocks()):
        torch.nn.init.normal_(s.adapter.up.weight, std=0.1)
        d.adapter.load_state_dict(s.adapter.state_dict())
    dense.head.load_state_dict(sparse.head.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = sparse(x, torch.full((9,), OPEN_ALL))[0]
        got = dense(x)[0]
    assert (ref - got).abs().max().item() <= 1e-5


@pytest.mark.parametrize("budget", [0.25, 0.5, 0.75])
def test_static_choice_drops_just_enough_compute(budget: float) -> None:
    model = _model("static").eval()
    macs = measure_costs(model).for_scope("block")  # the budget's unit: MACs plus memory traffic
    feats = model.prefix(torch.randn(8, 3, 64, 64))
    closed = choose_static_blocks(model, feats, macs, budget)
    dropped = [macs[RESIDUAL.index(i)] for i in closed]
    assert sum(dropped) >= (1 - budget) * sum(macs)  # at most `budget` of the residual compute is kept
    assert sum(dropped) - max(dropped) < (1 - budget) * sum(macs)  # it stops as soon as the target is reached
    assert choose_static_blocks(model, feats, macs, budget) == closed  # measured, so repeatable
    assert all(b.fixed for b in model.adapter_blocks())  # the measurement put every block back


def test_unknown_mode_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="mode must be one of sparse, dense, static, linear-probe, full"):
        GatedAdapterConfig(mode="sparse-ish")
