"""Gated adapters: config, the layer that wraps one block, and the model that does the surgery."""
from .base import GatedModel
from .config import GATE_SCOPES, MODES, GatedAdapterConfig
from .layer import BottleneckAdapter, Gate, GatedBlock
from .model import GatedAdapterModel

__all__ = ["GATE_SCOPES", "MODES", "GatedAdapterConfig", "BottleneckAdapter", "Gate", "GatedBlock", "GatedAdapterModel",
           "GatedModel", "check_buildable", "create_model"]


def create_model(config: GatedAdapterConfig, pretrained: bool = True) -> GatedModel:
    """The gated model for the config's backbone: an image CNN, a text encoder or the user's module."""
    from ..backbones import is_text_backbone
    from .custom_model import CUSTOM_PREFIX

    if config.backbone.startswith(CUSTOM_PREFIX):
        from .custom_model import GatedCustomModel

        model: GatedModel = GatedCustomModel(config, pretrained)
    elif is_text_backbone(config.backbone):
        from .text_model import GatedTextModel

        model = GatedTextModel(config, pretrained)
    else:
        model = GatedAdapterModel(config, pretrained)
    model.couple_gates()
    return model


def check_buildable(config: GatedAdapterConfig, option: str) -> GatedAdapterConfig:
    """Build the network once without its weights, so that a config it rejects fails in one line naming the
    ``option`` at fault, before any data is read; returns a copy with what the build fills in (``exits``)."""
    from ..errors import UserError

    try:
        return create_model(GatedAdapterConfig.from_dict(config.to_dict()), pretrained=False).config
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None

