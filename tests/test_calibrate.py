"""``devices calibrate``: the reference workload, the local calibrated copy, and estimates on a target."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import Trained, run_cli
from edgeadapt.export.reference_workload import build
from edgeadapt.runtime.calibrate import estimate_on_target
from edgeadapt.runtime.devices import load_profile, local_profiles_dir
from edgeadapt.runtime.host import REFERENCE_PATH
from onnx import numpy_helper
from test_bench_device import write_profile


def test_shipped_reference_workload_is_the_generated_one() -> None:
    shipped, fresh = onnx.load(str(REFERENCE_PATH)), build()
    assert [n.op_type for n in shipped.graph.node] == [n.op_type for n in fresh.graph.node]
    for a, b in zip(shipped.graph.initializer, fresh.graph.initializer):
        assert a.name == b.name
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_calibrate_host_writes_a_valid_local_copy() -> None:
    proc = run_cli("devices", "calibrate", "host", "--runs", "10")
    assert proc.returncode == 0, proc.stderr
    path = Path(os.environ["EDGEADAPT_HOME"]) / "devices" / "host.toml"
    assert path == local_profiles_dir() / "host.toml" and str(path) in proc.stdout
    profile = load_profile(path)
    assert profile.calibration.reference == "mbconv-v1" and profile.calibration.reference_ms > 0
    shown = json.loads(run_cli("devices", "show", "host", "--json").stdout)
    assert shown["calibration"]["reference_ms"] == pytest.approx(profile.calibration.reference_ms)


def test_calibrating_another_device_here_needs_force(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "board.toml", latency_ms=100, arch="riscv64", cores=64)
    proc = run_cli("devices", "calibrate", profile, "--runs", "10")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "this host is not board" in proc.stderr and "--force" in proc.stderr


@pytest.mark.slow
def test_bench_estimates_target_latency_from_both_scores(trained: Trained, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "slowboard.toml", latency_ms=10_000, arch="riscv64", cores=64)
    assert run_cli("devices", "calibrate", "host", "--runs", "10").returncode == 0
    assert run_cli("devices", "calibrate", profile, "--runs", "10", "--force").returncode == 0
    proc = run_cli("bench", trained.bundle, "--device", "slowboard", "--runs", "10", "--min-duration", "0",
                   "--no-cold-start", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    host = load_profile(local_profiles_dir() / "host.toml").calibration.reference_ms
    board = load_profile(local_profiles_dir() / "slowboard.toml").calibration.reference_ms
    est = r["estimated_on_device"]
    assert est["label"] == "estimate" and est["ratio"] == pytest.approx(board / host)
    assert est["estimated_ms"] == pytest.approx(r["headline_latency_ms"] * board / host)


def test_no_estimate_without_both_scores(tmp_path: Path) -> None:
    target = load_profile(write_profile(tmp_path / "plain.toml", latency_ms=10))
    assert estimate_on_target(5.0, None, target) is None


def test_unknown_calibration_field_is_one_clear_line(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "odd.toml", latency_ms=10)
    path.write_text(path.read_text() + '[calibration]\nreference = "mbconv-v1"\nreference_ms = 2\n'
                    'measured = "today"\nonnxruntime = "1"\nscore = 3\n')
    proc = run_cli("devices", "show", path)
    assert proc.returncode == 1 and "unknown field calibration.score" in proc.stderr
