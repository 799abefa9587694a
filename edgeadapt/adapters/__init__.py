"""Gated adapters: config, the layer that wraps one block, and the model that does the surgery."""
from .config import GATE_SCOPES, GatedAdapterConfig
from .layer import BottleneckAdapter, Gate, GatedBlock
from .model import GatedAdapterModel

__all__ = ["GATE_SCOPES", "GatedAdapterConfig", "BottleneckAdapter", "Gate", "GatedBlock", "GatedAdapterModel"]
