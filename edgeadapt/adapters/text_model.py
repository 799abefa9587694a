"""The text model: a gated adapter beside every encoder layer of a frozen BERT-family encoder."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import create_text_backbone
from ..backbones.bert import attention_bias, masked_mean
from ..errors import UserError
from .base import GatedModel
from .config import GatedAdapterConfig
from .layer import GatedBlock, TokenAdapter, TokenGate


class GatedTextModel(GatedModel):
    """Frozen encoder + one gated adapter per layer + a classifier on the mean of the real tokens.

    ``forward(input_ids, attention_mask, thresholds)``. Training caches the frozen embeddings; the cache
    carries the token mask as one extra feature channel (``[N, T, D + 1]``) so that it slices, shuffles and
    batches as one tensor, like the image model's cached feature maps.
    """

    input_names = ("input_ids", "attention_mask")

    def __init__(self, config: GatedAdapterConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        if config.experts > 1:
            raise UserError("adapter banks (experts above 1) route on image-like inputs; text encoders take one adapter per layer")
        encoder = create_text_backbone(config.backbone, config.backbone_dir, pretrained=pretrained)
        for p in encoder.parameters():
            p.requires_grad_(False)
        d, n = encoder.num_features, len(encoder.layers)
        config.gated_blocks = list(range(n)) if config.has_gates else []
        if config.mode == "full":  # every encoder layer trains (the embeddings stay frozen and cached)
            for p in encoder.layers.parameters():
                p.requires_grad_(True)
        if config.has_adapters:
            for i in range(n):
                fixed = None if config.has_gates else i not in config.static_closed
                encoder.layers[i] = GatedBlock(encoder.layers[i], TokenAdapter(d, config.adapter_reduction),
                                               TokenGate(d), config.gate_scope, fixed)
        self.backbone = encoder
        self.head = nn.Linear(d, config.num_classes)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("thresholds", torch.zeros(len(config.gated_blocks)))
        self.cut = n if config.mode == "linear-probe" else 0

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.layers

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        t = self.config.max_length
        return torch.zeros(batch, t, dtype=torch.int64), torch.ones(batch, t, dtype=torch.int64)

    def prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings (and, for the linear probe, every layer) with the mask appended as a last channel."""
        h = self.backbone.embeddings(input_ids)
        mask = attention_mask.to(h.dtype)[:, :, None]
        bias = attention_bias(attention_mask)
        for layer in self.blocks[: self.cut]:
            h = layer(h, bias, mask)
        return torch.cat([h, mask], dim=2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Straight from token ids (the exported graph): no cache channel to append and split again."""
        if self.cut:
            return self.suffix(self.prefix(input_ids, attention_mask), thresholds)
        mask = attention_mask.to(torch.float32)[:, :, None]
        return self._encode(self.backbone.embeddings(input_ids), mask, attention_bias(attention_mask), thresholds)

    def suffix(self, feats: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = feats[:, :, -1:]
        return self._encode(feats[:, :, :-1].contiguous(), mask, attention_bias(mask[:, :, 0]), thresholds)

    def _encode(self, h: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor,
                thresholds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        thr = (self.thresholds if thresholds is None else thresholds).split(1)
        gates = []
        for layer in self.blocks[self.cut:]:
            if isinstance(layer, GatedBlock):
                h, g = layer(h, thr[len(gates)] if layer.gate is not None else None, bias, mask)
                if g is not None:
                    gates.append(g)
            else:
                h = layer(h, bias, mask)
        return self._gates_out(self.head(self.dropout(masked_mean(h, mask))), gates)

    @torch.no_grad()
    def frozen_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Mean token features of the frozen encoder without adapters (a site fixed closed skips its layer)."""
        h, mask = feats[:, :, :-1].contiguous(), feats[:, :, -1:]
        bias = attention_bias(mask[:, :, 0])
        for layer in self.blocks[self.cut:]:
            if isinstance(layer, GatedBlock):
                h = layer.block(h, bias, mask) if layer.fixed is not False else h
            else:
                h = layer(h, bias, mask)
        return masked_mean(h, mask)
