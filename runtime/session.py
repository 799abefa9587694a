"""Run a bundle with onnxruntime: preprocess, infer, decode labels, scores and gate decisions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .bundle import Bundle, load_bundle, thresholds_for_budget
from .preprocess import load_image, normalize
from .providers import open_session


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
    ``graph="dense"`` runs the bundle's graph without ``If`` (same results, every branch computed);
    ``spin_wait=False`` lets idle onnxruntime threads sleep (slower; for a device shared with other work).
    """

    def __init__(self, bundle: str | Path | Bundle, threads: int | None = None,
                 providers: list[str] | None = None, budget: float | None = None, graph: str = "gated",
                 spin_wait: bool = True):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        inputs = self.bundle.manifest["input"]
        self.kind = self.bundle.kind
        self.thresholds_name = self.bundle.manifest.get("gate_thresholds_input")  # None without gates
        self.thresholds = (self.bundle.default_thresholds() if budget is None
                           else thresholds_for_budget(self.bundle, budget))
        if self.kind == "text":
            from .text import TextEncoder

            self.input_names = list(inputs["names"])
            self.text = TextEncoder(self.bundle.root / inputs["tokenizer"], int(inputs["max_length"]))
            probe = self._feed(self.text.encode(["probe"]), self.thresholds)
        elif self.kind == "array":
            self.input_names = [inputs["name"]]
            self.row_shape = tuple(inputs["shape"][1:])
            probe = self._feed(np.zeros((1, *self.row_shape), np.float32), self.thresholds)
        else:
            self.input_names = [inputs["name"]]
            self.mean, self.std = inputs["mean"], inputs["std"]
            size = self.bundle.image_size
            probe = self._feed(np.zeros((1, 3, size, size), np.float32), self.thresholds)
        self.graph = graph
        opened = open_session(self.bundle.graph_path(graph), providers, threads, probe, spin_wait)
        self.spin_wait = spin_wait
        self.session, self.provider, self.provider_warnings = opened.session, opened.provider, opened.warnings
        self.session_ms, self.first_inference_ms = opened.session_ms, opened.first_inference_ms

    def infer(self, x: np.ndarray | tuple[np.ndarray, ...],
              thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw run on a normalised image batch ``[N, 3, H, W]`` (or, for text, ``(input_ids, attention_mask)``
        int64 ``[N, T]``): logits ``[N, K]`` and gates ``[N, G]`` (bool)."""
        self._check(x)
        thr = self.thresholds if thresholds is None else np.asarray(thresholds, np.float32)
        outputs = self.session.run(None, self._feed(x, thr))
        if self.thresholds_name is None:  # a baseline bundle: logits only
            return outputs[0], np.zeros((len(outputs[0]), 0), bool)
        return outputs[0], outputs[1].astype(bool)

    def _check(self, x) -> None:
        if self.kind == "text":
            if (not isinstance(x, tuple) or len(x) != 2 or any(a.dtype != np.int64 or a.ndim != 2 for a in x)
                    or x[0].shape != x[1].shape):
                raise UserError("text input must be (input_ids, attention_mask), int64 arrays of one shape [N, T]")
            return
        if self.kind == "array":
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape[1:] != self.row_shape:
                got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
                raise UserError(f"input must be float32 of shape [N, {', '.join(map(str, self.row_shape))}], got {got}")
            return
        size = self.bundle.image_size
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (3, size, size):
            got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
            raise UserError(f"input must be float32 of shape [N, 3, {size}, {size}], got {got}")

    def _feed(self, x, thresholds: np.ndarray) -> dict[str, np.ndarray]:
        feed = dict(zip(self.input_names, x if isinstance(x, tuple) else (x,)))
        if self.thresholds_name is not None:
            feed[self.thresholds_name] = thresholds
        return feed

    def one(self, prepared, i: int):
        """Input ``i`` of a ``prepare``d set as a batch of one (a text without padding, as a device runs it)."""
        return prepared[i] if self.kind == "text" else prepared[i][None]

    def prepare(self, samples: np.ndarray) -> np.ndarray | list[tuple[np.ndarray, np.ndarray]]:
        """Stored samples -> model inputs: uint8 images ``[N, H, W, 3]`` -> the normalised batch; texts ->
        one ``(input_ids, attention_mask)`` per text (pick one with ``one``)."""
        if self.kind == "text":
            return [self.text.encode([t]) for t in samples]
        if self.kind == "array":
            return np.ascontiguousarray(samples, np.float32)
        images = samples
        size = self.bundle.image_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise UserError(f"images must be uint8 of shape [N, {size}, {size}, 3], got "
                            f"{images.dtype} {list(images.shape)}")
        return normalize(images, self.mean, self.std)

    def predict(self, images: np.ndarray, thresholds: np.ndarray | None = None) -> list[Prediction]:
        """Classify uint8 images (or, for an array bundle, float rows) and say, per input, which gates opened."""
        return self._decode(*self.infer(self.prepare(images), thresholds))

    def _decode(self, logits: np.ndarray, gates: np.ndarray) -> list[Prediction]:
        probs = _softmax(logits)
        names, labels = self.bundle.gate_names, self.bundle.labels
        return [Prediction(labels[int(p.argmax())], float(p.max()), dict(zip(names, map(bool, g))))
                for p, g in zip(probs, gates)]

    def predict_texts(self, texts: list[str], thresholds: np.ndarray | None = None) -> list[Prediction]:
        """Classify texts (padded to the longest in the batch) and say, per text, which gates opened."""
        if self.kind != "text":
            raise UserError(f"bundle {self.bundle.root} classifies images, not texts; pass image files")
        return self._decode(*self.infer(self.text.encode(list(texts)), thresholds))

    def predict_files(self, paths: list[str | Path]) -> list[Prediction]:
        """Load, resize and classify image files, one at a time as a device would."""
        if self.kind == "text":
            raise UserError(f"bundle {self.bundle.root} classifies texts; pass the texts themselves (or --csv FILE)")
        if self.kind == "array":
            raise UserError(f"bundle {self.bundle.root} classifies arrays; pass .npz files with an array X")
        size = self.bundle.image_size
        return [self.predict(load_image(p, size)[None])[0] for p in paths]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
