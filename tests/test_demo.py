"""The demo job end to end, shrunk (fewer images, smaller size, one epoch) so it fits the test suite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgeadapt.runtime.bundle import load_bundle

from edgeadapt import demo
from edgeadapt.errors import UserError

pytestmark = pytest.mark.slow


def test_demo_writes_run_bundle_and_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "PER_CLASS", 6)
    monkeypatch.setattr(demo, "IMAGE_SIZE", 64)
    monkeypatch.setattr(demo, "EPOCHS", 1)
    monkeypatch.setattr(demo, "BENCH_RUNS", 5)
    out = tmp_path / "demo"
    summary = demo.run_demo(out, log=lambda m: None)
    bench = json.loads((out / "bench.json").read_text())
    assert summary["saving"] == pytest.approx(1 - bench["latency_ms"]["p50"] / bench["all_open_latency_ms"]["p50"])
    assert summary["p50_ms"] == bench["latency_ms"]["p50"]
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert summary["heldout_accuracy"] == metrics["heldout_accuracy"]
    bundle = load_bundle(out / "bundle")
    assert len(bundle.gate_names) == 9 and bundle.image_size == 64
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(demo.CLASSES)
    assert "saving" in summary["report"] and "held-out accuracy" in summary["report"]
    with pytest.raises(UserError, match="--force"):
        demo.run_demo(out, log=lambda m: None)
