"""Every measured result names its command, code and host (runtime/provenance.py); fast, nothing trains."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from edgeadapt.runtime import provenance as prov

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_has_every_key_and_reads_this_checkout() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    p = prov.provenance(["edgeadapt", "bench", "b", "--json", "-"])
    assert set(p) == {"command", "edgeadapt_version", "commit", "dirty", "date", "cpu", "cores", "python",
                      "onnxruntime"}
    assert p["command"] == ["edgeadapt", "bench", "b", "--json", "-"]
    assert before <= datetime.fromisoformat(p["date"]) <= datetime.now(timezone.utc)
    assert datetime.fromisoformat(p["date"]).utcoffset().total_seconds() == 0
    assert p["cores"] == os.cpu_count() and p["python"] == platform.python_version()
    import onnxruntime

    assert p["onnxruntime"] == onnxruntime.__version__
    assert isinstance(p["cpu"], str) and p["cpu"]
    json.dumps(p)  # goes into result files as it is
    if shutil.which("git") and (ROOT / ".git").exists() and prov.SOURCE_ROOT == ROOT:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert p["commit"] == head and isinstance(p["dirty"], bool)


def test_outside_a_checkout_commit_and_dirty_are_null(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(prov, "SOURCE_ROOT", tmp_path)  # an installed package: no .git beside it
    p = prov.provenance(["edgeadapt", "demo"])
    assert p["commit"] is None and p["dirty"] is None


@pytest.mark.parametrize("text, model", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) N100\n\nprocessor\t: 1\nmodel name\t: Intel(R) N100\n",
     "Intel(R) N100"),
    ("processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
     "Raspberry Pi 5 Model B Rev 1.0"),
])
def test_cpu_model_from_cpuinfo(tmp_path: Path, text: str, model: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert prov.cpu_model(cpuinfo) == model


def test_cpu_model_without_cpuinfo_falls_back_to_platform(tmp_path: Path) -> None:
    assert prov.cpu_model(tmp_path / "missing") == (platform.processor() or platform.machine() or "unknown")


def test_command_line_reads_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/edgeadapt", "sweep", "--data", "d"])
    assert prov.command_line() == ["edgeadapt", "sweep", "--data", "d"]
    monkeypatch.setattr(sys, "argv", ["script.py", "x"])
    assert prov.command_line() == ["script.py", "x"]


def test_provenance_imports_no_torch() -> None:
    code = ("import sys; import edgeadapt.runtime.provenance as p; p.provenance(['x']); "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
