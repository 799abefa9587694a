"""Device profiles: hardware facts, runtime settings and latency/memory budgets for one target device.

Profiles are TOML files (built-ins ship as ``edgeadapt.devices``); ``host`` is derived from this machine.
Every validation failure is one ``UserError`` line naming the file and the field. No torch, no onnx.
"""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import UserError

HOST = "host"
HOST_SOURCE = "derived at run time from this machine"

# table ("" is the top level) -> field -> (kind, required). Kinds are checked by _check_value.
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "": {"name": ("str", True), "description": ("str", True), "hardware": ("table", True),
         "runtime": ("table", True), "budgets": ("table", True), "power": ("table", False),
         "score": ("table", False)},
    "hardware": {"arch": ("str", True), "cpu": ("str", True), "cores": ("int", True),
                 "memory_mb": ("number", True), "sources": ("strlist", True)},
    "runtime": {"threads": ("int", True), "execution_providers": ("strlist", True), "graph": ("graph", False),
                "spin_wait": ("bool", False)},
    "budgets": {"latency_ms": ("number", True), "latency_percentile": ("percent", True), "memory_mb": ("number", True)},
    "power": {"watts": ("number", True)},
    # written by `edgeadapt devices score` into a local copy of the profile
    "score": {"reference": ("str", True), "reference_ms": ("number", True), "measured": ("str", True),
              "onnxruntime": ("str", True)},
}
# old table name -> its name now; read (never written) so that local copies written before the rename still load
RENAMED_TABLES = {"calibration": "score"}
TABLES = ("hardware", "runtime", "budgets", "power", "score")


@dataclass(frozen=True)
class Hardware:
    """Facts about the device, each traceable to a public source."""

    arch: str
    cpu: str
    cores: int
    memory_mb: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeSettings:
    """How onnxruntime should run on the device."""

    threads: int
    execution_providers: tuple[str, ...]
    graph: str = "gated"  # "dense" where conditionals cost more than they save (e.g. a GPU provider)
    spin_wait: bool = True  # idle threads spin for the next operator (fastest); false on a CPU shared with other work


@dataclass(frozen=True)
class Budgets:
    """What the user requires of a model on this device (choices, not facts)."""

    latency_ms: float
    latency_percentile: float
    memory_mb: float


@dataclass(frozen=True)
class Power:
    """Average draw under load, for energy estimates."""

    watts: float


@dataclass(frozen=True)
class DeviceScore:
    """The reference workload's median latency measured on the device itself (``edgeadapt devices score``)."""

    reference: str
    reference_ms: float
    measured: str
    onnxruntime: str


@dataclass(frozen=True)
class DeviceProfile:
    """One target device; ``path`` is the TOML file it came from (None for ``host``)."""

    name: str
    description: str
    hardware: Hardware
    runtime: RuntimeSettings
    budgets: Budgets
    power: Power | None
    path: Path | None
    score: DeviceScore | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict in the TOML layout, plus ``path``."""
        data = asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data


def builtin_profiles_dir() -> Path:
    """The folder of built-in ``*.toml`` profiles, wherever the package is installed."""
    return Path(str(files("edgeadapt.devices")))


def load_profile(path: str | Path) -> DeviceProfile:
    """Parse and validate one profile file; any problem is a one-line UserError naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such device profile file")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: invalid TOML: {_one_line(str(exc))}") from None
    return _build(data, str(path), path)


