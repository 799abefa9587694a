"""Training under torchrun: two CPU processes (gloo), one run folder, the same result as the metrics say."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from edgeadapt.export.bundle import export_run

from edgeadapt.backbones.bert import write_tiny_bert
from edgeadapt.data.synthetic_text import vocabulary, write_text_dataset

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).parent / "torchrun"
CLI = Path(sys.executable).parent / "edgeadapt"


def test_two_processes_train_one_run(tmp_path: Path) -> None:
    model_dir = write_tiny_bert(tmp_path / "bert", vocabulary(), hidden=32, layers=2, heads=4)
    data = write_text_dataset(tmp_path / "tickets.csv", per_class=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(CLI), "train",
                           "--data", str(data), "--out", str(tmp_path / "run"), "--backbone", "bert",
                           "--backbone-dir", str(model_dir), "--set", "max_length=16", "--epochs", "3", "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "distributed: 2 processes (gloo)" in proc.stderr
    metrics = json.loads(proc.stdout)  # one report: only the first process prints
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == on_disk["processes"] == 2 and len(on_disk["history"]) == 3
    assert on_disk["device"] == "cpu"  # no GPU here: gloo, as the log said
    assert on_disk["heldout_accuracy"] == metrics["heldout_accuracy"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []  # no staging folder left
    manifest = export_run(tmp_path / "run", tmp_path / "bundle", log=lambda m: None)
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4
