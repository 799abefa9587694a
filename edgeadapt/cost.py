"""What a gated branch costs: multiply-accumulates, plus the memory traffic that makes small, high-resolution
or weight-heavy layers slower than their MACs say. The compute budget is expressed in MACs + traffic.
``measure_costs`` counts both for every gate of a model (``GateCosts``, stored in a run's config.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .adapters.base import GatedModel
from .runtime.gates import OPEN_ALL

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

# MAC-equivalents per activation element a conv or linear layer reads or writes, and per weight it reads, at
# batch 1. Fitted on onnxruntime latency of EfficientNet-Lite0's nine residual blocks at 128 px (2-core x86,
# 1 and 2 threads, 2026-11-29): with them each block's share of the gated latency is predicted within 1.4
# points, by MACs alone within 5.5 (the 32x32 block is 17.5 % of the latency, 12 % of the MACs).
# docs/concepts/budget-and-threshold-calibration.md.
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


@dataclass
class GateCosts:
    """MACs of each adapter site's block and adapter, and of the whole network with every gate open; and each
    branch's memory traffic in MAC-equivalents (``cost.count_work``; runs from before it was counted have none)."""

    block_macs: list[int]
    adapter_macs: list[int]
    total_macs: int
    exit_macs: list[int] = field(default_factory=list)  # exit scope: what going on past each exit costs
    block_traffic: list[int] = field(default_factory=list)
    adapter_traffic: list[int] = field(default_factory=list)
    exit_traffic: list[int] = field(default_factory=list)

    def macs_for(self, scope: str) -> list[int]:
        return getattr(self, f"{scope}_macs")

    def for_scope(self, scope: str) -> list[int]:
        """What each gate's branch costs in budget units: MACs plus memory traffic (MACs alone for older runs)."""
        macs, traffic = self.macs_for(scope), getattr(self, f"{scope}_traffic")
        return [m + t for m, t in zip(macs, traffic)] if traffic else list(macs)


def measure_costs(model: GatedModel) -> GateCosts:
    """Count MACs per gated block and adapter by running each on its real input (batch of one)."""
    calls: list[tuple] = []
    hooks = [b.register_forward_hook(lambda m, a, o: calls.append(a)) for b in model.adapter_blocks()]
    was_training = model.training
    model.eval()
    inputs = model.example_inputs(1)
    try:
        with torch.no_grad():
            model(*inputs, torch.full_like(model.thresholds, OPEN_ALL))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    blocks = model.adapter_blocks()
    # a site is called as (x, threshold, *context): the block reads x and the context, the adapter x alone
    block = [count_work(b.block, a[0], *a[2:]) for b, a in zip(blocks, calls)]
    adapter = [count_work(b.adapter, a[0]) for b, a in zip(blocks, calls)]
    exits = _exit_work(model, inputs)
    return GateCosts(
        block_macs=[m for m, _ in block], adapter_macs=[m for m, _ in adapter],
        total_macs=count_macs(_AllOpen(model), *inputs), exit_macs=[m for m, _ in exits],
        block_traffic=[t for _, t in block], adapter_traffic=[t for _, t in adapter],
        exit_traffic=[t for _, t in exits],
    )


def _exit_work(model: GatedModel, inputs: tuple) -> list[tuple[int, int]]:
    """Per exit: MACs and traffic of everything after it (the next segment, its exit head, and at the end the
    final head)."""
    heads = getattr(model, "exit_heads", [])
    if not len(heads):
        return []
    with torch.no_grad():
        h = model.prefix(*inputs)
        h = model.run_segment(0, h)
        costs = []
        for j in range(len(heads)):
            costs.append(count_work(_Segment(model, j + 1), h))
            h = model.run_segment(j + 1, h)
    return costs


class _Segment(torch.nn.Module):
    """Segment ``j`` of an exit model, then its exit's classifier (or the final head), for MAC counting."""

    def __init__(self, model: GatedModel, j: int):
        super().__init__()
        self.model, self.j = model, j

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.model.run_segment(self.j, h)
        if self.j == len(self.model.exit_heads):
            return self.model.final_logits(h)
        head = self.model.exit_heads[self.j]
        leave = head.logits(h)
        return leave + head.go_on(h, leave)


class _AllOpen(torch.nn.Module):
    """Adapter to count MACs of the model with every gate open."""

    def __init__(self, model: GatedModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*inputs, torch.full_like(self.model.thresholds, OPEN_ALL))[0]
