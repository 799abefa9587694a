"""The model: surgery that puts a gated adapter beside every residual block of a frozen backbone."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import create_backbone
from .base import CLOSE_ALL, OPEN_ALL, GatedModel, gate_name
from .config import GatedAdapterConfig
from .layer import BottleneckAdapter, Gate, GatedBlock

__all__ = ["CLOSE_ALL", "OPEN_ALL", "GatedAdapterModel", "gate_name"]


class GatedAdapterModel(GatedModel):
    """Frozen backbone + gated adapters + a new classifier head.

    ``forward(x, thresholds)`` returns ``(logits, gates)`` with ``gates`` of shape ``[N, G]`` (1 = open).
    The per-gate ``thresholds`` default to the calibrated buffer, and are an input so that the exported
    graph can take them at run time.
    """

    def __init__(self, config: GatedAdapterConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        backbone = create_backbone(config.backbone, pretrained=pretrained)
        for p in backbone.parameters():
            p.requires_grad_(config.mode == "full")
        residual = [i for i, b in enumerate(backbone._blocks) if b.spec.residual]
        config.gated_blocks = residual if config.has_gates else []
        if config.has_adapters:
            for i in residual:
                block = backbone._blocks[i]
                fixed = None if config.has_gates else i not in config.static_closed
                ch = block.spec.out_ch
                adapter = config.adapter(lambda ch=ch: BottleneckAdapter(ch, config.adapter_reduction), ch)
                backbone._blocks[i] = GatedBlock(block, adapter, Gate(ch), config.gate_scope, fixed)
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, config.num_classes)
        self.dropout = nn.Dropout(0.2)
        self.register_buffer("thresholds", torch.zeros(len(config.gated_blocks)))
        # blocks before the first trained part are frozen, so training can cache their output
        n_blocks = len(backbone._blocks)
        self.cut = {"full": -1, "linear-probe": n_blocks}.get(config.mode, residual[0])

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone._blocks

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(batch, 3, self.config.image_size, self.config.image_size),)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layers before the first trained one; their output can be cached during training."""
        if self.cut < 0:
            return x
        x = self.backbone.stem(x)
        for block in self.backbone._blocks[: self.cut]:
            x = block(x)
        return x

    def suffix(self, h: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything from the prefix's output to the logits, and the gates ``[N, G]`` (G = 0 without gates)."""
        thr = (self.thresholds if thresholds is None else thresholds).split(1)  # one Split, not a Gather per gate
        if self.cut < 0:
            h = self.backbone.stem(h)
        gates = []
        for block in self.backbone._blocks[max(self.cut, 0):]:
            if isinstance(block, GatedBlock):
                h, g = block(h, thr[len(gates)] if block.gate is not None else None)
                if g is not None:
                    gates.append(g)
            else:
                h = block(h)
        return self._gates_out(self.head(self.dropout(self.backbone.head_features(h))), gates)

    def forward(self, x: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.suffix(self.prefix(x), thresholds)

    @torch.no_grad()
    def frozen_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Pooled features of the frozen backbone without adapters (a site fixed closed skips its block)."""
        h = self.backbone.stem(feats) if self.cut < 0 else feats
        for b in self.blocks[max(self.cut, 0):]:
            if isinstance(b, GatedBlock):
                h = b.block(h) if b.fixed is not False else h
            else:
                h = b(h)
        return self.backbone.head_features(h)
