"""Where a measured result came from: the command, the code (version and commit) and the host it ran on.

Every result that a figure in the docs is rendered from (bench, sweep, the demo's summary) carries this object, so
a table can always name its command, commit, date and CPU. Standard library only, plus onnxruntime's version.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# runtime/ in a source checkout (editable install): the repository root holds pyproject.toml and .git
SOURCE_ROOT = Path(__file__).resolve().parents[1]
CPUINFO = Path("/proc/cpuinfo")
CPU_KEYS = ("model name", "Model", "Hardware", "cpu model")  # x86, Raspberry Pi, other Arm boards, MIPS and such


def provenance(command: list[str]) -> dict:
    """The command that produced a result and the code and host it ran on (see the module docstring)."""
    commit = _git(["rev-parse", "HEAD"])
    dirty = None if commit is None else bool(_git(["status", "--porcelain", "--untracked-files=no"]))
    return {
        "command": list(command),
        "edgeadapt_version": _version("edgeadapt"),
        "commit": commit,
        "dirty": dirty,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": _onnxruntime_version(),
    }


def command_line() -> list[str]:
    """This process's command as a user would type it: ``edgeadapt ...`` when run through the entry point."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "edgeadapt":
        return ["edgeadapt", *argv[1:]]
    return argv


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, else what ``platform`` says."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), value.strip())
    for key in CPU_KEYS:
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def _git(args: list[str]) -> str | None:
    """One git answer about the source checkout this code runs from; None outside one or without git."""
    if not (SOURCE_ROOT / ".git").exists() or not (SOURCE_ROOT / "pyproject.toml").is_file():
        return None
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return getattr(onnxruntime, "__version__", None)
