"""Shared fixtures: a tiny hand-built bundle (``tiny``, no training: the fast tier), one small trained run and
its exported bundle (``trained``: tests that use it are marked slow), plus helpers."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:  # torch is imported lazily so that OMP_NUM_THREADS below applies to it
    import torch
    from tiny_bundle import Tiny

    from edgeadapt.adapters import GatedAdapterModel

# One intra-op thread: on a small shared machine torch's spinning OpenMP pool is many times slower than one
# thread when the cores are busy. Set before torch is imported (test modules import it after this file);
# subprocesses inherit it. Override by exporting OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# scored device copies go to a throw-away folder, never the user's ~/.config/edgeadapt
os.environ["EDGEADAPT_HOME"] = tempfile.mkdtemp(prefix="edgeadapt-test-home-")
atexit.register(shutil.rmtree, os.environ["EDGEADAPT_HOME"], ignore_errors=True)  # one per test session, not left in /tmp
ORT_THREADS = 1

IMAGE_SIZE = 64
GATED_BLOCKS = [2, 4, 6, 7, 9, 10, 12, 13, 14]
# The console script installed beside this interpreter (edgeadapt.cli has no ``__main__``).
CLI = Path(sys.executable).parent / "edgeadapt"


@dataclass(frozen=True)
class Trained:
    """The session's artefacts: the generated data set, a trained run folder and its exported bundle."""

    data: Path
    run: Path
    bundle: Path


def _build(root: Path) -> Trained:
    from edgeadapt.export.bundle import export_run

    from edgeadapt.adapters import GatedAdapterConfig
    from edgeadapt.data.synthetic import write_dataset
    from edgeadapt.train import TrainOptions, run_training

    data, run, bundle = root / "data", root / "run", root / "bundle"
    write_dataset(data, per_class=12, size=80, seed=0)
    run_training(data, run, GatedAdapterConfig(image_size=IMAGE_SIZE, gate_scope="block", budget=0.5),
                 TrainOptions(epochs=2, batch_size=16, seed=0, calibration_samples=32), log=lambda m: None)
    export_run(run, bundle, log=lambda m: None)
    return Trained(data, run, bundle)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A gated bundle built with onnx.helper (3 gates, 8x8 images, 12 samples) and its samples as a labelled
    image folder; tests must not modify it (see ``tiny_copy``)."""
    from tiny_bundle import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny_copy(tiny: Tiny, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may corrupt."""
    return Path(shutil.copytree(tiny.bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train (2 epochs, 64 px, block scope, budget 0.5) and export once; tests must not modify these folders.

    Set EDGEADAPT_TEST_ARTIFACTS to a folder to reuse the artefacts across local runs while developing.
    """
    cached = os.environ.get("EDGEADAPT_TEST_ARTIFACTS")
    if cached:
        root = Path(cached)
        if (root / "bundle" / "manifest.json").exists():
            return Trained(root / "data", root / "run", root / "bundle")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        return _build(root)
    return _build(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def trained_model(trained: Trained) -> GatedAdapterModel:
    """The PyTorch model rebuilt from the run folder (eval mode, calibrated thresholds)."""
    from edgeadapt.checkpoint import load_trained_model

    model, _meta = load_trained_model(trained.run)
    return model


@pytest.fixture(scope="session")
def holdout(trained: Trained) -> tuple[np.ndarray, np.ndarray]:
    """Held-out uint8 images and targets stored in the run folder."""
    from edgeadapt.rundir import RunDir

    return RunDir(trained.run).load_holdout()


@pytest.fixture
def bundle_copy(trained: Trained, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may corrupt."""
    return Path(shutil.copytree(trained.bundle, tmp_path / "bundle"))


def median_thresholds(model: GatedAdapterModel, x: torch.Tensor) -> torch.Tensor:
    """Per-gate thresholds at the median gate logit, set gate by gate so every gate splits ``x`` in half."""
    import torch
    from edgeadapt.runtime.gates import OPEN_ALL

    blocks = model.gated_blocks()
    thr = torch.full((len(blocks),), OPEN_ALL)
    for k, block in enumerate(blocks):
        seen: list[torch.Tensor] = []
        handle = block.gate.register_forward_hook(lambda m, a, out, seen=seen: seen.append(out.detach()))
        try:
            with torch.no_grad():
                model(x, thr)
        finally:
            handle.remove()
        logits = seen[0].flatten().sort().values
        mid = len(logits) // 2
        # gates open where logit > threshold: between the two middle logits exactly half the samples open
        thr[k] = logits[mid] if len(logits) % 2 else (logits[mid - 1] + logits[mid]) / 2
    return thr


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``edgeadapt`` console script (``env``: extra variables); text output captured."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def run_cli_in_process(*args: str | Path) -> subprocess.CompletedProcess:
    """``edgeadapt.cli.main`` in this process, output captured: for tables of error paths, where a fresh
    interpreter would spend seconds importing torch per case. Anything but a clean exit of ``main`` (an uncaught
    exception) propagates and fails the test; ``run_cli`` covers the console script itself."""
    import contextlib
    import io

    from edgeadapt.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [str(CLI), *map(str, args)]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    status = code if isinstance(code, int) else 0 if code is None else 1
    return subprocess.CompletedProcess([str(CLI), *map(str, args)], status,
                                       out.getvalue(), err.getvalue())


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a file in place by inverting one byte (the middle one unless told)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
