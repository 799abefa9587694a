"""Multiply-accumulate counts per gated branch, the unit the compute budget is expressed in."""
from __future__ import annotations

import torch
from torch import nn


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """MACs of the convolutions and linear layers ``module`` runs on ``x`` (batch of one)."""
    total = 0

    def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
            total += out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total += out[0].numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total