def host_profile() -> DeviceProfile:
    """A profile of this machine with generous budgets, for trying things out before a real target exists."""
    memory_mb = _host_memory_mb()
    cores = os.cpu_count() or 1
    data = {
        "name": HOST,
        "description": "this machine, derived at run time",
        "hardware": {"arch": platform.machine() or "unknown", "cpu": _host_cpu(), "cores": cores,
                     "memory_mb": memory_mb, "sources": [HOST_SOURCE]},
        "runtime": {"threads": cores, "execution_providers": ["CPUExecutionProvider"]},
        "budgets": {"latency_ms": 1000, "latency_percentile": 90, "memory_mb": max(1, memory_mb // 2)},
    }
    return _build(data, HOST, None)


def local_profiles_dir() -> Path:
    """Where scored copies live: ``$EDGEADAPT_HOME/devices`` or ``~/.config/edgeadapt/devices``."""
    home = os.environ.get("EDGEADAPT_HOME")
    return (Path(home) if home else Path.home() / ".config" / "edgeadapt") / "devices"


def to_toml(profile: DeviceProfile) -> str:
    """The profile as TOML in the documented layout (only strings, numbers and string lists occur)."""
    data = profile.to_dict()
    lines = [f"name = {json.dumps(data['name'])}", f"description = {json.dumps(data['description'])}"]
    for table in TABLES:
        if data.get(table):
            lines.append(f"\n[{table}]")
            lines += [f"{key} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for key, v in data[table].items()]
    return "\n".join(lines) + "\n"


def list_profiles() -> list[DeviceProfile]:
    """Every built-in profile (sorted by name) followed by ``host``."""
    return [load_profile(p) for p in sorted(builtin_profiles_dir().glob("*.toml"))] + [host_profile()]


def resolve_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in name, ``host``, or a path to a ``.toml`` file."""
    text = str(name_or_path)
    local = local_profiles_dir() / f"{text}.toml"
    if "/" not in text and os.sep not in text and local.is_file():
        return load_profile(local)
    if text == HOST:
        return host_profile()
    builtin = builtin_profiles_dir() / f"{text}.toml"
    if "/" not in text and os.sep not in text and builtin.is_file():
        return load_profile(builtin)
    if text.endswith(".toml") or Path(text).exists():
        return load_profile(text)
    known = ", ".join(_builtin_names() + [HOST])
    raise UserError(f"unknown device {text!r}; known devices: {known} (or pass a path to a .toml file)")


def format_table(profiles: list[DeviceProfile]) -> str:
    """One line per profile, for ``edgeadapt devices list``."""
    header = ("NAME", "DESCRIPTION", "ARCH", "CORES", "MEMORY", "LATENCY BUDGET", "MEMORY BUDGET")
    rows = [header] + [(p.name, p.description, p.hardware.arch, str(p.hardware.cores), f"{_num(p.hardware.memory_mb)} MB",
                        f"{_num(p.budgets.latency_ms)} ms @ p{_num(p.budgets.latency_percentile)}",
                        f"{_num(p.budgets.memory_mb)} MB") for p in profiles]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def format_profile(profile: DeviceProfile) -> str:
    """Every field of one profile, readable, for ``edgeadapt devices show``."""
    lines = [f"{profile.name}: {profile.description}", f"file: {profile.path or HOST_SOURCE}"]
    for table in TABLES:
        section = getattr(profile, table)
        if section is None:
            continue
        lines.append(f"[{table}]")
        for key, value in asdict(section).items():
            if isinstance(value, tuple):
                value = "\n".join([value[0]] + [" " * 23 + v for v in value[1:]])
            lines.append(f"  {key:<20} {_num(value) if isinstance(value, float) else value}")
    return "\n".join(lines)


def _build(data: dict[str, Any], where: str, path: Path | None) -> DeviceProfile:
    data = _migrate(data, where)
    _check_table(data, "", where)
    for table in TABLES:
        if table in data:
            _check_table(data[table], table, where)
    hw, rt = data["hardware"], data["runtime"]
    return DeviceProfile(
        name=data["name"], description=data["description"],
        hardware=Hardware(**{**hw, "sources": tuple(hw["sources"])}),
        runtime=RuntimeSettings(threads=rt["threads"], execution_providers=tuple(rt["execution_providers"]),
                                graph=rt.get("graph", "gated"), spin_wait=rt.get("spin_wait", True)),
        budgets=Budgets(**data["budgets"]),
        power=Power(**data["power"]) if "power" in data else None,
        path=path,
        score=DeviceScore(**data["score"]) if "score" in data else None,
    )


def _migrate(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A table under its old name (``RENAMED_TABLES``) read as the new one; its fields are checked and named
    as written, and a file holding both names is an error rather than a silent choice."""
    for old, new in RENAMED_TABLES.items():
        if old not in data:
            continue
        if new in data:
            raise UserError(f"{where}: both [{old}] and [{new}]; [{old}] is the old name of [{new}], keep only [{new}]")
        if not isinstance(data[old], dict):
            raise UserError(f"{where}: {old} must be a table, got {_show(data[old])}")
        _check_table(data[old], new, where, shown=old)
        data = {(new if key == old else key): value for key, value in data.items()}
    return data


def _check_table(table: dict[str, Any], prefix: str, where: str, shown: str | None = None) -> None:
    """Against ``SCHEMA[prefix]``; messages name the table ``shown`` (as the file spells it), else ``prefix``."""
    schema, name = SCHEMA[prefix], prefix if shown is None else shown
    for key in table:
        if key not in schema:
            raise UserError(f"{where}: unknown field {_field(name, key)} (expected one of: {', '.join(sorted(schema))})")
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                what = f"table [{key}]" if kind == "table" else f"field {_field(name, key)}"
                raise UserError(f"{where}: missing required {what}")
            continue
        problem = _check_value(kind, table[key])
        if problem:
            raise UserError(f"{where}: {_field(name, key)} must be {problem}, got {_show(table[key])}")


def _check_value(kind: str, value: Any) -> str | None:
    """None when ``value`` fits ``kind``, else what it must be (for the message)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return None if isinstance(value, str) and value.strip() else "a non-empty string"
    if kind == "table":
        return None if isinstance(value, dict) else "a table"
    if kind == "int":
        return None if is_number and isinstance(value, int) and value > 0 else "a positive integer"
    if kind == "number":
        return None if is_number and value > 0 else "a positive number"
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "graph":
        return None if value in ("gated", "dense") else 'one of "gated", "dense"'
    if kind == "percent":
        return None if is_number and 0 < value <= 100 else "a number in (0, 100]"
    ok = isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value)
    return None if ok else "a non-empty list of non-empty strings"


def _field(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, roughly: strings quoted, true/false lower case."""
    if isinstance(value, dict):
        return "a table"
    return _one_line(json.dumps(value, default=str))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _num(value: float) -> str:
    return f"{value:g}"


def _builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_profiles_dir().glob("*.toml"))


def _host_cpu() -> str:
    """CPU model from /proc/cpuinfo where Linux has it (x86 "model name", Raspberry Pi "Model")."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _host_memory_mb() -> int:
    """Total RAM from /proc/meminfo, else sysconf; a machine reporting neither needs a profile file."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (AttributeError, ValueError, OSError):
        raise UserError("cannot read this machine's total memory for the host profile; "
                        "write a profile file and pass its path instead") from None
