"""Loading a damaged bundle fails with one clear UserError naming the problem (on copies of the tiny bundle)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ORT_THREADS, flip_byte
from edgeadapt.runtime import Runtime, load_bundle
from tiny_bundle import SIZE

from edgeadapt.errors import UserError


def _rewrite_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_intact_bundle_loads(tiny_copy: Path) -> None:
    bundle = load_bundle(tiny_copy)
    assert bundle.model_path == tiny_copy / "model.onnx"
    images, targets = bundle.samples()
    assert len(images) == len(targets) > 0


def test_missing_bundle_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist; create one with 'edgeadapt export"):
        load_bundle(tmp_path / "nope")


def test_missing_model(tiny_copy: Path) -> None:
    (tiny_copy / "model.onnx").unlink()
    with pytest.raises(UserError, match="is missing model.onnx; re-export the bundle"):
        load_bundle(tiny_copy)


def test_missing_samples(tiny_copy: Path) -> None:
    (tiny_copy / "samples.npz").unlink()
    with pytest.raises(UserError, match="is missing samples.npz"):
        load_bundle(tiny_copy)


def test_tampered_model_fails_the_hash_check(tiny_copy: Path) -> None:
    flip_byte(tiny_copy / "model.onnx")
    with pytest.raises(UserError, match="does not match its sha256 in manifest.json") as info:
        Runtime(tiny_copy, threads=ORT_THREADS)
    assert "model.onnx" in str(info.value)


def test_tampered_model_loads_only_without_verification(tiny_copy: Path) -> None:
    flip_byte(tiny_copy / "model.onnx")
    assert load_bundle(tiny_copy, verify=False).labels  # the manifest itself is fine


def test_missing_manifest(tiny_copy: Path) -> None:
    (tiny_copy / "manifest.json").unlink()
    with pytest.raises(UserError, match="has no manifest.json; re-export it"):
        load_bundle(tiny_copy)


def test_manifest_not_json(tiny_copy: Path) -> None:
    (tiny_copy / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json is not valid JSON"):
        load_bundle(tiny_copy)


def test_manifest_of_another_format(tiny_copy: Path) -> None:
    _rewrite_manifest(tiny_copy, lambda m: m.update(format_version=99))
    with pytest.raises(UserError, match="is not an edgeadapt bundle manifest of format 1"):
        load_bundle(tiny_copy)


def test_manifest_listing_no_model(tiny_copy: Path) -> None:
    _rewrite_manifest(tiny_copy, lambda m: m["files"].pop("model.onnx"))
    with pytest.raises(UserError, match="lists no model.onnx"):
        load_bundle(tiny_copy)


def test_corrupt_model_with_matching_hash_fails_in_onnxruntime(tiny_copy: Path) -> None:
    model = tiny_copy / "model.onnx"
    model.write_bytes(b"this is not an onnx protobuf" * 100)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    _rewrite_manifest(tiny_copy, lambda m: m["files"].update({"model.onnx": digest}))
    load_bundle(tiny_copy)  # the hash now matches
    with pytest.raises(UserError, match="could not be loaded by onnxruntime") as info:
        Runtime(tiny_copy, threads=ORT_THREADS)
    assert "re-export the bundle" in str(info.value)


def test_bundle_without_samples_file(tiny_copy: Path) -> None:
    (tiny_copy / "samples.npz").unlink()
    _rewrite_manifest(tiny_copy, lambda m: m["files"].pop("samples.npz"))
    bundle = load_bundle(tiny_copy)
    with pytest.raises(UserError, match="holds no samples; pass --data"):
        bundle.samples()
    rt = Runtime(bundle, threads=ORT_THREADS)  # the model still runs
    assert len(rt.predict(np.zeros((1, SIZE, SIZE, 3), np.uint8))) == 1
