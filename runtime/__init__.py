"""Device-side runtime: numpy + onnxruntime, never torch or onnx.

Entry point: ``Runtime(bundle_dir)``; ``runtime.predict(images)`` returns labels, scores and gate decisions.
"""
from .bundle import Bundle, load_bundle
from .session import Prediction, Runtime

__all__ = ["Bundle", "load_bundle", "Prediction", "Runtime"]
