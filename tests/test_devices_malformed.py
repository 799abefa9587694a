"""Malformed device profiles: one ``error:`` line naming the file and the field, exit 1, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from edgeadapt.runtime.devices import load_profile

from edgeadapt.errors import UserError

BAD = Path(__file__).parent / "data" / "bad_profiles"

# file -> fragment the message must hold (besides the file name). Each file's first line says what is wrong.
EXPECTED = {
    "syntax_error.toml": "invalid TOML: Invalid value (at line 8",
    "unknown_top_level.toml": "unknown field owner",
    "unknown_hardware_field.toml": "unknown field hardware.gpu",
    "unknown_power_field.toml": "unknown field power.volts",
    "missing_name.toml": "missing required field name",
    "missing_latency.toml": "missing required field budgets.latency_ms",
    "missing_runtime_table.toml": "missing required table [runtime]",
    "negative_latency.toml": "budgets.latency_ms must be a positive number, got -5",
    "zero_cores.toml": "hardware.cores must be a positive integer, got 0",
    "float_cores.toml": "hardware.cores must be a positive integer, got 4.5",
    "string_threads.toml": 'runtime.threads must be a positive integer, got "4"',
    "string_spin_wait.toml": 'runtime.spin_wait must be true or false, got "yes"',
    "bool_memory.toml": "budgets.memory_mb must be a positive number, got true",
    "nan_latency.toml": "budgets.latency_ms must be a positive number, got NaN",
    "percentile_over_100.toml": "budgets.latency_percentile must be a number in (0, 100], got 150",
    "percentile_zero.toml": "budgets.latency_percentile must be a number in (0, 100], got 0",
    "empty_sources.toml": "hardware.sources must be a non-empty list of non-empty strings, got []",
    "sources_not_list.toml": 'hardware.sources must be a non-empty list of non-empty strings, got "https://',
    "providers_not_strings.toml": "runtime.execution_providers must be a non-empty list of non-empty strings, got [1]",
    "hardware_not_table.toml": 'hardware must be a table, got "raspberry"',
    "empty_name.toml": 'name must be a non-empty string, got ""',
}


def test_corpus_matches_table() -> None:
    files = sorted(p.name for p in BAD.glob("*.toml"))
    assert files == sorted(EXPECTED) and len(files) >= 10
    assert all((BAD / f).read_text().startswith("# ") for f in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_profile_rejects(name: str) -> None:
    with pytest.raises(UserError) as info:
        load_profile(BAD / name)
    message = str(info.value)
    assert message.startswith(f"{BAD / name}: ") and EXPECTED[name] in message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_show_rejects(name: str) -> None:
    proc = run_cli("devices", "show", BAD / name)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and name in lines[0] and EXPECTED[name] in lines[0]
    assert proc.returncode == 1 and proc.stdout == ""
