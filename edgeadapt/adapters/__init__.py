"""Gated adapters: config, the layer that wraps one block, and the model that does the surgery."""
from .base import GatedModel
from .config import GATE_SCOPES, MODES, GatedAdapterConfig
from .layer import BottleneckAdapter, Gate, GatedBlock
from .model import GatedAdapterModel

__all__ = ["GATE_SCOPES", "MODES", "GatedAdapterConfig", "BottleneckAdapter", "Gate", "GatedBlock", "GatedAdapterModel",
           "GatedModel", "create_model"]


def create_model(config: GatedAdapterConfig, pretrained: bool = True) -> GatedModel:
    """The gated model for the config's backbone: an image CNN, a text encoder or the user's module."""
    from ..backbones import is_text_backbone
    from .custom_model import CUSTOM_PREFIX

    if config.backbone.startswith(CUSTOM_PREFIX):
        from .custom_model import GatedCustomModel

        return GatedCustomModel(config, pretrained)
    if is_text_backbone(config.backbone):
        from .text_model import GatedTextModel

        return GatedTextModel(config, pretrained)
    return GatedAdapterModel(config, pretrained)
