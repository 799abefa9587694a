"""The device runtime: predictions, agreement with a numpy reference and with PyTorch, threshold overrides, input
checks. Most run on the tiny hand-built bundle; agreement with PyTorch needs the trained one (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ORT_THREADS, Trained
from edgeadapt.runtime import Prediction, Runtime, load_bundle
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from edgeadapt.runtime.preprocess import normalize
from PIL import Image
from tiny_bundle import SIZE, Tiny, reference

from edgeadapt.errors import UserError


@pytest.fixture(scope="module")
def rt(tiny: Tiny) -> Runtime:
    return Runtime(tiny.bundle, threads=ORT_THREADS)


@pytest.fixture(scope="module")
def samples(rt: Runtime) -> tuple[np.ndarray, np.ndarray]:
    return rt.bundle.samples()


def test_bundle_properties_come_from_the_manifest(rt: Runtime, tiny: Tiny) -> None:
    manifest = json.loads((tiny.bundle / "manifest.json").read_text())
    assert rt.bundle.labels == manifest["labels"]
    assert rt.bundle.gate_names == [g["name"] for g in manifest["gates"]]
    assert rt.bundle.image_size == SIZE
    np.testing.assert_array_equal(rt.thresholds, [g["threshold"] for g in manifest["gates"]])


def test_predict_returns_manifest_labels_and_probabilities(rt: Runtime, samples) -> None:
    images, _ = samples
    preds = rt.predict(images)
    assert len(preds) == len(images)
    k = len(rt.bundle.labels)
    for p in preds:
        assert isinstance(p, Prediction)
        assert p.label in rt.bundle.labels
        assert 1.0 / k - 1e-6 <= p.score <= 1.0  # the top softmax probability
        assert list(p.gates) == rt.bundle.gate_names and all(isinstance(v, bool) for v in p.gates.values())
        assert set(p.to_dict()) == {"label", "score", "gates"}


def test_scores_are_the_softmax_of_the_logits(rt: Runtime, samples) -> None:
    images, _ = samples
    logits, _ = rt.infer(rt.prepare(images[:5]))
    z = np.exp(logits - logits.max(1, keepdims=True))
    probs = z / z.sum(1, keepdims=True)
    preds = rt.predict(images[:5])
    np.testing.assert_allclose([p.score for p in preds], probs.max(1), rtol=1e-6)
    assert [p.label for p in preds] == [rt.bundle.labels[i] for i in probs.argmax(1)]


@pytest.mark.parametrize("threshold", [None, OPEN_ALL, CLOSE_ALL, -0.5, 0.4])
def test_predictions_agree_with_the_numpy_reference(rt: Runtime, samples, tiny: Tiny, threshold) -> None:
    """Logits and gates equal the graph's function computed in numpy, at the deployed and at other thresholds."""
    images, _ = samples
    thr = None if threshold is None else np.full(len(rt.bundle.gate_names), threshold, np.float32)
    logits, gates = rt.infer(rt.prepare(images), thr)
    ref_logits, ref_gates = reference(tiny.weights, normalize(images, rt.mean, rt.std), rt.thresholds if thr is None else thr)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_array_equal(gates, ref_gates)
    preds = rt.predict(images, thresholds=thr)
    assert [p.label for p in preds] == [rt.bundle.labels[i] for i in ref_logits.argmax(1)]


@pytest.mark.slow
def test_predictions_agree_with_pytorch(trained: Trained, trained_model) -> None:
    import torch

    rt = Runtime(trained.bundle, threads=ORT_THREADS)
    images, _ = rt.bundle.samples()
    x = normalize(images, rt.mean, rt.std)
    with torch.no_grad():
        logits, gates = trained_model(torch.from_numpy(x))
    preds = rt.predict(images)
    assert [p.label for p in preds] == [rt.bundle.labels[i] for i in logits.argmax(1).tolist()]
    np.testing.assert_array_equal([list(p.gates.values()) for p in preds], gates.numpy() > 0.5)


@pytest.mark.parametrize("threshold, expected", [(OPEN_ALL, True), (CLOSE_ALL, False)])
def test_threshold_override_forces_every_gate(rt: Runtime, samples, threshold: float, expected: bool) -> None:
    images, _ = samples
    preds = rt.predict(images[:6], thresholds=np.full(len(rt.bundle.gate_names), threshold, np.float32))
    assert all(v is expected for p in preds for v in p.gates.values())


def test_each_gate_decides_per_sample(rt: Runtime, samples) -> None:
    """The tiny bundle's gates each open for exactly half its samples at the deployed thresholds, and a sample's
    gates are the same alone as in the batch."""
    images, _ = samples
    x = rt.prepare(images)
    _, gates = rt.infer(x)
    np.testing.assert_array_equal(gates.sum(0), len(images) // 2)
    alone = np.concatenate([rt.infer(x[i:i + 1])[1] for i in range(len(images))])
    np.testing.assert_array_equal(alone, gates)


@pytest.mark.slow
def test_deployed_gates_are_neither_all_open_nor_all_closed(trained: Trained) -> None:
    """Calibrated at budget 0.5, the deployed gates skip some blocks and run others."""
    rt = Runtime(trained.bundle, threads=ORT_THREADS)
    images, _ = rt.bundle.samples()
    _, gates = rt.infer(rt.prepare(images))
    assert 0.0 < gates.mean() < 1.0


def test_predict_files_matches_predict(rt: Runtime, samples, tmp_path: Path) -> None:
    images, _ = samples
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    from_files = rt.predict_files(paths)
    direct = rt.predict(images[:3])
    assert [p.label for p in from_files] == [p.label for p in direct]
    np.testing.assert_allclose([p.score for p in from_files], [p.score for p in direct], rtol=1e-6)
    assert [p.gates for p in from_files] == [p.gates for p in direct]


@pytest.mark.parametrize("x", [
    np.zeros((1, 3, SIZE, SIZE), np.float64),
    np.zeros((1, 3, 32, 32), np.float32),
    np.zeros((3, SIZE, SIZE), np.float32),
    np.zeros((1, SIZE, SIZE, 3), np.float32),
])
def test_infer_rejects_wrong_dtype_or_shape(rt: Runtime, x: np.ndarray) -> None:
    with pytest.raises(UserError, match=rf"input must be float32 of shape \[N, 3, {SIZE}, {SIZE}\], got"):
        rt.infer(x)


@pytest.mark.parametrize("images", [
    np.zeros((1, SIZE, SIZE, 3), np.float32),
    np.zeros((1, 32, 32, 3), np.uint8),
    np.zeros((SIZE, SIZE, 3), np.uint8),
])
def test_predict_rejects_wrong_image_arrays(rt: Runtime, images: np.ndarray) -> None:
    with pytest.raises(UserError, match=rf"images must be uint8 of shape \[N, {SIZE}, {SIZE}, 3\], got"):
        rt.predict(images)


def test_runtime_accepts_a_loaded_bundle(tiny: Tiny, samples) -> None:
    bundle = load_bundle(tiny.bundle)
    images, _ = samples
    a = Runtime(bundle, threads=ORT_THREADS).predict(images[:2])
    b = Runtime(tiny.bundle, threads=ORT_THREADS).predict(images[:2])
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
