"""Gated adapters at the PyTorch level: identity at init, exact skips, gate shapes, batch independence, freezing."""
from __future__ import annotations

import pytest
import torch
from conftest import GATED_BLOCKS, median_thresholds
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL

from edgeadapt.adapters import GatedAdapterConfig, GatedAdapterModel, GatedBlock
from edgeadapt.backbones.efficientnet_lite import efficientnet_lite0

SIZE = 64


def _model(scope: str, random_adapters: bool) -> GatedAdapterModel:
    torch.manual_seed(0)
    model = GatedAdapterModel(GatedAdapterConfig(num_classes=3, image_size=SIZE, gate_scope=scope)).eval()
    if random_adapters:  # non-zero up projections and spread-out gates, so skips are visible
        with torch.no_grad():
            for block in model.gated_blocks():
                torch.nn.init.normal_(block.adapter.up.weight, std=0.05)
                torch.nn.init.normal_(block.adapter.up.bias, std=0.05)
                torch.nn.init.normal_(block.gate.proj.weight, std=0.5)
    return model


@pytest.fixture(scope="module", params=["block", "adapter"])
def fresh(request: pytest.FixtureRequest) -> GatedAdapterModel:
    return _model(request.param, random_adapters=False)


@pytest.fixture(scope="module")
def block_model() -> GatedAdapterModel:
    return _model("block", random_adapters=True)


@pytest.fixture(scope="module")
def adapter_model() -> GatedAdapterModel:
    return _model("adapter", random_adapters=True)


@pytest.fixture(params=["block", "adapter"])
def randomized(request: pytest.FixtureRequest, block_model: GatedAdapterModel,
               adapter_model: GatedAdapterModel) -> GatedAdapterModel:
    return block_model if request.param == "block" else adapter_model


@pytest.fixture(scope="module")
def frozen() -> torch.nn.Module:
    return efficientnet_lite0()


