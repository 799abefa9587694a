"""The layer: one frozen block wrapped with a bottleneck adapter and an input-dependent gate.

Images and token sequences differ only in the adapter and the gate (``BottleneckAdapter``/``Gate`` on
``[N, C, H, W]``, ``TokenAdapter``/``TokenGate`` on ``[N, T, D]``); ``GatedBlock`` serves both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BottleneckAdapter(nn.Module):
    """1x1 down, 3x3 depthwise, 1x1 up; the up projection starts at zero so training starts from the backbone."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, 1)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.up = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu6(self.mix(F.relu6(self.down(x)))))


class Gate(nn.Module):
    """Pooled block input -> one linear unit -> one logit per sample, shape ``[N, 1]`` (open when logit > threshold).

    ``pool`` is what differs between inputs: feature maps here, tokens and any-shape tensors below."""

    def __init__(self, channels: int, init_bias: float = 2.0):
        super().__init__()
        self.proj = nn.Linear(channels, 1)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.constant_(self.proj.bias, init_bias)

    def pool(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x, *context))


class TokenGate(Gate):
    """Mean of the real tokens (padding masked out) -> one logit per sample."""

    def pool(self, h: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class ChannelGate(Gate):
    """Mean over every dimension but batch and channel (any ``[N, C, ...]``) -> one logit per sample."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return pool_channels(x)


def pool_channels(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, ...]`` -> ``[N, C]`` by the mean over the rest (``[N, C]`` stays as it is)."""
    return x.flatten(2).mean(2) if x.dim() > 2 else x


class TokenAdapter(nn.Module):
    """Houlsby-style adapter on token features: down, ReLU, up; the up projection starts at zero."""

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, dim // reduction)
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.down(h)))


class ChannelAdapter(TokenAdapter):
    """The same bottleneck over the channel dimension (dim 1) of ``[N, C, ...]``, or the features of ``[N, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1).contiguous()


def conditional(pred: torch.Tensor, true_fn, false_fn, operands: tuple):
    """``torch.cond`` while exporting or compiling (it becomes one ONNX ``If``); a plain Python branch when
    eager: the same computation, without compiling both branches on every call."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return torch.cond(pred, true_fn, false_fn, operands)
    return true_fn(*operands) if bool(pred) else false_fn(*operands)


def uniform_noise(like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) per element of ``like``, kept off 0 and 1 so its logit is finite."""
    return torch.rand_like(like).clamp(1e-6, 1 - 1e-6)


def sample_gate(logits: torch.Tensor, temperature: float, u: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through Gumbel-sigmoid: a hard 0/1 forward, the relaxed gradient backward. ``u``: the uniform
    draw to use (coupled gates share one, see ``SharedNoise``); a fresh one when not given."""
    u = uniform_noise(logits) if u is None else u
    noisy = (logits + torch.log(u) - torch.log1p(-u)) / temperature
    soft = torch.sigmoid(noisy)
    hard = (noisy > 0).to(logits.dtype)
    return hard + soft - soft.detach()


class SharedNoise:
    """One noise draw per input for a group of coupled gates (``GatedModel.couple_gates``). Gates trained to
    agree then also open and close together while training, as their deployed decisions do; with a draw
    each, an input would train on mixed patterns that it never runs deployed."""

    def __init__(self) -> None:
        self.u: torch.Tensor | None = None

    def draw(self, like: torch.Tensor, fresh: bool) -> torch.Tensor:
        """A new draw for the group's first gate (``fresh``); the same one for the gates after it."""
        if fresh or self.u is None or self.u.shape != like.shape:
            self.u = uniform_noise(like)
        return self.u


class ExitHead(nn.Module):
    """An early exit after a stage: a bottleneck adapter on its features, pooling, a classifier, and the
    decision whether the input goes on (open) or leaves here (closed).

    ``rule='confidence'``: the decision reads the exit's own prediction, so an input the exit is unsure of
    goes on (deeper for hard inputs, out early for easy ones); ``rule='learned'``: a trained gate on the
    exit's pooled features decides.
    """

    def __init__(self, channels: int, num_classes: int, reduction: int = 4, rule: str = "confidence",
                 expand: int = 0):
        super().__init__()
        self.adapter = BottleneckAdapter(channels, reduction)
        nn.init.normal_(self.adapter.up.weight, std=0.01)  # an exit must learn from the start
        # a 1x1 conv to ``expand`` x channels before pooling, as the backbone's own head conv does before its
        # classifier: more inputs are sure enough to leave (docs/concepts/early-exits.md)
        self.expand = nn.Conv2d(channels, expand * channels, 1) if expand else None
        self.classifier = nn.Linear(expand * channels if expand else channels, num_classes)
        self.gate = Gate(channels) if rule == "learned" else None
        self.temperature = 1.0

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        z = h + self.adapter(h)
        if self.expand is not None:
            z = F.relu6(self.expand(z))
        return self.classifier(z.mean(dim=(2, 3)))

    def go_on(self, h: torch.Tensor, leave: torch.Tensor) -> torch.Tensor:
        """``[N, 1]``: the higher, the more the input should go on (compared with a threshold)."""
        return self.gate(h) if self.gate is not None else uncertainty(leave)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """``log((1 - p) / p)`` of the top class's probability ``p``, per sample ``[N, 1]``: -inf when sure,
    ``log(C - 1)`` at a uniform guess. Monotone in ``p``, so a threshold on it is one on confidence."""
    rest = (logits - logits.amax(1, keepdim=True)).exp().sum(1, keepdim=True) - 1.0
    return rest.clamp_min(1e-12).log()


