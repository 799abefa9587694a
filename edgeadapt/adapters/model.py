"""The model: surgery that puts a gated adapter beside every residual block of a frozen backbone."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import create_backbone
from .config import GatedAdapterConfig
from .layer import GatedBlock

OPEN_ALL = -1e9   # a threshold below any logit: the gate is always open
CLOSE_ALL = 1e9   # a threshold above any logit: the gate is always closed


def gate_name(block: int) -> str:
    """The name a site's gate goes by in metrics, manifests and the CLI."""
    return f"block{block:02d}"


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
            p.requires_grad_(config.mode == "full")
        residual = [i for i, b in enumerate(backbone._blocks) if b.spec.residual]
        config.gated_blocks = residual if config.has_gates else []
        if config.has_adapters:
            for i in residual:
                block = backbone._blocks[i]
                fixed = None if config.has_gates else i not in config.static_closed
                backbone._blocks[i] = GatedBlock(block, block.spec.out_ch, config.gate_scope,
                                                 config.adapter_reduction, fixed)
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, config.num_classes)
        self.dropout = nn.Dropout(0.2)
        self.register_buffer("thresholds", torch.zeros(len(config.gated_blocks)))
        # blocks before the first trained part are frozen, so training can cache their output
        n_blocks = len(backbone._blocks)
        self.cut = {"full": -1, "linear-probe": n_blocks}.get(config.mode, residual[0])

    @property
    def gate_names(self) -> list[str]:
        return [gate_name(i) for i in self.config.gated_blocks]

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
        logits = self.head(self.dropout(self.backbone.head_features(h)))
        if not gates:
            return logits, logits[:, :0]  # no gates; a slice keeps the batch dimension symbolic at export
        gates = torch.cat(gates, dim=1)
        return logits, gates if self.training else (gates > 0).to(logits.dtype)

    def forward(self, x: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.suffix(self.prefix(x), thresholds)

    def gated_blocks(self) -> list[GatedBlock]:
        """The blocks with a gate that decides per input (none in the baseline modes)."""
        return [b for b in self.adapter_blocks() if b.gate is not None]

    def freeze_gates(self, decisions: dict[int, bool]) -> None:
        """Make these gates static (backbone block -> always runs or never runs); export then has no If for them."""
        keep = [k for k, i in enumerate(self.config.gated_blocks) if i not in decisions]
        for i, runs in decisions.items():
            site = self.backbone._blocks[i]
            site.gate, site.fixed = None, runs
        self.config.gated_blocks = [self.config.gated_blocks[k] for k in keep]
        self.thresholds = self.thresholds[keep].clone()

    def set_static_closed(self, blocks: list[int]) -> None:
        """Static baseline: these backbone blocks never run (their adapters stand in), for every input."""
        self.config.static_closed = sorted(blocks)
        for i in self.site_indices():
            if self.backbone._blocks[i].gate is None:
                self.backbone._blocks[i].fixed = i not in self.config.static_closed

    def site_indices(self) -> list[int]:
        """Backbone indices of every adapter site, gated or fixed, in order."""
        return [i for i, b in enumerate(self.backbone._blocks) if isinstance(b, GatedBlock)]

    def adapter_blocks(self) -> list[GatedBlock]:
        """Every residual block wrapped with an adapter, gated or fixed."""
        return [b for b in self.backbone._blocks if isinstance(b, GatedBlock)]

    def train(self, mode: bool = True) -> GatedAdapterModel:
        """Frozen backbone layers (BatchNorm included) stay in eval mode while the adapters train."""
        super().train(mode)
        self.backbone.eval()
        for block in self.adapter_blocks():
            block.training = mode
            block.adapter.train(mode)
            if block.gate is not None:
                block.gate.train(mode)
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changed: adapters, gates, head and calibrated thresholds (all of it in ``full``)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad} | {"thresholds"}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}

    def set_temperature(self, t: float) -> None:
        for block in self.gated_blocks():
            block.temperature = t
