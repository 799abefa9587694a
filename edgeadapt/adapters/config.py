"""What a gated-adapter model is made of; saved beside the checkpoint so the model can be rebuilt."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

from ..choices import BUDGET_STATISTICS, EXIT_BACKBONES, EXIT_RULES, GATE_SCOPES, MODES

__all__ = ["BUDGET_STATISTICS", "EXIT_RULES", "GATE_SCOPES", "MODES", "GatedAdapterConfig"]


@dataclass
class GatedAdapterConfig:
    """Choices fixed at training time.

    ``gate_scope='block'``: a closed gate skips the frozen block and only the adapter runs in its place.
    ``gate_scope='adapter'``: the frozen block always runs; the gate decides whether the adapter runs.
    ``gate_scope='exit'``: every block and adapter runs up to an exit; the gate there decides whether the
    input goes on or leaves with the exit's prediction (the rest of the network is skipped). With
    ``exit_rule='confidence'`` the gate is the exit's own uncertainty, so hard inputs go deeper.

    ``coupled_from``: the gates from this backbone block on train to decide together, so that each input takes
    one shallow or one deep route through the later blocks (docs/concepts/coupled-gates.md).

    ``mode`` (see docs/concepts/gates-and-scopes.md): ``sparse`` gates every adapter site; ``dense`` runs every block and
    adapter always; ``static`` drops the blocks listed in ``static_closed`` for every input (their adapters
    stand in); ``linear-probe`` trains only the head; ``full`` fine-tunes the whole backbone, no adapters.
    """

    backbone: str = "efficientnet_lite0"
    num_classes: int = 2
    labels: list[str] = field(default_factory=list)
    image_size: int = 160
    gate_scope: str = "block"
    budget: float = 0.5
    budget_statistic: str = "mean"  # calibration: the mean over inputs meets the budget, or the median input's
    adapter_reduction: int = 4
    gated_blocks: list[int] = field(default_factory=list)  # filled by the surgery: backbone block indices
    mode: str = "sparse"
    static_closed: list[int] = field(default_factory=list)  # static mode: backbone blocks that never run
    backbone_dir: str = ""  # text backbones: the Hugging Face model directory the weights came from
    max_length: int = 64  # text backbones: tokens per input, padded or truncated
    exits: list[int] = field(default_factory=list)  # exit scope: backbone blocks after which an exit sits
    exit_rule: str = "confidence"  # exit scope: see EXIT_RULES and docs/concepts/early-exits.md
    exit_expand: int = 4  # exit scope: each exit head widens its features this many times before pooling (0: none)
    exit_joint: bool = False  # exit scope: the exits' loss also trains the adapters before them (deep supervision);
    # off: each exit learns on detached features, so the path to the final head trains as dense's does
    exit_mix: float = 0.4  # exit scope: an input that passes every exit is answered by the final head's probabilities
    # mixed with this share of the last exit's (0: the final head alone; docs/concepts/early-exits.md)
    experts: int = 1  # adapters per site; above 1 a router picks top_k of them per sample (AdapterBank)
    top_k: int = 1
    coupled_from: int | None = None  # the backbone block from which the gates train to decide together (None: each alone)
    blocks: str = ""  # custom backbones: the pattern naming the gateable blocks
    input_shape: list[int] = field(default_factory=list)  # custom backbones: one input without the batch

    def __post_init__(self) -> None:
        if self.gate_scope not in GATE_SCOPES:
            raise ValueError(f"gate scope must be one of {', '.join(GATE_SCOPES)}, not {self.gate_scope!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.exit_rule not in EXIT_RULES:
            raise ValueError(f"exit rule must be one of {', '.join(EXIT_RULES)}, not {self.exit_rule!r}")
        if self.gate_scope == "exit" and self.has_gates and self.backbone not in EXIT_BACKBONES:
            raise ValueError(f"gate scope exit (early exits) is built for EfficientNet-Lite0 only, not "
                             f"{self.backbone}; use gate scope block or adapter")
        if not 1 <= self.top_k <= self.experts:
            raise ValueError(f"top-k must be between 1 and the number of experts ({self.experts}), not {self.top_k}")
        if self.budget_statistic not in BUDGET_STATISTICS:
            raise ValueError(f"budget statistic must be one of {', '.join(BUDGET_STATISTICS)}, "
                             f"not {self.budget_statistic!r}")
        if self.exit_expand < 0:
            raise ValueError(f"exit expand must be 0 (none) or more, not {self.exit_expand}")
        if not 0.0 <= self.exit_mix < 1.0:
            raise ValueError(f"exit mix must be at least 0 and below 1, not {self.exit_mix}")
        if self.coupled_from is not None and not (self.has_gates and self.gate_scope in ("block", "adapter")):
            raise ValueError("coupled gates (couple_from) need mode sparse with gate scope block or adapter")
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(f"budget must be in (0, 1], not {self.budget}")

    @property
    def has_adapters(self) -> bool:
        return self.mode in ("sparse", "dense", "static")

    @property
    def has_gates(self) -> bool:
        """Only the sparse model decides per input; the baselines' graphs have no If and no gate output."""
        return self.mode == "sparse"

    @property
    def budget_free_training(self) -> bool:
        """Confidence exits: every input trains every exit and the final head, and the gates are the exits' own
        confidence, so training never sees the budget (calibration alone does) and runs that differ only in
        budget have the same weights. Other sparse models learn their gates under the budget."""
        return self.has_gates and self.gate_scope == "exit" and self.exit_rule == "confidence"

    def adapter(self, make: Callable[[], nn.Module], channels: int) -> nn.Module:
        """One adapter, or a bank of ``experts`` of them with a top-k router."""
        if self.experts == 1:
            return make()
        from .layer import AdapterBank

        return AdapterBank([make() for _ in range(self.experts)], channels, self.top_k)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GatedAdapterConfig:
        """A config as the current run config format saves it (older files go through
        ``formats.migrate_run_config`` first, which fills the fields they lack as those runs were built)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**data)
