"""Backbones created by name; each lives in one file and loads its weights the same way."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .efficientnet_lite import efficientnet_lite0

BACKBONES: dict[str, Callable[..., nn.Module]] = {"efficientnet_lite0": efficientnet_lite0}


def create_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """Build a registered backbone, with its pretrained weights unless told otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](pretrained=pretrained)
