"""The model: surgery that puts a gated adapter beside every residual block of a frozen backbone."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import create_backbone
from ..backbones.efficientnet_lite import fold_batchnorm
from .base import GatedModel, exit_name, gate_name
from .config import GatedAdapterConfig
from .layer import BottleneckAdapter, ExitHead, Gate, GatedBlock, conditional, sample_gate

__all__ = ["GatedAdapterModel", "gate_name"]

DISTILL_TEMPERATURE = 2.0  # softens the final head's predictions that the exits learn from (exit_loss)


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
        specs = [b.spec for b in backbone._blocks]
        residual = [i for i, b in enumerate(backbone._blocks) if b.spec.residual]
        exits = config.has_gates and config.gate_scope == "exit"
        if exits:
            config.exits = config.exits or default_exits(backbone, residual[0])
            bad = [i for i in config.exits if not residual[0] <= i < len(backbone._blocks) - 1]
            if bad or config.exits != sorted(set(config.exits)):
                raise ValueError(f"exits must be distinct blocks between {residual[0]} and {len(backbone._blocks) - 2} "
                                 f"in order, got {config.exits}")
        config.gated_blocks = (list(config.exits) if exits else residual) if config.has_gates else []
        if config.has_adapters:
            for i in residual:
                block = backbone._blocks[i]
                # exit scope: every adapter always runs; only the exits decide
                fixed = True if exits else None if config.has_gates else i not in config.static_closed
                ch = block.spec.out_ch
                adapter = config.adapter(lambda ch=ch: BottleneckAdapter(ch, config.adapter_reduction), ch)
                backbone._blocks[i] = GatedBlock(block, adapter, Gate(ch), config.gate_scope, fixed)
        self.backbone = backbone
        self.exit_heads = nn.ModuleList(ExitHead(specs[i].out_ch, config.num_classes, config.adapter_reduction,
                                                 config.exit_rule, config.exit_expand)
                                        for i in (config.exits if exits else []))
        self.head = nn.Linear(backbone.num_features, config.num_classes)
        self.dropout = nn.Dropout(0.2)
        self.register_buffer("thresholds", torch.zeros(len(config.gated_blocks)))
        # blocks before the first trained part are frozen, so training can cache their output
        n_blocks = len(backbone._blocks)
        self.cut = {"full": -1, "linear-probe": n_blocks}.get(config.mode, residual[0])

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone._blocks

    @property
    def gate_names(self) -> list[str]:
        name = exit_name if len(self.exit_heads) else gate_name
        return [name(i) for i in self.config.gated_blocks]

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
        if len(self.exit_heads):
            return self._suffix_exits(h, self.thresholds if thresholds is None else thresholds)
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

    def prepare_training(self, feats: torch.Tensor) -> torch.Tensor:
        """BatchNorm folded into the frozen convs (not in ``full``, where they train) and channels-last tensors:
        training steps about 35 % faster on CPUs (docs/concepts/backbones.md)."""
        if self.config.mode != "full":
            fold_batchnorm(self.backbone)
        self.to(memory_format=torch.channels_last)
        return feats.contiguous(memory_format=torch.channels_last)

    # early exits: the blocks after the prefix fall into segments, one more than there are exits

    def segments(self) -> list[list[nn.Module]]:
        """Blocks from the cut to the first exit, between exits, and after the last (the final head follows)."""
        bounds = [max(self.cut, 0), *(i + 1 for i in self.config.exits), len(self.blocks)]
        return [list(self.blocks[a:b]) for a, b in zip(bounds, bounds[1:])]

    def run_segment(self, j: int, h: torch.Tensor) -> torch.Tensor:
        for block in self.segments()[j]:
            h = block(h, None)[0] if isinstance(block, GatedBlock) else block(h)
        return h

    def final_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone.head_features(h)))

    def _suffix_exits(self, h: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            logits, margins = self._exit_from(0, h, thresholds)
            return logits, (margins > 0).to(logits.dtype)  # gate j open: the input went on past exit j
        exits, gates, reach = [], [], []
        going = h.new_ones(h.shape[0], 1)
        learned = self.config.exit_rule == "learned"
        for j, head in enumerate(self.exit_heads):
            h = self.run_segment(j, h)
            exits.append(head.logits(h if self.config.exit_joint else h.detach()))
            margin = head.go_on(h, exits[-1]) - thresholds[j]
            if not learned:  # confidence exits: every exit and the final head learn on every input
                margin = margin.detach()
            gates.append(sample_gate(margin, self.exit_heads[j].temperature))
            going = going * torch.sigmoid(margin)
            reach.append(going)  # probability of running the segment after exit j
        logits = self.final_logits(self.run_segment(len(self.exit_heads), h))
        self._final_logits = logits  # the exits' teacher (exit_loss)
        if learned:
            for g, e in zip(reversed(gates), reversed(exits)):  # from the back: stay (g = 1) or leave at this exit
                logits = g * logits + (1 - g) * e
        self._exit_logits = exits
        return logits, torch.cat(reach, dim=1)

    def _exit_from(self, j: int, h: torch.Tensor, thresholds: torch.Tensor):
        """Segment j, then exit j's gate: one ``If`` whose then-branch holds everything deeper (nested Ifs)."""
        h = self.run_segment(j, h)
        n = len(self.exit_heads)
        if j == n:
            return self.final_logits(h), None
        head = self.exit_heads[j]
        leave = head.logits(h)
        margin = head.go_on(h, leave) - thresholds[j]
        last = j == n - 1

        def deeper(h, margin, leave, thresholds):
            logits, rest = self._exit_from(j + 1, h, thresholds)
            if last:
                logits = mix_heads(logits, leave, self.config.exit_mix)
            logits = torch.where(margin > 0, logits, leave)
            return logits if last else (logits, torch.where(margin > 0, rest, torch.full_like(rest, -1.0)))

        def stop(h, margin, leave, thresholds):
            return leave.clone() if last else (leave.clone(), margin.new_full((margin.shape[0], n - j - 1), -1.0))

        out = conditional(margin.max() > 0, deeper, stop, (h, margin, leave, thresholds))
        if last:
            return out, margin
        logits, rest = out
        return logits, torch.cat([margin, rest], dim=1)

    def exit_loss(self, targets: torch.Tensor, label_smoothing: float = 0.0, distill: float = 0.0) -> torch.Tensor:
        """Mean over exits of each exit's cross-entropy, so exits learn whether or not inputs leave there, plus
        ``distill`` times its KL divergence from the final head's softened, detached predictions (self-distillation:
        the final head's view of which classes look alike is a richer target than the label)."""
        exits = getattr(self, "_exit_logits", [])
        if not exits:
            return torch.zeros(())
        loss = sum(F.cross_entropy(e, targets, label_smoothing=label_smoothing) for e in exits)
        if distill:
            teacher = F.softmax(self._final_logits.detach() / DISTILL_TEMPERATURE, dim=1)
            loss = loss + distill * DISTILL_TEMPERATURE ** 2 * sum(
                F.kl_div(F.log_softmax(e / DISTILL_TEMPERATURE, dim=1), teacher, reduction="batchmean") for e in exits)
        return loss / len(exits)

    def set_temperature(self, t: float) -> None:
        super().set_temperature(t)
        for head in self.exit_heads:
            head.temperature = t

    def freeze_gates(self, decisions: dict[int, bool]) -> None:
        """Exit models: an exit that no input took (``True``: every input went on) is removed with its head, so
        the graph loses its If, its head and one level of nesting. Block and adapter gates: as in the base class."""
        if not len(self.exit_heads):
            return super().freeze_gates(decisions)
        taken = [exit_name(i) for i, goes_on in decisions.items() if not goes_on]
        if taken:
            raise ValueError(f"{', '.join(taken)} took every input: freezing it would drop the rest of the network")
        if self.config.exit_mix and self.config.exits[-1] in decisions:
            raise ValueError(f"{exit_name(self.config.exits[-1])} is mixed into the final answer (exit mix "
                             f"{self.config.exit_mix:g}): it keeps its head")
        keep = [k for k, i in enumerate(self.config.exits) if i not in decisions]
        self.config.exits = [self.config.exits[k] for k in keep]
        self.config.gated_blocks = list(self.config.exits)
        self.exit_heads = nn.ModuleList(self.exit_heads[k] for k in keep)
        self.thresholds = self.thresholds[keep].clone()

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


def mix_heads(final: torch.Tensor, last_exit: torch.Tensor, weight: float) -> torch.Tensor:
    """Log of ``(1 - weight)`` x the final head's probabilities plus ``weight`` x the last exit's. Two classifiers
    of different depth err on different inputs, so the mixture beats the final head alone (docs/concepts/early-exits.md)."""
    if not weight:
        return final
    return torch.stack([F.log_softmax(final, 1) + math.log1p(-weight),
                        F.log_softmax(last_exit, 1) + math.log(weight)]).logsumexp(0)


def default_exits(backbone: nn.Module, first: int) -> list[int]:
    """The last block of every stage from the first gated one to the one before the last two stages."""
    blocks = backbone._blocks
    ends = [i for i in range(len(blocks) - 1) if blocks[i + 1].spec.stride != 1
            or blocks[i + 1].spec.in_ch != blocks[i + 1].spec.out_ch]
    return [i for i in ends if i >= first][:3]
