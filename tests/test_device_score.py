"""Device scoring (``devices score``): the reference workload, the local scored copy, old ``[calibration]``
copies, and estimates on a target."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from edgeadapt.export.reference_workload import build
from edgeadapt.runtime.devices import load_profile, local_profiles_dir, to_toml
from edgeadapt.runtime.host import REFERENCE_PATH
from edgeadapt.runtime.scoring import estimate_on_target
from onnx import numpy_helper
from test_bench_device import write_profile
from tiny_bundle import Tiny

SCORE_TABLE = 'reference = "mbconv-v1"\nreference_ms = 2.5\nmeasured = "2026-12-01T10:00:00Z"\nonnxruntime = "1.20.0"\n'


def test_shipped_reference_workload_is_the_generated_one() -> None:
    shipped, fresh = onnx.load(str(REFERENCE_PATH)), build()
    assert [n.op_type for n in shipped.graph.node] == [n.op_type for n in fresh.graph.node]
    for a, b in zip(shipped.graph.initializer, fresh.graph.initializer):
        assert a.name == b.name
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_score_host_writes_a_valid_local_copy() -> None:
    proc = run_cli("devices", "score", "host", "--runs", "10")
    assert proc.returncode == 0, proc.stderr
    path = Path(os.environ["EDGEADAPT_HOME"]) / "devices" / "host.toml"
    assert path == local_profiles_dir() / "host.toml" and str(path) in proc.stdout
    assert "[score]" in path.read_text() and "[calibration]" not in path.read_text()
    profile = load_profile(path)
    assert profile.score.reference == "mbconv-v1" and profile.score.reference_ms > 0
    shown = json.loads(run_cli("devices", "show", "host", "--json").stdout)
    assert shown["score"]["reference_ms"] == pytest.approx(profile.score.reference_ms)


def test_calibrate_is_a_hidden_deprecated_alias_of_score() -> None:
    proc = run_cli("devices", "calibrate", "host", "--runs", "10")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == ["note: 'devices calibrate' is deprecated; it is now 'devices score' "
                                                "(same arguments)"]
    assert load_profile(local_profiles_dir() / "host.toml").score.reference_ms > 0
    listed = run_cli("devices", "--help").stdout
    assert "score" in listed and "calibrate" not in listed


def test_scoring_another_device_here_needs_force(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "board.toml", latency_ms=100, arch="riscv64", cores=64)
    proc = run_cli("devices", "score", profile, "--runs", "10")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "this host is not board" in proc.stderr and "--force" in proc.stderr


def test_old_calibration_table_reads_as_score(tmp_path: Path) -> None:
    """Local copies written before the rename hold ``[calibration]``: read as ``[score]``, written back as it."""
    path = write_profile(tmp_path / "old.toml", latency_ms=10)
    path.write_text(path.read_text() + "[calibration]\n" + SCORE_TABLE)
    profile = load_profile(path)
    assert profile.score.reference == "mbconv-v1" and profile.score.reference_ms == 2.5
    assert profile.score.measured == "2026-12-01T10:00:00Z" and profile.score.onnxruntime == "1.20.0"
    text = to_toml(profile)
    assert "[score]" in text and "[calibration]" not in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_profile(again).score == profile.score


def test_old_and_new_score_tables_together_are_one_clear_line(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "both.toml", latency_ms=10)
    path.write_text(path.read_text() + "[calibration]\n" + SCORE_TABLE + "[score]\n" + SCORE_TABLE)
    proc = run_cli("devices", "show", path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "both [calibration] and [score]" in proc.stderr


@pytest.mark.parametrize("table", ["score", "calibration"])
def test_unknown_score_field_is_one_clear_line_naming_the_table_as_written(tmp_path: Path, table: str) -> None:
    path = write_profile(tmp_path / "odd.toml", latency_ms=10)
    path.write_text(path.read_text() + f"[{table}]\n" + SCORE_TABLE + "extra = 3\n")
    proc = run_cli("devices", "show", path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert f"unknown field {table}.extra" in proc.stderr


def test_old_calibration_table_must_be_a_table(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "flat.toml", latency_ms=10)
    path.write_text('calibration = 3\n' + path.read_text())
    proc = run_cli("devices", "show", path)
    assert proc.returncode == 1 and "calibration must be a table, got 3" in proc.stderr


def test_bench_estimates_target_latency_from_both_scores(tiny: Tiny, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "slowboard.toml", latency_ms=10_000, arch="riscv64", cores=64)
    assert run_cli("devices", "score", "host", "--runs", "10").returncode == 0
    assert run_cli("devices", "score", profile, "--runs", "10", "--force").returncode == 0
    proc = run_cli("bench", tiny.bundle, "--device", "slowboard", "--runs", "10", "--min-duration", "0",
                   "--no-cold-start", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    host = load_profile(local_profiles_dir() / "host.toml").score.reference_ms
    board = load_profile(local_profiles_dir() / "slowboard.toml").score.reference_ms
    est = r["estimated_on_device"]
    assert est["label"] == "estimate" and est["ratio"] == pytest.approx(board / host)
    assert est["estimated_ms"] == pytest.approx(r["headline_latency_ms"] * board / host)


def test_no_estimate_without_both_scores(tmp_path: Path) -> None:
    target = load_profile(write_profile(tmp_path / "plain.toml", latency_ms=10))
    assert estimate_on_target(5.0, None, target) is None
