"""The training spec: every choice of a training run in one place, with THE defaults of train, sweep and demo.

A spec comes from its defaults, a TOML file (``--config``), the command line's options and ``--set key=value``,
in that order; the run folder keeps the resolved spec as ``spec.toml``, and training from it again reproduces
the run. Torch-free: the command line reads and checks a spec before it imports torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .choices import ACCELERATORS, BUDGET_STATISTICS, DEFAULT_EPOCHS, EXIT_RULES, GATE_SCOPES, MODES
from .errors import UserError

if TYPE_CHECKING:
    from .adapters import GatedAdapterConfig
    from .train import TrainOptions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SPEC_TOML = "spec.toml"
FULL_LR, ADAPTER_LR = 1e-4, 1e-2  # a whole pretrained backbone needs 1e-4 (at 1e-3 AdamW wrecked Lite0's features)
# the knobs that shape or train early exits: each needs an exit-scope sparse model, and says what it does to them
EXIT_KNOBS = {"exits": "places", "exit_distill": "trains", "exit_expand": "shapes", "exit_joint": "trains",
              "exit_mix": "combines"}
GRID_AXES = ("mode", "budget", "gate_scope")  # what a sweep varies per entry; the rest of its spec is shared


@dataclass
class TrainSpec:
    """Every choice of a training run: what the model is made of, how it trains and how the data is split."""

    # the model
    backbone: str = "efficientnet_lite0"  # images; all-minilm-l6-v2 or bert (texts); module:pkg.mod:factory (arrays)
    backbone_dir: str = ""  # bert: the Hugging Face model directory
    max_length: int = 64  # text backbones: tokens per text
    blocks: str = ""  # custom backbones: the pattern naming the gateable blocks, e.g. 'stage?.*'
    image_size: int = 128
    mode: str = "sparse"  # sparse: gated adapters; the others are baselines (docs/concepts/gates-and-scopes.md)
    budget: float = 0.5  # target fraction of gated compute that runs
    budget_statistic: str = "mean"  # calibrate so the mean input's compute meets the budget, or the median's
    gate_scope: str = "block"  # what a closed gate skips: the block, the adapter, or the rest (exit)
    exit_rule: str = "confidence"  # exit scope: leave when the exit is sure enough, or by a trained gate
    exits: list[int] = field(default_factory=list)  # exit scope: blocks after which an exit sits (empty: the ends
    # of the backbone's stages)
    exit_expand: int = 4  # exit scope: each exit head widens its features this many times before pooling
    exit_joint: bool = False  # exit scope: the exits' loss also trains the adapters before them
    exit_mix: float = 0.4  # exit scope: share of the last exit mixed into the final head's answer
    couple_from: int | None = None  # the gates from this backbone block on decide together (None: each alone)
    experts: int = 1  # adapters per site; above 1 a router picks top_k per input
    top_k: int = 1
    adapter_reduction: int = 4
    # training
    epochs: int = DEFAULT_EPOCHS
    lr: float | None = None  # peak learning rate (None: 1e-2, or 1e-4 for mode full)
    batch_size: int = 32
    weight_decay: float = 1e-4
    seed: int = 0
    holdout: float = 0.2  # held-out fraction of every class
    calibration_split: float = 0.1  # of the training split, kept out of training to calibrate thresholds on
    calibration_samples: int = 160  # at most this many of them are used
    open_weight: float = 0.3  # also train with every gate open at this loss weight (0: off)
    difficulty_weight: float = 4.0  # more compute for inputs that gain most from it (needs open_weight)
    label_smoothing: float = 0.1  # of every cross-entropy term
    budget_weight: float = 8.0  # squared pull of expected compute toward the budget
    temperature: tuple[float, float] = (1.0, 0.3)  # gate temperature, first and last epoch
    balance_weight: float = 0.01  # adapter banks: pull toward every expert being used
    exit_weight: float = 0.5  # early exits: each exit's own cross-entropy
    exit_distill: float = 0.0  # early exits: also learn the final head's softened predictions at this weight
    margin_weight: float = 0.1  # hinge on gate margins beyond +-gate_margin
    gate_margin: float = 3.0
    couple_weight: float = 16.0  # coupled gates: pull each input's coupled gates to one decision
    accelerator: str = "auto"  # where training runs: auto, cpu or cuda (not the target device)
    fast_layout: bool = True  # BatchNorm folded into the frozen convs, channels-last: ~35 % faster CPU steps

    # -- reading ------------------------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainSpec:
        """The spec in a TOML file: a flat table of keys, or a ``[train]`` table (a sweep's ``[grid]`` is
        skipped); keys it leaves out keep their defaults."""
        return DEFAULTS.with_table(read_toml(path).get("train", {}), str(path))

    def with_table(self, table: dict, where: str) -> TrainSpec:
        """This spec with the keys of a TOML table replaced, each checked against its field's type."""
        unknown = sorted(set(table) - set(_TYPES))
        if unknown:
            raise UserError(f"{where}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)}{_hint(unknown[0])}")
        return self.replace(**{k: _coerce(k, v, f"{where}: {k}") for k, v in table.items()})

    def with_settings(self, settings: Iterable[str]) -> TrainSpec:
        """This spec with ``key=value`` settings (``--set``) applied, each value parsed by its field's type."""
        spec = self
        for setting in settings:
            key, sep, text = setting.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UserError(f"--set {setting!r}: write key=value, e.g. --set epochs=12")
            if key not in _TYPES:
                raise UserError(f"--set {key}: unknown key{_hint(key)}")
            spec = spec.replace(**{key: _parse(key, text.strip(), f"--set {key}")})
        return spec

    def replace(self, **changes: Any) -> TrainSpec:
        return dataclasses.replace(self, **changes)

    # -- writing and comparing ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_toml(self, table: str | None = None, skip: Iterable[str] = ()) -> str:
        """The spec as TOML, every key written (one left unset, None, as a comment), optionally under ``[table]``."""
        lines = [f"[{table}]"] if table else []
        for key, value in self.to_dict().items():
            if key not in skip:
                lines.append(f"# {key} unset: {_UNSET[key]}" if value is None else f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"

    def diff(self, other: TrainSpec, skip: Iterable[str] = ()) -> list[str]:
        """What ``other`` changes: ``["epochs: 24 -> 12", ...]`` in field order."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {_shown(mine[k])} -> {_shown(theirs[k])}" for k in mine if k not in skip and mine[k] != theirs[k]]

    # -- checking and building ----------------------------------------------------------------------------------

    def check(self, exits_need: str = "gate_scope exit (and mode sparse)") -> TrainSpec:
        """Every value in its range, and no early-exit knob where no exit trains (``exits_need`` says what
        would train one); one line naming the key at fault. Torch-free."""
        for key, (ok, what) in _RANGES.items():
            value = getattr(self, key)
            if value is not None and not ok(value):
                raise UserError(f"{key} must be {what}, got {_shown(value)}")
        if self.mode != "sparse" or self.gate_scope != "exit":
            self.refuse_exit_knobs(exits_need)
        if not 1 <= self.top_k <= self.experts:
            raise UserError(f"top_k must be between 1 and experts ({self.experts}), got {self.top_k}")
        return self

    def refuse_exit_knobs(self, needs: str) -> None:
        """One line for the first early-exit knob set away from its default where no exit trains."""
        for key, verb in EXIT_KNOBS.items():
            if getattr(self, key) != getattr(DEFAULTS, key):
                raise UserError(f"{key} {verb} early exits; it needs {needs}")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the mode's default."""
        return self.lr if self.lr is not None else (FULL_LR if self.mode == "full" else ADAPTER_LR)

    def model_config(self) -> GatedAdapterConfig:
        """The model config this spec trains (the backbone directory made absolute: runs outlive the cwd)."""
        from .adapters import GatedAdapterConfig

        try:
            return GatedAdapterConfig(
                backbone=self.backbone, backbone_dir=str(Path(self.backbone_dir).resolve()) if self.backbone_dir else "",
                max_length=self.max_length, blocks=self.blocks, image_size=self.image_size, mode=self.mode,
                budget=self.budget, budget_statistic=self.budget_statistic, gate_scope=self.gate_scope,
                exit_rule=self.exit_rule, exits=list(self.exits), exit_expand=self.exit_expand,
                exit_joint=self.exit_joint, exit_mix=self.exit_mix, coupled_from=self.couple_from,
                experts=self.experts, top_k=self.top_k, adapter_reduction=self.adapter_reduction)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def train_options(self) -> TrainOptions:
        """The training options this spec trains with (the learning rate resolved per mode)."""
        from .train import TrainOptions

        return TrainOptions(**{k: getattr(self, k) for k in _OPTION_FIELDS}, lr=self.learning_rate,
                            calibration_fraction=self.calibration_split, temperature=tuple(self.temperature))

    def check_buildable(self) -> GatedAdapterConfig:
        """Build the network once without weights, so that exits or coupling it rejects fail in one line before
        any data is read; the config with what the build fills in (the exits)."""
        from .adapters import check_buildable

        config = self.model_config()
        if config.exits:
            config = check_buildable(config, "exits")
        if config.coupled_from is not None:
            config = check_buildable(config, "couple_from")
        return config

    @classmethod
    def of_run(cls, config: GatedAdapterConfig, opts: TrainOptions, holdout: float) -> TrainSpec:
        """The spec of a run given as a model config and training options (the Python API's way in)."""
        model = {k: getattr(config, k) for k in _MODEL_FIELDS}
        train = {k: getattr(opts, k) for k in _OPTION_FIELDS}
        return cls(**model, **train, couple_from=config.coupled_from, lr=opts.lr, holdout=holdout,
                   calibration_split=opts.calibration_fraction, temperature=tuple(opts.temperature),
                   exits=list(config.exits))

    def train(self, data: Path, out: Path, force: bool = False, log: Callable[[str], None] = print,
              progress_bar=None, weights_from: Path | None = None) -> dict:
        """Train this spec on ``data`` into the run folder ``out``; its metrics."""
        from .train import run_training

        return run_training(data, out, self.model_config(), self.train_options(), holdout=self.holdout, force=force,
                            log=log, progress_bar=progress_bar, weights_from=weights_from)


DEFAULTS = TrainSpec()
_TYPES: dict[str, Any] = typing.get_type_hints(TrainSpec)
# fields the spec shares with GatedAdapterConfig and TrainOptions under the same name
_MODEL_FIELDS = ("backbone", "backbone_dir", "max_length", "blocks", "image_size", "mode", "budget", "budget_statistic",
                 "gate_scope", "exit_rule", "exit_expand", "exit_joint", "exit_mix", "experts", "top_k",
                 "adapter_reduction")
_OPTION_FIELDS = ("epochs", "batch_size", "weight_decay", "seed", "calibration_samples", "open_weight",
                  "difficulty_weight", "label_smoothing", "budget_weight", "balance_weight", "exit_weight",
                  "exit_distill", "margin_weight", "gate_margin", "couple_weight", "accelerator", "fast_layout")
_UNSET = {"lr": "1e-2, or 1e-4 for mode full", "couple_from": "every gate decides alone"}


def _choice(options: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in options), f"one of {', '.join(options)}"


def _between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: float) -> bool:
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    return ok, f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


