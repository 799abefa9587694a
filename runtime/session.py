"""Run a bundle with onnxruntime: preprocess, infer, decode labels, scores and gate decisions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .bundle import Bundle, load_bundle, thresholds_for_budget
from .preprocess import load_image, normalize
from .providers import open_session

ALL_OPEN = -1e9  # a threshold below any gate logit
ALL_CLOSED = 1e9  # a threshold above any gate logit


@dataclass
class Prediction:
    """One input's result: top label, its softmax score, and which gates fired."""

    label: str
    score: float
    gates: dict[str, bool]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "gates": self.gates}


class Runtime:
    """The device-side entry point: ``Runtime(bundle_dir).predict(images)``.

    ``budget`` picks gate thresholds from the bundle's budget table instead of the exported defaults;
    ``graph="dense"`` runs the bundle's graph without ``If`` (same results, every branch computed).
    """

    def __init__(self, bundle: str | Path | Bundle, threads: int | None = None,
                 providers: list[str] | None = None, budget: float | None = None, graph: str = "gated"):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        inputs = self.bundle.manifest["input"]
        self.input_name = inputs["name"]
        self.thresholds_name = self.bundle.manifest.get("gate_thresholds_input")  # None without gates
        self.mean, self.std = inputs["mean"], inputs["std"]
        self.thresholds = (self.bundle.default_thresholds() if budget is None
                           else thresholds_for_budget(self.bundle, budget))
        size = self.bundle.image_size
        probe = self._feed(np.zeros((1, 3, size, size), np.float32), self.thresholds)
        self.graph = graph
        opened = open_session(self.bundle.graph_path(graph), providers, threads, probe)
        self.session, self.provider, self.provider_warnings = opened.session, opened.provider, opened.warnings
        self.session_ms, self.first_inference_ms = opened.session_ms, opened.first_inference_ms

    def infer(self, x: np.ndarray, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw run on a normalised batch ``[N, 3, H, W]``: logits ``[N, K]`` and gates ``[N, G]`` (bool)."""
        size = self.bundle.image_size
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (3, size, size):
            raise UserError(f"input must be float32 of shape [N, 3, {size}, {size}], got {x.dtype} {list(x.shape)}")
        thr = self.thresholds if thresholds is None else np.asarray(thresholds, np.float32)
        outputs = self.session.run(None, self._feed(x, thr))
        if self.thresholds_name is None:  # a baseline bundle: logits only
            return outputs[0], np.zeros((len(x), 0), bool)
        return outputs[0], outputs[1].astype(bool)

    def _feed(self, x: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
        if self.thresholds_name is None:
            return {self.input_name: x}
        return {self.input_name: x, self.thresholds_name: thresholds}

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, 3]`` at the bundle's size -> the model's normalised input."""
        size = self.bundle.image_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise UserError(f"images must be uint8 of shape [N, {size}, {size}, 3], got "
                            f"{images.dtype} {list(images.shape)}")
        return normalize(images, self.mean, self.std)

    def predict(self, images: np.ndarray, thresholds: np.ndarray | None = None) -> list[Prediction]:
        """Classify uint8 images and say, per image, which gates opened."""
        logits, gates = self.infer(self.prepare(images), thresholds)
        probs = _softmax(logits)
        names, labels = self.bundle.gate_names, self.bundle.labels
        return [Prediction(labels[int(p.argmax())], float(p.max()), dict(zip(names, map(bool, g))))
                for p, g in zip(probs, gates)]

    def predict_files(self, paths: list[str | Path]) -> list[Prediction]:
        """Load, resize and classify image files, one at a time as a device would."""
        size = self.bundle.image_size
        return [self.predict(load_image(p, size)[None])[0] for p in paths]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
