"""``bench --device``: the profile's threads, providers and budgets, verdicts and the budget-missed exit status."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.devices import load_profile
from edgeadapt.runtime.verdict import host_mismatch
from tiny_bundle import Tiny

EXIT_BUDGET_MISSED = 3


def write_profile(path: Path, *, latency_ms: float, memory_mb: float = 65536, percentile: int = 90,
                  arch: str | None = None, cores: int | None = None,
                  providers: str = '["CPUExecutionProvider"]') -> Path:
    arch = arch or platform.machine()
    cores = cores or os.cpu_count()
    path.write_text(f"""name = "{path.stem}"
description = "test profile"
[hardware]
arch = "{arch}"
cpu = "test"
cores = {cores}
memory_mb = 4096
sources = ["test"]
[runtime]
threads = 1
execution_providers = {providers}
[budgets]
latency_ms = {latency_ms}
latency_percentile = {percentile}
memory_mb = {memory_mb}
""")
    return path


def bench_json(tiny: Tiny, profile: Path | str, *extra: str):
    proc = run_cli("bench", tiny.bundle, "--device", profile, "--runs", "20", "--warmup", "2",
                   "--min-duration", "0", "--no-cold-start", "--json", "-", *extra)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def test_generous_budgets_exit_zero_with_headline_at_profile_percentile(tiny: Tiny, tmp_path: Path) -> None:
    proc, r = bench_json(tiny, write_profile(tmp_path / "roomy.toml", latency_ms=10_000, percentile=95))
    assert proc.returncode == 0, proc.stderr
    assert r["device"] == "roomy" and r["all_budgets_met"] is True and r["host_matches_device"] is True
    lat = r["budgets"]["latency"]
    assert lat["percentile"] == 95 and lat["measured_ms"] == pytest.approx(r["headline_latency_ms"])
    assert r["latency_ms"]["p90"] <= lat["measured_ms"] <= r["latency_ms"]["p99"] + 1e-9
    assert r["budgets"]["memory"]["measured_mb"] == pytest.approx(r["peak_rss_mb"])
    assert r["threads"] == 1 and r["runs"] == 20


def test_latency_budget_below_measurement_exits_3_and_names_it(tiny: Tiny, tmp_path: Path) -> None:
    proc, r = bench_json(tiny, write_profile(tmp_path / "tight.toml", latency_ms=0.001))
    assert proc.returncode == EXIT_BUDGET_MISSED
    assert r["budgets"]["latency"]["met"] is False and r["budgets"]["memory"]["met"] is True
    assert "budget missed on tight: latency" in proc.stderr and "Traceback" not in proc.stderr


def test_memory_budget_missed_in_table(tiny: Tiny, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "small.toml", latency_ms=10_000, memory_mb=1)
    proc = run_cli("bench", tiny.bundle, "--device", profile, "--quick", "--no-cold-start")
    assert proc.returncode == EXIT_BUDGET_MISSED
    assert "vs budget 1 MB: MISSED" in proc.stdout and "budget missed on small: memory" in proc.stderr


def test_host_mismatch_is_reported(tiny: Tiny, tmp_path: Path) -> None:
    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    profile = write_profile(tmp_path / "elsewhere.toml", latency_ms=10_000, arch=other, cores=(os.cpu_count() or 1) + 7)
    assert len(host_mismatch(load_profile(profile))) == 2
    proc, r = bench_json(tiny, profile)
    assert proc.returncode == 0 and r["host_matches_device"] is False
    assert any("architecture" in m and other in m for m in r["host_mismatch"])
    table = run_cli("bench", tiny.bundle, "--device", profile, "--quick", "--no-cold-start").stdout
    assert "the figures describe this host" in table


def test_unavailable_provider_falls_back_to_cpu_with_warning(tiny: Tiny, tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "gpu.toml", latency_ms=10_000,
                            providers='["NoSuchExecutionProvider", "CPUExecutionProvider"]')
    proc, r = bench_json(tiny, profile)
    assert proc.returncode == 0, proc.stderr
    assert r["provider"] == "CPUExecutionProvider"
    assert any("NoSuchExecutionProvider is not available" in w for w in r["provider_warnings"])


def test_runtime_records_provider_and_still_predicts(tiny: Tiny) -> None:
    rt = Runtime(tiny.bundle, threads=1, providers=["NoSuchExecutionProvider"])
    assert rt.provider == "CPUExecutionProvider" and "falling back to CPUExecutionProvider" in rt.provider_warnings
    images, _ = rt.bundle.samples()
    plain = Runtime(tiny.bundle, threads=1)
    np.testing.assert_allclose(rt.infer(rt.prepare(images[:2]))[0], plain.infer(plain.prepare(images[:2]))[0], atol=1e-5)


def test_unknown_device_is_one_error_line(tiny: Tiny) -> None:
    proc = run_cli("bench", tiny.bundle, "--device", "no-such-board", "--quick")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: unknown device 'no-such-board'")
    assert len(proc.stderr.strip().splitlines()) == 1