_AT_LEAST_0 = ((lambda v: v >= 0), "0 or more")
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_length": _between(4, 512), "image_size": _between(32, 1024), "mode": _choice(MODES),
    "budget": _between(0, 1, lo_open=True), "budget_statistic": _choice(BUDGET_STATISTICS),
    "gate_scope": _choice(GATE_SCOPES), "exit_rule": _choice(EXIT_RULES),
    "exit_expand": _between(0, 16), "exit_mix": _between(0, 1, hi_open=True), "experts": _between(1, 64),
    "top_k": _between(1, 64), "adapter_reduction": _between(1, 1024), "epochs": _between(1, 10000),
    "lr": ((lambda v: v > 0), "above 0"), "batch_size": _between(1, 1 << 16), "weight_decay": _AT_LEAST_0,
    "holdout": _between(0.05, 0.5), "calibration_split": _between(0, 0.5), "calibration_samples": _between(1, 1 << 30),
    "open_weight": _AT_LEAST_0, "difficulty_weight": _AT_LEAST_0, "label_smoothing": _between(0, 0.5, hi_open=True),
    "budget_weight": _AT_LEAST_0, "temperature": ((lambda v: len(v) == 2 and min(v) > 0), "two temperatures above 0"),
    "balance_weight": _AT_LEAST_0, "exit_weight": _AT_LEAST_0, "exit_distill": _AT_LEAST_0, "margin_weight": _AT_LEAST_0,
    "gate_margin": _AT_LEAST_0, "couple_weight": _AT_LEAST_0, "accelerator": _choice(ACCELERATORS),
}


