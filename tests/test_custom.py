"""Custom backbones: the user's module and named blocks, NPZ array data, export with one If per named
block, and the array runtime (tests/sensor_backbone.py plays the user's module)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import run_cli, run_cli_in_process
from edgeadapt.export.bundle import export_run
from edgeadapt.export.onnx_graph import count_if_nodes
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.devices import load_profile
from sensor_backbone import vibration_windows

from edgeadapt.adapters import GatedAdapterConfig, create_model
from edgeadapt.checkpoint import load_trained_model
from edgeadapt.errors import UserError
from edgeadapt.train import TrainOptions, run_training

TESTS = Path(__file__).parent
BACKBONE = "module:sensor_backbone:build"


def _config(**kw) -> GatedAdapterConfig:
    return GatedAdapterConfig(**{"backbone": BACKBONE, "blocks": "stage?.*", "input_shape": [3, 128],
                                 "num_classes": 3, **kw})


@pytest.fixture(scope="module")
def sensor(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Trains and exports the sensor model: every test using it is marked slow."""
    root = tmp_path_factory.mktemp("sensor")
    x, y = vibration_windows(per_class=20)
    np.savez(root / "windows.npz", X=x, y=y)
    metrics = run_training(root / "windows.npz", root / "run", _config(input_shape=[]),
                           TrainOptions(epochs=16, batch_size=16, calibration_samples=24), log=lambda m: None)
    manifest = export_run(root / "run", root / "bundle", log=lambda m: None)
    return {"root": root, "npz": root / "windows.npz", "metrics": metrics, "manifest": manifest,
            "bundle": root / "bundle", "run": root / "run"}


def test_named_blocks_are_wrapped_outermost_only() -> None:
    model = create_model(_config())
    assert model.block_names == ["stage1.0", "stage1.1", "stage2.0"]
    assert model.gate_names == ["block00", "block01", "block02"]
    logits, gates = model.eval()(torch.zeros(2, 3, 128))
    assert logits.shape == (2, 3) and gates.shape == (2, 3)


@pytest.mark.parametrize("kw, message", [
    ({"blocks": "layers.*"}, "blocks 'layers.*' matches no submodule; names look like: stem, stage1"),
    ({"blocks": ""}, "a custom backbone needs blocks=PATTERN"),
    ({"backbone": "module:sensor_backbone:shape_changer"}, "gateable blocks must keep their input's shape: stage2.0"),
    ({"backbone": "module:no_such_module:build"}, "cannot load custom backbone"),
    ({"backbone": "module:sensor_backbone"}, "must read module:package.module:function"),
    ({"input_shape": [3, 7, 7]}, "custom backbone failed on an input of shape [2, [3, 7, 7]]"),
])
def test_contract_errors(kw: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        create_model(_config(**kw))
    assert message in str(err.value)


@pytest.mark.slow
def test_adapters_train(sensor: dict) -> None:
    m = sensor["metrics"]
    assert m["heldout_accuracy_all_open"] >= 0.75 and m["heldout_accuracy"] > 0.5  # three states, chance 1/3
    assert 0.0 < m["compute_fraction"] < 1.0  # calibrated to 0.5 on training data; held out it moves
    assert set(m["gate_rates"]) == {"block00", "block01", "block02"}


@pytest.mark.slow
def test_export_has_one_if_per_block_and_parity(sensor: dict) -> None:
    manifest = sensor["manifest"]
    assert manifest["input"] == {"kind": "array", "name": "input", "shape": ["N", 3, 128], "dtype": "float32"}
    assert count_if_nodes(onnx.load(str(sensor["bundle"] / "model.onnx"))) == 3
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4


@pytest.mark.slow
def test_runtime_matches_pytorch(sensor: dict) -> None:
    model, _ = load_trained_model(sensor["run"])
    x, _ = vibration_windows(per_class=3, seed=7)
    rt = Runtime(sensor["bundle"], threads=1)
    logits, gates = rt.infer(x)
    with torch.no_grad():
        ref_logits, ref_gates = model(torch.from_numpy(x))
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4)
    assert np.array_equal(gates, ref_gates.numpy() > 0.5)
    with pytest.raises(UserError, match=r"input must be float32 of shape \[N, 3, 128\]"):
        rt.infer(x[:, :2])


@pytest.mark.slow
def test_run_and_bench_cli_on_npz(sensor: dict, tmp_path: Path) -> None:
    """The bundle runs without the user's module: the subprocess has no PYTHONPATH to it."""
    res = run_cli("run", sensor["bundle"], sensor["npz"], "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 60 and rows[0]["input"].endswith("windows.npz[0]")
    res = run_cli("bench", sensor["bundle"], "--data", sensor["npz"], "--runs", "10", "--no-cold-start",
                  "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    bench = json.loads((tmp_path / "b.json").read_text())
    assert bench["inputs"] == 60 and bench["accuracy"] is not None


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((10, 4))}, "needs arrays named X and y, found X"),
    ({"X": np.zeros((10, 4)), "y": np.zeros(9)}, "X must be [N, ...] and y [N]"),
    ({"X": np.zeros((12, 4)), "y": np.array([0] * 10 + [1] * 2)}, "too few rows for label 1 (2)"),
    ({"X": np.full((12, 4), np.nan), "y": np.array([0, 1] * 6)}, "X must hold finite numbers"),
    ({"X": np.array([{"a": 1}] * 12, dtype=object), "y": np.array([0, 1] * 6)}, "not a readable .npz without pickled"),
])
def test_bad_npz_is_one_line(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    # in process (tests/ is on sys.path, so the backbone module imports): a table of cases, no torch import each
    res = run_cli_in_process("train", "--data", tmp_path / "bad.npz", "--out", tmp_path / "run", "--backbone", BACKBONE,
                             "--set", "blocks=stage?.*")
    assert res.returncode == 1 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_export_for_a_device_times_the_stored_rows(sensor: dict, tmp_path: Path) -> None:
    from test_bench_device import write_profile

    profile = write_profile(tmp_path / "roomy.toml", latency_ms=10_000)
    manifest = export_run(sensor["run"], tmp_path / "bundle", device=load_profile(profile), log=lambda m: None)
    fit = manifest["device_fit"]
    assert fit["device"] == "roomy" and len(fit["measured"]) >= 2
    assert all(r["expected_latency_ms"] > 0 for r in fit["measured"])
    assert fit["chosen"]["heldout_accuracy"] == max(r["heldout_accuracy"] for r in fit["measured"])
    assert all(g["threshold"] == pytest.approx(fit["chosen"]["threshold"]) for g in manifest["gates"])
    logits, _ = Runtime(tmp_path / "bundle", threads=1).infer(vibration_windows(per_class=2, seed=3)[0])
    assert logits.shape == (6, 3)
