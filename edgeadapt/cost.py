"""Multiply-accumulate counts per gated branch, the unit the compute budget is expressed in."""
from __future__ import annotations

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_macs(module: nn.Module, x: torch.Tensor, *context: torch.Tensor) -> int:
    """MACs of the convolutions and linear layers ``module`` runs on ``x`` (batch of one).

    Attention's two matrix products are not layers and are not counted (a few percent of an encoder
    layer at the sequence lengths used here)."""
    total = 0

    def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, CONVS):  # per output element: in_channels / groups x kernel size
            total += out[0].numel() * mod.weight[0].numel()
        elif isinstance(mod, nn.Linear):
            total += out[0].numel() * mod.in_features  # out[0]: the first sample, all its tokens

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (*CONVS, nn.Linear))]
    try:
        with torch.no_grad():
            module(x[:1], *(c[:1] for c in context))
    finally:
        for h in handles:
            h.remove()
    return total
