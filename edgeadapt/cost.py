"""What a gated branch costs: multiply-accumulates, plus the memory traffic that makes small, high-resolution
or weight-heavy layers slower than their MACs say. The compute budget is expressed in MACs + traffic.
"""
from __future__ import annotations

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

# MAC-equivalents per activation element a conv or linear layer reads or writes, and per weight it reads, at
# batch 1. Fitted on onnxruntime latency of EfficientNet-Lite0's nine residual blocks at 128 px (2-core x86,
# 1 and 2 threads, 2026-11-29): with them each block's share of the gated latency is predicted within 1.4
# points, by MACs alone within 5.5 (the 32x32 block is 17.5 % of the latency, 12 % of the MACs). docs/gating.md.
ACTIVATION_COST = 25
WEIGHT_COST = 13


def count_work(module: nn.Module, x: torch.Tensor, *context: torch.Tensor) -> tuple[int, int]:
    """MACs of the convolutions and linear layers ``module`` runs on ``x`` (batch of one), and their memory
    traffic in MAC-equivalents (activations read and written, weights read).

    Attention's two matrix products are not layers and are not counted (a few percent of an encoder
    layer at the sequence lengths used here)."""
    macs = traffic = 0

    def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal macs, traffic
        # [0]: the first sample, all its positions
        traffic += ACTIVATION_COST * (inputs[0][0].numel() + out[0].numel()) + WEIGHT_COST * mod.weight.numel()
        if isinstance(mod, CONVS):  # per output element: in_channels / groups x kernel size
            macs += out[0].numel() * mod.weight[0].numel()
        else:
            macs += out[0].numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (*CONVS, nn.Linear))]
    try:
        with torch.no_grad():
            module(x[:1], *(c[:1] for c in context))
    finally:
        for h in handles:
            h.remove()
    return macs, traffic


def count_macs(module: nn.Module, x: torch.Tensor, *context: torch.Tensor) -> int:
    """MACs alone (see ``count_work``)."""
    return count_work(module, x, *context)[0]
