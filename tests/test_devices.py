"""Device profiles: every built-in loads, host matches this machine, names and paths resolve, the CLI lists them."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from edgeadapt.runtime.devices import (
    DeviceProfile,
    builtin_profiles_dir,
    host_profile,
    list_profiles,
    load_profile,
    resolve_profile,
)

from edgeadapt.errors import UserError

BUILTIN = ["intel-n100", "jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5", "x86-64-server"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profile_loads(name: str) -> None:
    profile = load_profile(builtin_profiles_dir() / f"{name}.toml")
    assert profile.name == name
    assert profile.hardware.cores > 0 and profile.runtime.threads > 0
    assert all(src.startswith("https://") for src in profile.hardware.sources)
    assert profile.runtime.execution_providers[-1] == "CPUExecutionProvider"
    assert 0 < profile.budgets.latency_percentile <= 100


def test_builtin_dir_holds_exactly_the_documented_profiles() -> None:
    assert sorted(p.stem for p in builtin_profiles_dir().glob("*.toml")) == BUILTIN


def test_jetson_prefers_tensorrt_then_cuda() -> None:
    providers = resolve_profile("jetson-orin-nano").runtime.execution_providers
    assert providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def test_host_profile_matches_this_machine() -> None:
    host = host_profile()
    assert host.name == "host" and host.path is None
    assert host.hardware.cores == os.cpu_count() == host.runtime.threads
    assert host.hardware.memory_mb > 0
    assert host.budgets.memory_mb == host.hardware.memory_mb // 2
    assert host.hardware.sources == ("derived at run time from this machine",)


def test_list_profiles_is_builtins_then_host() -> None:
    assert [p.name for p in list_profiles()] == [*BUILTIN, "host"]


def test_resolve_by_name_host_and_path(tmp_path: Path) -> None:
    assert resolve_profile("raspberry-pi-4").description == "Raspberry Pi 4 Model B, 4 GB"
    assert resolve_profile("host").name == "host"
    mine = Path(shutil.copy(builtin_profiles_dir() / "raspberry-pi-5.toml", tmp_path / "line-3.toml"))
    profile = resolve_profile(str(mine))
    assert isinstance(profile, DeviceProfile) and profile.path == mine


def test_resolve_unknown_name_lists_known_names() -> None:
    with pytest.raises(UserError, match="unknown device 'pi-9'") as info:
        resolve_profile("pi-9")
    assert all(name in str(info.value) for name in [*BUILTIN, "host"])


def test_resolve_missing_path() -> None:
    with pytest.raises(UserError, match="no such device profile file"):
        resolve_profile("nowhere/line-3.toml")


def test_cli_list_json() -> None:
    proc = run_cli("devices", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    profiles = json.loads(proc.stdout)
    assert len(profiles) >= 6
    assert {p["name"] for p in profiles} >= {*BUILTIN, "host"}
    for p in profiles:
        assert p["hardware"]["sources"] and all(isinstance(s, str) and s for s in p["hardware"]["sources"])
        assert set(p) == {"name", "description", "hardware", "runtime", "budgets", "power", "path", "score"}


def test_cli_list_table() -> None:
    proc = run_cli("devices", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "NAME" and len(lines) == len(BUILTIN) + 2
    assert "50 ms @ p90" in next(line for line in lines if line.startswith("raspberry-pi-4 "))


def test_cli_show_name_and_json() -> None:
    proc = run_cli("devices", "show", "jetson-orin-nano")
    assert proc.returncode == 0, proc.stderr
    for text in ("NVIDIA Jetson Orin Nano", "TensorrtExecutionProvider", "latency_percentile", "watts", "https://"):
        assert text in proc.stdout
    data = json.loads(run_cli("devices", "show", "raspberry-pi-4", "--json").stdout)
    assert data["budgets"] == {"latency_ms": 50, "latency_percentile": 90, "memory_mb": 512}
    assert data["power"] is None


def test_cli_show_unknown_is_one_error_line() -> None:
    proc = run_cli("devices", "show", "pi-9")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: unknown device 'pi-9'")