def read_toml(path: str | Path) -> dict:
    """A TOML file's top-level table (a spec's keys, or ``[train]`` and a sweep's ``[grid]``); one line when it
    cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    if "train" in data:
        extra = sorted(set(data) - {"train", "grid"})
        if extra or not isinstance(data["train"], dict):
            raise UserError(f"{path}: keys go in the [train] table (a sweep's grid in [grid]), found "
                            f"{', '.join(extra) or 'train = ' + repr(data['train'])} beside it")
        return data
    grid = data.pop("grid", None)
    return {"train": data, **({"grid": grid} if grid is not None else {})}


def _hint(key: str) -> str:
    """Where to find the keys, or the key meant."""
    close = difflib.get_close_matches(key, list(_TYPES), n=1)
    return f"; did you mean {close[0]}?" if close else "; 'edgeadapt train --help' lists every key"


def _base(kind: Any) -> tuple[Any, bool]:
    """A field's type without ``| None``, and whether None is allowed."""
    args = typing.get_args(kind)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return kind, False


def _parse(key: str, text: str, where: str) -> Any:
    """A ``--set`` value as the field's type: numbers, true/false, comma-separated lists, none for an unset
    optional field."""
    kind, optional = _base(_TYPES[key])
    if optional and text.lower() in ("", "none"):
        return None
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        item = typing.get_args(kind)[0]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return _coerce(key, [_scalar(item, p, where) for p in parts], where)
    return _scalar(kind, text, where)


def _scalar(kind: Any, text: str, where: str) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise UserError(f"{where}: expected true or false, got {text!r}")
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{where}: expected {_KIND_NAMES[kind]}, got {text!r}") from None


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(key: str, value: Any, where: str) -> Any:
    """A TOML value checked against the field's type (an integer is a fine float, a float never an integer)."""
    kind, optional = _base(_TYPES[key])
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        items = [_coerce_scalar(item, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    return _coerce_scalar(kind, value, where)


def _coerce_scalar(kind: Any, value: Any, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise UserError(f"{where}: expected {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    """A value as a person reads it in a diff or an error: lists comma-separated, unset as none."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if not isinstance(value, str) else repr(value)


def toml_value(value: Any) -> str:
    """One TOML value: strings in basic quotes, floats by their shortest exact repr (they read back equal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
