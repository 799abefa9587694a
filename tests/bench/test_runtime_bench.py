"""Batch-1 latency of the fixture bundle, gated vs every gate open (pytest-benchmark; skipped by default).

Run with: python -m pytest tests/bench -o addopts="" --benchmark-only
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ORT_THREADS, Trained
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.gates import OPEN_ALL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rt(trained: Trained) -> Runtime:
    return Runtime(trained.bundle, threads=ORT_THREADS)


@pytest.fixture(scope="module")
def x(rt: Runtime) -> np.ndarray:
    images, _ = rt.bundle.samples()
    return rt.prepare(images[:1])


@pytest.mark.benchmark(group="runtime-batch1")
def test_gated_inference(benchmark, rt: Runtime, x: np.ndarray) -> None:
    logits, gates = benchmark(rt.infer, x)
    assert logits.shape == (1, len(rt.bundle.labels)) and gates.shape == (1, 9)


@pytest.mark.benchmark(group="runtime-batch1")
def test_all_open_inference(benchmark, rt: Runtime, x: np.ndarray) -> None:
    logits, gates = benchmark(rt.infer, x, np.full_like(rt.thresholds, OPEN_ALL))
    assert logits.shape == (1, len(rt.bundle.labels)) and gates.all()
