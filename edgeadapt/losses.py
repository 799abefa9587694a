"""Training losses beyond cross-entropy and the budget pull: compute for the inputs that gain from it, and
agreement of coupled gates."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def difficulty_loss(logits: torch.Tensor, open_logits: torch.Tensor, targets: torch.Tensor,
                    spent: torch.Tensor) -> torch.Tensor:
    """Rewards compute ``spent`` ``[N]`` on the inputs whose loss drops most when every gate opens, and penalises
    it on the rest (ranks centred on zero, so the batch's mean compute, which the budget term holds, is untouched):
    hard inputs go through more blocks, easy ones through fewer."""
    with torch.no_grad():
        gain = F.cross_entropy(logits, targets, reduction="none") - F.cross_entropy(open_logits, targets, reduction="none")
        rank = gain.argsort().argsort().to(spent.dtype) / max(1, len(gain) - 1) - 0.5
    return -(spent * rank).mean()


def agreement_loss(p_open: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """How far each input's coupled gates ``[N, K]`` disagree: the cost-weighted variance of their open
    probabilities, averaged over inputs. Zero when they agree, whatever they agree on, so the budget and the
    routing still choose which inputs take the deep route."""
    w = costs / costs.sum()
    mean = (p_open * w).sum(1, keepdim=True)
    return ((p_open - mean) ** 2 * w).sum(1).mean()
