"""Gated adapters: config, the layer that wraps one block, and the model that does the surgery."""
from .config import GATE_SCOPES, MODES, GatedAdapterConfig
from .layer import BottleneckAdapter, Gate, GatedBlock
from .model import GatedAdapterModel

__all__ = ["GATE_SCOPES", "MODES", "GatedAdapterConfig", "BottleneckAdapter", "Gate", "GatedBlock", "GatedAdapterModel"]