def _x(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _features(model: GatedAdapterModel, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The pooled feature vector the new head reads (dropout is the identity in eval mode)."""
    seen: list[torch.Tensor] = []
    handle = model.head.register_forward_hook(lambda m, a, out: seen.append(a[0]))
    try:
        with torch.no_grad():
            model(x, thresholds)
    finally:
        handle.remove()
    return seen[0]


def _block_io(model: GatedAdapterModel, x: torch.Tensor, thresholds: torch.Tensor) -> list[tuple]:
    """(block, input, output, gate) of every gated block in one forward pass."""
    seen: list[tuple] = []
    handles = [b.register_forward_hook(lambda m, a, out: seen.append((m, a[0], out[0], out[1])))
               for b in model.gated_blocks()]
    try:
        with torch.no_grad():
            model(x, thresholds)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_surgery_wraps_the_residual_blocks(fresh: GatedAdapterModel) -> None:
    assert fresh.config.gated_blocks == GATED_BLOCKS
    assert fresh.gate_names == [f"block{i:02d}" for i in GATED_BLOCKS]
    wrapped = [i for i, b in enumerate(fresh.backbone._blocks) if isinstance(b, GatedBlock)]
    assert wrapped == GATED_BLOCKS
    assert fresh.thresholds.shape == (9,)


def test_fresh_adapters_with_open_gates_keep_backbone_features(fresh: GatedAdapterModel, frozen) -> None:
    x = _x()
    with torch.no_grad():
        h = frozen.stem(x)
        for block in frozen._blocks:
            h = block(h)
        expected = frozen.head_features(h)
    got = _features(fresh, x, torch.full((9,), OPEN_ALL))
    assert got.shape == (4, 1280)
    assert (got - expected).abs().max().item() <= 1e-6


def test_block_scope_closed_gate_runs_only_the_adapter(block_model: GatedAdapterModel) -> None:
    x = _x()
    rows = _block_io(block_model, x, torch.full((9,), CLOSE_ALL))
    assert len(rows) == 9
    for block, inp, out, gate in rows:
        assert gate.shape == (4, 1) and not (gate > 0).any()  # the block reports its gate margin
        with torch.no_grad():
            expected = inp + block.adapter(inp)
            assert torch.equal(out, expected)
            assert (out - (block.block(inp) + block.adapter(inp))).abs().max() > 1e-3  # the block was skipped


def test_block_scope_open_gate_runs_block_and_adapter(block_model: GatedAdapterModel) -> None:
    for block, inp, out, gate in _block_io(block_model, _x(), torch.full((9,), OPEN_ALL)):
        assert gate.shape == (4, 1) and (gate > 0).all()
        with torch.no_grad():
            assert torch.allclose(out, block.block(inp) + block.adapter(inp), rtol=0, atol=1e-6)


def test_adapter_scope_closed_gate_gives_frozen_block_output(adapter_model: GatedAdapterModel) -> None:
    for block, inp, out, gate in _block_io(adapter_model, _x(), torch.full((9,), CLOSE_ALL)):
        assert gate.shape == (4, 1) and not (gate > 0).any()  # the block reports its gate margin
        with torch.no_grad():
            assert torch.equal(out, block.block(inp))
            assert block.adapter(inp).abs().max() > 1e-3  # the adapter would have changed it


def test_adapter_scope_open_gate_adds_the_adapter(adapter_model: GatedAdapterModel) -> None:
    for block, inp, out, _gate in _block_io(adapter_model, _x(), torch.full((9,), OPEN_ALL)):
        with torch.no_grad():
            assert torch.allclose(out, block.block(inp) + block.adapter(inp), rtol=0, atol=1e-6)


def test_gates_have_one_column_per_gated_block(randomized: GatedAdapterModel) -> None:
    with torch.no_grad():
        logits, gates = randomized(_x(), torch.zeros(9))
        _, closed = randomized(_x(), torch.full((9,), CLOSE_ALL))
    assert logits.shape == (4, 3)
    assert gates.shape == (4, 9)
    assert set(gates.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(closed, torch.zeros(4, 9))


def test_default_thresholds_come_from_the_buffer(randomized: GatedAdapterModel) -> None:
    x = _x(4)
    thr = median_thresholds(randomized, x)
    saved = randomized.thresholds.clone()
    try:
        randomized.thresholds.copy_(thr)
        with torch.no_grad():
            a = randomized(x)
            b = randomized(x, thr)
    finally:
        randomized.thresholds.copy_(saved)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_sample_gets_the_same_result_alone_and_in_a_mixed_batch(randomized: GatedAdapterModel) -> None:
    x = _x(seed=1)
    thr = median_thresholds(randomized, x)
    with torch.no_grad():
        logits, gates = randomized(x, thr)
    # the thresholds split every gate: two samples open it, two do not
    assert torch.equal(gates.sum(0), torch.full((9,), 2.0))
    for i in range(len(x)):
        with torch.no_grad():
            alone_logits, alone_gates = randomized(x[i:i + 1], thr)
        assert torch.equal(alone_gates[0], gates[i])
        assert (alone_logits[0] - logits[i]).abs().max().item() <= 1e-5


def test_only_adapters_gates_and_head_are_trainable(fresh: GatedAdapterModel) -> None:
    trainable = [n for n, p in fresh.named_parameters() if p.requires_grad]
    frozen_names = [n for n, p in fresh.named_parameters() if not p.requires_grad]
    assert all(n.startswith("head.") or ".adapter." in n or ".gate." in n for n in trainable)
    assert not any(".adapter." in n or ".gate." in n or n.startswith("head.") for n in frozen_names)
    assert sum(".adapter." in n for n in trainable) == 9 * 6
    assert sum(".gate." in n for n in trainable) == 9 * 2
    assert {n for n in trainable if n.startswith("head.")} == {"head.weight", "head.bias"}
    assert len(frozen_names) > 100


def test_trainable_state_holds_no_backbone_tensors(fresh: GatedAdapterModel) -> None:
    state = fresh.trainable_state()
    assert "thresholds" in state
    assert all(k == "thresholds" or k.startswith("head.") or ".adapter." in k or ".gate." in k for k in state)
    assert not any("running_mean" in k or "_bn" in k or ".block." in k for k in state)
    full = fresh.state_dict()
    for k, v in state.items():
        assert torch.equal(v, full[k])


def test_train_mode_keeps_frozen_batchnorm_in_eval(fresh: GatedAdapterModel) -> None:
    try:
        fresh.train()
        assert all(b.training and b.adapter.training and b.gate.training for b in fresh.gated_blocks())
        assert not any(m.training for m in fresh.backbone._blocks[0].modules())
        assert not any(m.training for b in fresh.gated_blocks() for m in b.block.modules())
    finally:
        fresh.eval()
    assert not any(b.training for b in fresh.gated_blocks())


@pytest.mark.parametrize("kwargs, message", [
    ({"gate_scope": "layer"}, "gate scope must be one of block, adapter, exit, not 'layer'"),
    ({"budget": 0.0}, r"budget must be in \(0, 1\], not 0.0"),
    ({"budget": 1.5}, r"budget must be in \(0, 1\], not 1.5"),
])
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatedAdapterConfig(**kwargs)


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    config = GatedAdapterConfig(num_classes=4, labels=list("abcd"), gate_scope="adapter", budget=1.0)
    assert GatedAdapterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config field\\(s\\): colour"):
        GatedAdapterConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("mode", ["sparse", "full"])
def test_training_layout_computes_the_same_function(mode: str) -> None:
    """prepare_training folds BatchNorm into the frozen convs and goes channels-last: faster steps, the same
    logits and gate logits up to float rounding, the same trainable parameters (``full`` keeps its BatchNorm,
    whose convs train)."""
    torch.manual_seed(0)
    model = GatedAdapterModel(GatedAdapterConfig(num_classes=3, image_size=SIZE, mode=mode)).eval()
    feats = model.prefix(_x(6))

    def outputs(f: torch.Tensor) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        handles = [b.gate.register_forward_hook(lambda m, a, out: seen.append(out)) for b in model.gated_blocks()]
        with torch.no_grad():
            logits = [model.suffix(f, torch.full_like(model.thresholds, t))[0] for t in (OPEN_ALL, CLOSE_ALL)]
        for h in handles:
            h.remove()
        return logits + seen

    before = outputs(feats)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    laid_out = model.prepare_training(feats)
    assert laid_out.is_contiguous(memory_format=torch.channels_last) and torch.equal(laid_out, feats)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert (len(norms) == 0) == (mode == "sparse")
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == trainable
    after = outputs(laid_out)
    assert len(after) == len(before) == 2 + 2 * len(model.gated_blocks())
    for a, b in zip(after, before):
        assert torch.allclose(a, b, atol=1e-4)
    state = model.trainable_state()
    assert state.keys() == set(trainable) | {"thresholds"}
    assert all(v.is_contiguous() for v in state.values())  # safetensors takes the plain layout only
