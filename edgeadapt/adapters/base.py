"""What every gated model shares, whatever its backbone: gates, sites, freezing, training mode, state."""
from __future__ import annotations

import torch
from torch import nn

from .config import GatedAdapterConfig
from .layer import GatedBlock, SharedNoise


def gate_name(block: int) -> str:
    """The name a site's gate goes by in metrics, manifests and the CLI."""
    return f"block{block:02d}"


def exit_name(block: int) -> str:
    """The name of the early exit after backbone block ``block`` (its gate open: the input goes on)."""
    return f"exit{block:02d}"


class GatedModel(nn.Module):
    """Base of the image and text models: a frozen backbone whose ``blocks`` the surgery wrapped.

    Subclasses define ``blocks`` (the backbone's sequence of blocks), ``input_names``, ``example_inputs``,
    ``prefix``/``suffix`` (training caches the prefix's output) and ``frozen_features`` (the linear probe's).
    ``forward(*inputs, thresholds=None)`` (one argument per name in ``input_names``) returns
    ``(logits, gates)`` with ``gates`` ``[N, G]`` (1 = open).
    """

    config: GatedAdapterConfig
    input_names: tuple[str, ...] = ("input",)

    @property
    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shape and type (for export and MAC counting)."""
        raise NotImplementedError

    def prefix(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def suffix(self, feats: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def frozen_features(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare_training(self, feats: torch.Tensor) -> torch.Tensor:
        """Make the frozen layers cheaper to train through, and return the cached prefix ``feats`` in the layout
        that suits them. Computes the same function up to float rounding; by default nothing changes."""
        return feats

    @property
    def expected_if_nodes(self) -> int:
        """Every ``If`` the exported graph must hold: one per gate, and one per expert of every adapter bank."""
        from .layer import AdapterBank

        return len(self.gate_names) + sum(len(m.experts) for m in self.modules() if isinstance(m, AdapterBank))

    def exit_loss(self, targets: torch.Tensor, label_smoothing: float = 0.0, distill: float = 0.0) -> torch.Tensor:
        """Deep supervision of early exits from the last training forward (0 without exits)."""
        return torch.zeros(())

    def balance_loss(self) -> torch.Tensor:
        """Sum of the adapter banks' load-balancing terms from the last training forward (0 without banks)."""
        from .layer import AdapterBank

        return sum((m.balance for m in self.modules() if isinstance(m, AdapterBank)), torch.zeros(()))

    def margin_loss(self, bound: float) -> torch.Tensor:
        """Mean of how far the last training forward's gate margins lie beyond ``±bound``: a saturated sigmoid
        passes no gradient, so without this a gate settles open or shut for every input (docs/concepts/gates-and-scopes.md)."""
        margins = [b.margin for b in self.gated_blocks() if b.margin is not None]
        if not margins:
            return torch.zeros(())
        return torch.relu(torch.cat(margins, dim=1).abs() - bound).mean()

    @property
    def gate_names(self) -> list[str]:
        return [gate_name(i) for i in self.config.gated_blocks]

    def _gates_out(self, logits: torch.Tensor, gates: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the gates ``[N, G]``: open probabilities while training, 0/1 decisions in eval."""
        if not gates:
            return logits, logits[:, :0]  # no gates; a slice keeps the batch dimension symbolic at export
        cat = torch.cat(gates, dim=1)
        return logits, cat if self.training else (cat > 0).to(logits.dtype)

    def gated_blocks(self) -> list[GatedBlock]:
        """The blocks with a gate that decides per input (none in the baseline modes)."""
        return [b for b in self.adapter_blocks() if b.gate is not None]

    @property
    def coupled_columns(self) -> list[int]:
        """The columns, in the gate output, of the gates that train to decide together (``config.coupled_from``
        and every gate after it); empty when the config couples none."""
        first, blocks = self.config.coupled_from, self.config.gated_blocks
        if first is None:
            return []
        if first not in blocks:
            raise ValueError(f"block {first} has no gate; the gated blocks are {', '.join(map(str, blocks))}")
        columns = [k for k, i in enumerate(blocks) if i >= first]
        if len(columns) < 2:
            raise ValueError(f"block {first} is the last gated block; coupling needs two gates or more, so name "
                             "an earlier one")
        return columns

    def couple_gates(self) -> None:
        """Give the coupled gates one shared noise draw per input while training (``SharedNoise``)."""
        group, gated = SharedNoise(), self.gated_blocks()
        for n, k in enumerate(self.coupled_columns):
            gated[k].noise = (group, n == 0)

    def freeze_gates(self, decisions: dict[int, bool]) -> None:
        """Make these gates static (backbone block -> always runs or never runs); export then has no If for them."""
        keep = [k for k, i in enumerate(self.config.gated_blocks) if i not in decisions]
        for i, runs in decisions.items():
            site = self.blocks[i]
            site.gate, site.fixed = None, runs
        self.config.gated_blocks = [self.config.gated_blocks[k] for k in keep]
        self.thresholds = self.thresholds[keep].clone()

    def set_static_closed(self, blocks: list[int]) -> None:
        """Static baseline: these backbone blocks never run (their adapters stand in), for every input."""
        self.config.static_closed = sorted(blocks)
        for i in self.site_indices():
            if self.blocks[i].gate is None:
                self.blocks[i].fixed = i not in self.config.static_closed

    def site_indices(self) -> list[int]:
        """Backbone indices of every adapter site, gated or fixed, in order."""
        return [i for i, b in enumerate(self.blocks) if isinstance(b, GatedBlock)]

    def adapter_blocks(self) -> list[GatedBlock]:
        """Every block wrapped with an adapter, gated or fixed."""
        return [b for b in self.blocks if isinstance(b, GatedBlock)]

    def train(self, mode: bool = True) -> GatedModel:
        """Frozen backbone layers (BatchNorm included) stay in eval mode while the adapters train."""
        super().train(mode)
        self.backbone.eval()
        for block in self.adapter_blocks():
            block.training = mode
            block.margin = None  # holds the last training step's graph
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