class AdapterBank(nn.Module):
    """E adapters at one site and a router that picks the top k per sample (a mixture of adapters: e.g. one
    expert per part family). In eval mode each expert is one ``If``: it runs only when some sample of the
    batch picked it, and contributes only to those samples.

    Routing reads the mean over every dimension but batch and channel, so banks serve image-like inputs
    ``[N, C, ...]``; ``balance`` holds the load-balancing term of the last training forward.
    """

    def __init__(self, experts: list[nn.Module], channels: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= len(experts):
            raise ValueError(f"top-k must be between 1 and the number of experts ({len(experts)}), not {top_k}")
        self.experts = nn.ModuleList(experts)
        self.router = nn.Linear(channels, len(experts))
        nn.init.normal_(self.router.weight, std=0.01)
        nn.init.zeros_(self.router.bias)
        self.top_k = top_k
        self.balance = torch.zeros(())

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample expert weights ``[N, E]``: softmax over the top k router logits, zero elsewhere."""
        logits = self.router(pool_channels(x))
        top = logits.topk(self.top_k, dim=1)
        weights = torch.zeros_like(logits).scatter(1, top.indices, top.values.softmax(1))
        if self.training:  # Switch-style: fraction routed to each expert x its mean router probability
            chosen = (weights > 0).to(logits.dtype)
            self.balance = len(self.experts) * (chosen.mean(0) * logits.softmax(1).mean(0)).sum()
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            w = _per_sample(weights[:, e:e + 1], x)
            if self.training:
                out = out + w * expert(x)
            else:
                out = out + conditional(weights[:, e].max() > 0, _ExpertBranch(expert), _no_expert, (x, w))
        return out


class _ExpertBranch(nn.Module):
    """One expert's ``If`` branch: its output weighted per sample (weight 0 for samples that did not pick it)."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w * self.expert(x)).contiguous()  # both branches of an If must agree on memory layout


def _no_expert(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


class GatedBlock(nn.Module):
    """Wraps a frozen residual block; in eval mode a closed gate skips the gated path with ``torch.cond``.

    ``torch.cond`` becomes one ONNX ``If`` node at export. Its condition is one boolean per batch, so the
    expensive branch runs when any sample needs it and picks per sample inside: a sample's result
    never depends on the rest of its batch.

    ``context`` is whatever else the block and gate read besides ``x`` (an encoder layer's attention
    bias and token mask); a convolutional block takes none.
    """

    def __init__(self, block: nn.Module, adapter: nn.Module, gate: nn.Module | None, scope: str,
                 fixed: bool | None = None):
        super().__init__()
        self.block = block
        self.scope = scope
        self.adapter = adapter
        self.fixed = fixed  # None: the gate decides; True/False: the block always/never runs (baselines)
        self.gate = gate if fixed is None else None
        self.temperature = 1.0
        self.margin: torch.Tensor | None = None  # training: the last forward's gate margin, for margin_loss
        self.noise: tuple[SharedNoise, bool] | None = None  # coupled gates: the group's draw, and whether this gate draws it

    def forward(self, x: torch.Tensor, threshold: torch.Tensor | None,
                *context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the block output and, per sample ``[N, 1]``, the gate margin (logit - threshold; open when
        positive) in eval mode or the relaxed open probability while training."""
        if self.gate is None:
            return (self.block(x, *context) if self.fixed else x) + self.adapter(x), None
        if self.training:
            # the gate reads a detached input: its losses decide where to route, they do not reshape the features
            self.margin = self.gate(x.detach(), *context) - threshold
            u = self.noise[0].draw(self.margin, self.noise[1]) if self.noise else None
            return self._mix(x, sample_gate(self.margin, self.temperature, u), context), torch.sigmoid(self.margin)
        margin = self.gate(x, *context) - threshold
        # every op here runs at every gate, open or closed, so the graph is kept to the few it needs
        any_open = margin.max() > 0
        if self.scope == "block":  # the adapter's sum happens inside the branches: no copy of x when closed
            return conditional(any_open, self._run_block, _skip_block, (x, self.adapter(x), margin, *context)), margin
        base = self.block(x, *context)
        return conditional(any_open, self._run_adapter, _keep_base, (base, x, margin)), margin

    def _run_block(self, x: torch.Tensor, delta: torch.Tensor, margin: torch.Tensor,
                   *context: torch.Tensor) -> torch.Tensor:
        return torch.where(_per_sample(margin, x) > 0, self.block(x, *context), x) + delta

    def _run_adapter(self, base: torch.Tensor, x: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        return base + torch.where(_per_sample(margin, x) > 0, self.adapter(x), torch.zeros_like(base))

    def _mix(self, x: torch.Tensor, g: torch.Tensor, context: tuple) -> torch.Tensor:
        """Training path: both branches computed, weighted by the straight-through gate."""
        g = _per_sample(g, x)
        if self.scope == "block":
            return g * self.block(x, *context) + (1 - g) * x + self.adapter(x)
        return self.block(x, *context) + g * self.adapter(x)


def _per_sample(margin: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[N, 1]`` -> ``[N, 1, 1(, 1)]``, broadcastable against ``x``."""
    return margin[(slice(None), slice(None)) + (None,) * (x.dim() - 2)]


def _skip_block(x: torch.Tensor, delta: torch.Tensor, margin: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
    return x + delta


def _keep_base(base: torch.Tensor, x: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    return base.clone()
