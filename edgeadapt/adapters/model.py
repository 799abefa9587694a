"""The model: surgery that puts a gated adapter beside every residual block of a frozen backbone."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import create_backbone
from .config import GatedAdapterConfig
from .layer import GatedBlock

OPEN_ALL = -1e9   # a threshold below any logit: the gate is always open
CLOSE_ALL = 1e9   # a threshold above any logit: the gate is always closed


class GatedAdapterModel(nn.Module):
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
            p.requires_grad_(False)
        gated = [i for i, b in enumerate(backbone._blocks) if b.spec.residual]
        config.gated_blocks = gated
        for i in gated:
            block = backbone._blocks[i]
            backbone._blocks[i] = GatedBlock(block, block.spec.out_ch, config.gate_scope, config.adapter_reduction)
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, config.num_classes)
        self.dropout = nn.Dropout(0.2)
        self.register_buffer("thresholds", torch.zeros(len(gated)))

    @property
    def gate_names(self) -> list[str]:
        return [f"block{i:02d}" for i in self.config.gated_blocks]

    @property
    def first_gated(self) -> int:
        return self.config.gated_blocks[0]

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layers before the first gate; their output can be cached during training."""
        x = self.backbone.stem(x)
        for block in self.backbone._blocks[: self.first_gated]:
            x = block(x)
        return x

    def suffix(self, h: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything from the first gate to the logits."""
        thr = (self.thresholds if thresholds is None else thresholds).split(1)  # one Split, not a Gather per gate
        gates = []
        for block in self.backbone._blocks[self.first_gated:]:
            if isinstance(block, GatedBlock):
                h, g = block(h, thr[len(gates)])
                gates.append(g)
            else:
                h = block(h)
        logits = self.head(self.dropout(self.backbone.head_features(h)))
        gates = torch.cat(gates, dim=1)
        return logits, gates if self.training else (gates > 0).to(logits.dtype)

    def forward(self, x: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.suffix(self.prefix(x), thresholds)

    def gated_blocks(self) -> list[GatedBlock]:
        return [b for b in self.backbone._blocks if isinstance(b, GatedBlock)]

    def train(self, mode: bool = True) -> GatedAdapterModel:
        """Frozen backbone layers (BatchNorm included) stay in eval mode while the adapters train."""
        super().train(mode)
        self.backbone.eval()
        for block in self.gated_blocks():
            block.training = mode
            block.adapter.train(mode)
            block.gate.train(mode)
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changed: adapters, gates, head and calibrated thresholds."""
        names = {n for n, p in self.named_parameters() if p.requires_grad} | {"thresholds"}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}

    def set_temperature(self, t: float) -> None:
        for block in self.gated_blocks():
            block.temperature = t
