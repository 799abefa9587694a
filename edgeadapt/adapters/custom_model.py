"""Surgery on any torch module: the user names its gateable blocks; each gets an adapter and a gate.

The contract (docs/concepts/backbones.md): a factory ``package.module:function`` returns the pretrained module, which
maps a float tensor ``[N, *input_shape]`` to features ``[N, D]``; every named block maps a tensor to a
tensor of the same shape (a residual block, an encoder layer). The user's ``forward`` runs unchanged: each
named block is replaced in its parent by a shim that runs the gated block and records the gate.
"""
from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError
from .base import GatedModel
from .config import GatedAdapterConfig
from .layer import ChannelAdapter, ChannelGate, GatedBlock

CUSTOM_PREFIX = "module:"


class _Tape:
    """What the shims read and write during one forward: the thresholds in, the gates out (not a module)."""

    def __init__(self) -> None:
        self.thresholds: tuple[torch.Tensor, ...] = ()
        self.gates: list[torch.Tensor] = []
        self.frozen = False  # True: run the frozen blocks alone (the linear probe's features)


class _Shim(nn.Module):
    """Stands where the user's block stood: same call signature ``block(x)``, runs the gated block."""

    def __init__(self, site: GatedBlock, index: int, tape: _Tape):
        super().__init__()
        self.site = site
        self.index = index
        object.__setattr__(self, "_tape", tape)  # a plain attribute: not a submodule, not in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tape = self._tape
        if tape.frozen:
            return self.site.block(x) if self.site.fixed is not False else x
        out, gate = self.site(x, tape.thresholds[self.index] if self.site.gate is not None else None)
        if gate is not None:
            tape.gates.append(gate)
        return out


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """``module:package.module:function`` -> the function (imported, so it runs the user's code)."""
    target = spec.removeprefix(CUSTOM_PREFIX)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UserError(f"custom backbone {spec!r} must read module:package.module:function")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load custom backbone {spec!r} ({exc}); is the module on PYTHONPATH?") from None
    if not callable(factory):
        raise UserError(f"custom backbone {spec!r} is not callable")
    return factory


def find_blocks(module: nn.Module, pattern: str) -> list[str]:
    """Names of the submodules matching ``pattern`` (fnmatch, e.g. ``blocks.*`` or ``layer[12].0``)."""
    names = [n for n, _ in module.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]
    # a pattern such as "blocks.*" also matches children of blocks: keep the outermost matches only
    outer = [n for n in names if not any(n.startswith(p + ".") for p in names if p != n)]
    if not outer:
        raise UserError(f"blocks {pattern!r} matches no submodule; names look like: "
                        f"{', '.join(n for n, _ in list(module.named_modules())[1:6])}")
    return outer


class GatedCustomModel(GatedModel):
    """A user's pretrained module with a gated adapter at each named block and a new classifier head."""

    input_names = ("input",)

    def __init__(self, config: GatedAdapterConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        if not config.blocks:
            raise UserError("a custom backbone needs blocks=PATTERN (--set blocks=...) naming its gateable blocks, e.g. 'layers.*'")
        net = load_factory(config.backbone)()
        if not isinstance(net, nn.Module):
            raise UserError(f"custom backbone {config.backbone!r} returned {type(net).__name__}, not a torch module")
        net.eval()
        for p in net.parameters():
            p.requires_grad_(config.mode == "full")
        self.block_names = find_blocks(net, config.blocks)
        shapes = self._check_contract(net)
        self.tape = _Tape()
        self.sites: list[nn.Module] = []  # also reachable through the backbone; listed once, not registered twice
        config.gated_blocks = list(range(len(self.block_names))) if config.has_gates else []
        for i, (name, shape) in enumerate(zip(self.block_names, shapes)):
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            block = getattr(parent, child)
            if config.has_adapters:
                fixed = None if config.has_gates else i not in config.static_closed
                adapter = config.adapter(lambda c=shape[1]: ChannelAdapter(c, config.adapter_reduction), shape[1])
                block = GatedBlock(block, adapter, ChannelGate(shape[1]), config.gate_scope, fixed)
            self.sites.append(block)
            if config.has_adapters:
                setattr(parent, child, _Shim(block, i, self.tape))
        self.backbone = net
        self.head = nn.Linear(self._features, config.num_classes)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("thresholds", torch.zeros(len(config.gated_blocks)))
        self.cut = -1  # nothing cached: the forward is the user's, and it cannot be split

    def _check_contract(self, net: nn.Module) -> list[torch.Size]:
        """Run once on zeros: every named block keeps its input's shape, and the output is ``[N, D]``."""
        seen: dict[str, tuple[torch.Size, torch.Size]] = {}

        def record(name: str):
            def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:  # None: the output stays
                seen.setdefault(name, (args[0].shape, out.shape))
            return hook

        hooks = [net.get_submodule(n).register_forward_hook(record(n)) for n in self.block_names]
        try:
            with torch.no_grad():
                out = net(self.example_inputs(2)[0])
        except Exception as exc:  # the user's forward can raise anything
            raise UserError(f"custom backbone failed on an input of shape [2, {self.config.input_shape}] "
                            f"({exc.__class__.__name__}: {str(exc)[:120]})") from None
        finally:
            for h in hooks:
                h.remove()
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise UserError("custom backbone must return features [N, D]; got "
                            f"{list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        self._features = out.shape[1]
        bad = [f"{n} ({list(i)} -> {list(o)})" for n, (i, o) in seen.items() if i != o]
        if bad:
            raise UserError(f"gateable blocks must keep their input's shape: {', '.join(bad)}")
        missing = [n for n in self.block_names if n not in seen]
        if missing:
            raise UserError(f"named blocks never ran in forward: {', '.join(missing)}")
        return [seen[n][0] for n in self.block_names]

    @property
    def blocks(self) -> list[nn.Module]:
        return self.sites

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(batch, *self.config.input_shape),)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Nothing to cache but the input (the linear probe caches the frozen features)."""
        return self.backbone(x) if self.config.mode == "linear-probe" else x

    def forward(self, x: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.suffix(x, thresholds)

    def suffix(self, x: torch.Tensor, thresholds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.mode == "linear-probe":
            return self._gates_out(self.head(self.dropout(x)), [])
        self.tape.thresholds = (self.thresholds if thresholds is None else thresholds).split(1)
        self.tape.gates = []
        features = self.backbone(x)
        gates, self.tape.gates = self.tape.gates, []
        return self._gates_out(self.head(self.dropout(features)), gates)

    @torch.no_grad()
    def frozen_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Features of the user's module without adapters (sites fixed closed skip their block)."""
        if self.config.mode == "linear-probe":
            return feats
        self.tape.frozen = True
        try:
            return self.backbone(feats)
        finally:
            self.tape.frozen = False
