"""Versions of the files edgeadapt writes and reads back, and the explicit step from each version to the next.

A file without ``format_version`` is version 1. Reading a file migrates it step by step to the current version,
so the rest of the code sees one shape only; a file newer than this edgeadapt reads is refused in one line.
"""
from __future__ import annotations

from collections.abc import Callable

from .errors import UserError

RUN_CONFIG_VERSION = 2  # a run folder's config.json
SWEEP_VERSION = 2  # a sweep folder's sweep.json

# Run config format 1 (no format_version) saved only the fields that existed when the run trained; a missing one
# means the feature did not exist yet, so the run was built and trained with it off.
_CONFIG_FIELDS_V1 = {"exit_expand": 0, "exit_joint": True, "exit_mix": 0.0}  # exit heads pooled the adapted
# features, their loss reached the adapters, and the final head alone answered inputs that passed every exit
_TRAIN_FIELDS_V1 = {"exit_distill": 0.0, "fast_layout": False, "calibration_fraction": 0.0, "label_smoothing": 0.0,
                    "open_weight": 0.0, "difficulty_weight": 0.0, "margin_weight": 0.0, "couple_weight": 0.0,
                    "balance_weight": 0.0, "exit_weight": 0.0, "accelerator": "cpu"}


def _run_config_1_to_2(data: dict) -> dict:
    """Format 1 -> 2: fill the model and training fields older runs lack with the values they were built with.
    An exit-scope run without ``exit_rule`` trained a gate per exit (the confidence rule came later)."""
    config = dict(data.get("config", {}))
    if config.get("gate_scope") == "exit" and "exit_rule" not in config:
        config["exit_rule"] = "learned"
    config = {**{k: v for k, v in _CONFIG_FIELDS_V1.items() if k not in config}, **config}
    train = data.get("train")
    out = {**data, "config": config}
    if isinstance(train, dict):
        out["train"] = {**{k: v for k, v in _TRAIN_FIELDS_V1.items() if k not in train}, **train}
    return out


def _sweep_1_to_2(data: dict) -> dict:
    """Format 1 -> 2: entries without ``weights_from`` shared no weights, without ``static_gates`` froze none;
    a result without ``host`` had no host probe, without ``spec`` recorded no training spec."""
    entries = [{"weights_from": None, "static_gates": {}, **e} for e in data.get("entries", [])]
    return {"host": None, "spec": None, "grid": None, **data, "entries": entries}


RUN_CONFIG_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _run_config_1_to_2}
SWEEP_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _sweep_1_to_2}


def migrate(data: dict, current: int, steps: dict[int, Callable[[dict], dict]], where: str) -> dict:
    """``data`` raised step by step from its ``format_version`` (1 when absent) to ``current``."""
    if not isinstance(data, dict):
        raise UserError(f"{where} does not hold a JSON object")
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{where} has a bad format_version {version!r}")
    if version > current:
        raise UserError(f"{where} has format_version {version}, newer than this edgeadapt reads ({current}); "
                        "upgrade edgeadapt")
    while version < current:
        data = steps[version](data)
        version += 1
    return {**data, "format_version": current}


def migrate_run_config(data: dict, where: str = "config.json") -> dict:
    """A run folder's ``config.json`` in the current format."""
    return migrate(data, RUN_CONFIG_VERSION, RUN_CONFIG_MIGRATIONS, where)


def migrate_sweep(data: dict, where: str = "sweep.json") -> dict:
    """A sweep folder's ``sweep.json`` in the current format."""
    return migrate(data, SWEEP_VERSION, SWEEP_MIGRATIONS, where)
