"""The device side (runtime, bench, ``run``/``bench`` commands) works where torch and onnx cannot be imported
(on the tiny bundle: the runtime reads any bundle of the format alike)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from edgeadapt.runtime.bundle import load_bundle
from PIL import Image
from tiny_bundle import GATES, Tiny

CHILD = r"""
import contextlib, io, json, sys

BLOCKED = {"torch", "onnx", "onnxscript"}


class BlockTraining:
    '''A meta-path finder that makes the workstation-only packages unimportable.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, BlockTraining())
bundle, image = sys.argv[1], sys.argv[2]
report = {}
try:
    import torch  # noqa: F401
    report["torch_import"] = "succeeded"
except ImportError:
    report["torch_import"] = "blocked"

from edgeadapt.runtime import Runtime
from edgeadapt.runtime.bench import run_bench

rt = Runtime(bundle, threads=1)
images, _ = rt.bundle.samples()
report["predict"] = [p.to_dict() for p in rt.predict(images[:3])]
bench = run_bench(bundle, runs=5, warmup=1, threads=1, measure_cold_start=False)
report["bench"] = {"p50": bench["latency_ms"]["p50"], "gate_rates": bench["gate_rates"]}

from edgeadapt.cli import main


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["edgeadapt", *argv]
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


report["run"] = cli(["run", bundle, image, "--json", "--threads", "1"])
report["bench_cli"] = cli(["bench", bundle, "--runs", "5", "--warmup", "1", "--threads", "1", "--no-cold-start",
                           "--json", "-"])
report["train_cli"] = cli(["train", "--data", "nowhere", "--out", "nothing"])
report["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> dict:
    images, _ = load_bundle(tiny.bundle).samples()
    image = tmp_path_factory.mktemp("no_torch") / "sample.png"
    Image.fromarray(images[0]).save(image)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tiny.bundle), str(image)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_torch_really_was_blocked(report: dict) -> None:
    assert report["torch_import"] == "blocked"
    assert report["loaded"] == []


def test_runtime_predicts_without_torch(report: dict, tiny: Tiny) -> None:
    labels = load_bundle(tiny.bundle).labels
    assert len(report["predict"]) == 3
    assert all(p["label"] in labels and 0 < p["score"] <= 1 and len(p["gates"]) == len(GATES) for p in report["predict"])


def test_bench_runs_without_torch(report: dict) -> None:
    assert report["bench"]["p50"] > 0
    assert len(report["bench"]["gate_rates"]) == len(GATES)


def test_run_command_without_torch(report: dict, tiny: Tiny) -> None:
    run = report["run"]
    assert run["code"] == 0, run["stderr"]
    rows = [json.loads(line) for line in run["stdout"].splitlines()]
    assert len(rows) == 1 and rows[0]["input"].endswith("sample.png")
    assert rows[0]["label"] == report["predict"][0]["label"]
    assert abs(rows[0]["score"] - report["predict"][0]["score"]) <= 1e-6


def test_bench_command_without_torch(report: dict) -> None:
    bench = report["bench_cli"]
    assert bench["code"] == 0, bench["stderr"]
    result = json.loads(bench["stdout"])
    assert result["runs"] == 5 and "cold_start_ms" not in result
    assert result["latency_ms"]["p50"] > 0
    host = result["host"]  # the probe ran once per turn of 20 inputs: one turn here
    assert host["probes"] == 1 and host["reference_ms"]["p50"] > 0 and host["spread"] == 1.0 and host["steady"]


def test_training_command_explains_the_missing_extra(report: dict) -> None:
    train = report["train_cli"]
    assert train["code"] == 1
    assert train["stderr"].strip() == ("error: this command needs the training extra (onnx is missing): "
                                       "pip install 'edgeadapt[train]'")
