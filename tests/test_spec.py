"""The training spec (defaults in one place, TOML files, --set, precedence, checks) and the versioned run and sweep
formats with their migrations."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import run_cli

from edgeadapt.errors import UserError
from edgeadapt.formats import RUN_CONFIG_VERSION, SWEEP_VERSION, migrate_run_config, migrate_sweep
from edgeadapt.spec import DEFAULTS, TrainSpec


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_training_options_and_model_config_defaults() -> None:
    """One place: the Python API's TrainOptions take the spec's defaults; the model config agrees with it."""
    from edgeadapt.adapters import GatedAdapterConfig
    from edgeadapt.train import TrainOptions

    assert DEFAULTS.train_options() == TrainOptions()
    assert TrainOptions().fast_layout is True and DEFAULTS.fast_layout is True
    assert DEFAULTS.model_config() == GatedAdapterConfig(image_size=DEFAULTS.image_size)
    assert DEFAULTS.learning_rate == 1e-2 and DEFAULTS.replace(mode="full").learning_rate == 1e-4
    assert DEFAULTS.replace(lr=3e-3, mode="full").train_options().lr == 3e-3


def test_demo_builds_its_run_from_a_spec_with_its_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeadapt import demo

    monkeypatch.setattr(demo, "EPOCHS", 7)
    spec = demo.demo_spec()
    assert (spec.epochs, spec.image_size, spec.couple_from, spec.seed) == (7, demo.IMAGE_SIZE, demo.COUPLED_FROM, demo.SEED)
    assert spec.fast_layout is demo.FAST_LAYOUT and spec.replace(epochs=DEFAULTS.epochs, image_size=DEFAULTS.image_size,
                                                                 couple_from=None, seed=0, fast_layout=True) == DEFAULTS


def test_toml_round_trip_keeps_every_value_exactly(tmp_path: Path) -> None:
    spec = DEFAULTS.replace(backbone_dir='/models/a "b"\\c', exits=[2, 4, 7], exit_joint=True, lr=1e-05,
                            couple_from=9, temperature=(2.0, 0.25), weight_decay=0.1 + 0.2, gate_scope="exit")
    text = spec.to_toml()
    assert "# lr unset" not in text and "lr = 1e-05\n" in text and "exits = [2, 4, 7]\n" in text
    back = TrainSpec.from_toml(_write(tmp_path / "spec.toml", text))
    assert back == spec and back.weight_decay == 0.1 + 0.2 and back.temperature == (2.0, 0.25)
    unset = TrainSpec.from_toml(_write(tmp_path / "unset.toml", DEFAULTS.to_toml()))
    assert unset == DEFAULTS and "# lr unset: 1e-2, or 1e-4 for mode full\n" in DEFAULTS.to_toml()


def test_toml_forms_flat_train_table_and_sweep_grid(tmp_path: Path) -> None:
    flat = TrainSpec.from_toml(_write(tmp_path / "a.toml", 'epochs = 3\nbudget = 1\nexits = []\n'))
    assert (flat.epochs, flat.budget, flat.exits) == (3, 1.0, []) and isinstance(flat.budget, float)
    table = TrainSpec.from_toml(_write(tmp_path / "b.toml", '[train]\nepochs = 3\n\n[grid]\nbudgets = [0.5]\n'))
    assert DEFAULTS.diff(table) == ["epochs: 24 -> 3"]


@pytest.mark.parametrize("text, message", [
    ("epochs = 'ten'\n", "c.toml: epochs: expected an integer, got 'ten'"),
    ("epochs = 1.5\n", "c.toml: epochs: expected an integer, got 1.5"),
    ("fast_layout = 1\n", "c.toml: fast_layout: expected true or false, got 1"),
    ("exits = 7\n", "c.toml: exits: expected a list, got 7"),
    ("exit_mixx = 0.2\nfoo = 1\n", "c.toml: unknown keys exit_mixx, foo; did you mean exit_mix?"),
    ("epochs = \n", "c.toml is not valid TOML"),
    ("[train]\nepochs = 2\n[other]\nx = 1\n", "keys go in the [train] table (a sweep's grid in [grid]), found other"),
])
def test_bad_toml_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        TrainSpec.from_toml(_write(tmp_path / "c.toml", text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settings_parse_by_the_field_type() -> None:
    spec = DEFAULTS.with_settings(["epochs=12", "budget=0.25", "exit_joint=yes", "exits=2, 4,7", "couple_from=9",
                                   "couple_from=none", "lr=3e-3", "backbone=module:a.b:c", "temperature=2,0.5",
                                   "exits="])
    assert (spec.epochs, spec.budget, spec.exit_joint, spec.exits, spec.couple_from) == (12, 0.25, True, [], None)
    assert (spec.lr, spec.backbone, spec.temperature) == (3e-3, "module:a.b:c", (2.0, 0.5))
    assert DEFAULTS.diff(spec) == ["backbone: 'efficientnet_lite0' -> 'module:a.b:c'", "budget: 0.5 -> 0.25",
                                   "exit_joint: false -> true", "epochs: 24 -> 12", "lr: none -> 0.003",
                                   "temperature: 1.0,0.3 -> 2.0,0.5"]
    for setting, message in [("budget=half", "--set budget: expected a number, got 'half'"),
                             ("exit_joint=maybe", "--set exit_joint: expected true or false, got 'maybe'"),
                             ("exits=2,four", "--set exits: expected an integer, got 'four'"),
                             ("epoch=3", "--set epoch: unknown key; did you mean epochs?"),
                             ("zzz=3", "--set zzz: unknown key; 'edgeadapt train --help' lists every key"),
                             ("=3", "--set '=3': write key=value")]:
        with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            DEFAULTS.with_settings([setting])


@pytest.mark.parametrize("changes, message", [
    ({"budget": 0.0}, "budget must be in (0, 1], got 0.0"),
    ({"mode": "sparse-ish"}, "mode must be one of sparse, dense, static, linear-probe, full, got 'sparse-ish'"),
    ({"holdout": 0.6}, "holdout must be in [0.05, 0.5], got 0.6"),
    ({"lr": 0.0}, "lr must be above 0, got 0.0"),
    ({"experts": 2, "top_k": 3}, "top_k must be between 1 and experts (2), got 3"),
    ({"exit_mix": 0.2}, "exit_mix combines early exits; it needs gate_scope exit (and mode sparse)"),
    ({"exits": [7], "gate_scope": "exit", "mode": "dense"}, "exits places early exits; it needs gate_scope exit"),
])
def test_check_names_the_key_at_fault(changes: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        DEFAULTS.replace(**changes).check()
    assert str(err.value).startswith(message)
    assert DEFAULTS.replace(gate_scope="exit", exits=[7], exit_mix=0.0).check().exits == [7]


def test_spec_of_a_python_api_run_trains_the_same() -> None:
    spec = DEFAULTS.replace(mode="full", gate_scope="adapter", couple_from=None, label_smoothing=0.05, holdout=0.3,
                            calibration_split=0.0, experts=2)
    again = TrainSpec.of_run(spec.model_config(), spec.train_options(), spec.holdout)
    assert spec.diff(again) == ["lr: none -> 0.0001"]  # the per-mode default, resolved
    assert again.model_config() == spec.model_config() and again.train_options() == spec.train_options()


def test_precedence_defaults_file_options_settings(tmp_path: Path) -> None:
    from edgeadapt.cli import _resolve_spec

    config = _write(tmp_path / "spec.toml", "epochs = 3\nseed = 5\nbudget = 0.3\n")
    spec = _resolve_spec(config, {"epochs": 4, "seed": None, "budget": 0.4}, ("budget=0.2",))
    assert (spec.epochs, spec.seed, spec.budget, spec.image_size) == (4, 5, 0.2, DEFAULTS.image_size)


def test_old_run_config_is_migrated_as_it_was_built(tmp_path: Path) -> None:
    """A config.json of format 1 (no format_version, no exit_* fields, fewer training fields)."""
    from edgeadapt.adapters import GatedAdapterConfig
    from edgeadapt.rundir import RunDir

    config = GatedAdapterConfig(gate_scope="exit", exits=[4, 7]).to_dict()
    for key in ("exit_rule", "exit_expand", "exit_joint", "exit_mix"):
        del config[key]
    old = {"config": config, "train": {"epochs": 8, "lr": 0.01, "open_weight": 0.3}, "costs": {}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    new = RunDir(tmp_path).load_config()
    assert new["format_version"] == RUN_CONFIG_VERSION == 2
    built = GatedAdapterConfig.from_dict(new["config"])
    assert (built.exit_rule, built.exit_expand, built.exit_joint, built.exit_mix) == ("learned", 0, True, 0.0)
    assert built.exits == [4, 7] and new["costs"] == {}
    train = new["train"]
    assert (train["epochs"], train["open_weight"]) == (8, 0.3)  # what the file says stays
    assert (train["fast_layout"], train["exit_distill"], train["calibration_fraction"]) == (False, 0.0, 0.0)
    assert migrate_run_config(new) == new  # the current format passes through unchanged
    block = migrate_run_config({"config": {"gate_scope": "block"}})["config"]
    assert "exit_rule" not in block and block["exit_expand"] == 0


@pytest.mark.parametrize("version, message", [
    (3, "has format_version 3, newer than this edgeadapt reads (2); upgrade edgeadapt"),
    ("2", "has a bad format_version '2'"),
    (0, "has a bad format_version 0"),
])
def test_unknown_format_versions_are_refused(version, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        migrate_run_config({"format_version": version, "config": {}})
    with pytest.raises(UserError, match="sweep.json " + message.split(" (")[0]):
        migrate_sweep({"format_version": version, "entries": []})


def test_old_sweep_json_is_migrated_and_reads_as_a_table() -> None:
    from edgeadapt.sweep import format_sweep

    row = {"name": "sparse@0.5", "accuracy": 0.9, "macro_f1": 0.9, "latency_ms": {"p50": 1.0, "p90": 1.2},
           "saving_vs_dense": None, "trainable_parameters": 10, "training_seconds": 3, "pareto": True,
           "accuracy_ci95": [0.85, 0.94]}
    old = {"heldout_inputs": 200, "entries": [row], "summary": {"fastest_sparse_within_1pt_of_dense": None,
                                                                "sparse_vs_static": []}}
    new = migrate_sweep(old)
    assert new["format_version"] == SWEEP_VERSION == 2 and new["host"] is None and new["spec"] is None
    assert new["entries"][0]["weights_from"] is None and new["entries"][0]["static_gates"] == {}
    assert new["entries"][0]["accuracy"] == 0.9
    text = format_sweep(old)
    assert text.splitlines()[1].startswith("sparse@0.5") and "no sparse model is within 1 point" in text


def _count_options(help_text: str) -> int:
    options = help_text.split("Options:")[1].split("\n\n")[0]
    return sum(1 for line in options.splitlines() if line.startswith("  -"))


def test_train_help_lists_at_most_15_options_and_every_spec_key() -> None:
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    assert _count_options(proc.stdout) == 15
    for option in ("--config", "--set", "--mode", "--budget", "--gate-scope", "--epochs", "-h, --help"):
        assert f"  {option}" in proc.stdout
    keys = proc.stdout.split("Spec keys and their defaults")[1]
    for key, value in [("exit_mix", "0.4"), ("fast_layout", "true"), ("lr", "none"), ("calibration_split", "0.1")]:
        assert f"{key}={value}" in keys
    assert "--exit-mix" not in proc.stdout and "--fast-layout" not in proc.stdout
    sweep = run_cli("sweep", "--help")
    assert sweep.returncode == 0 and "--resume" in sweep.stdout and "  --mode " not in sweep.stdout


@pytest.mark.parametrize("config, message", [
    ("missing.toml", "error: cannot read"),
    ("bad.toml", "bad.toml is not valid TOML"),
    ("unknown.toml", "unknown.toml: unknown key exit_mixx; did you mean exit_mix?"),
    ("range.toml", "error: budget must be in (0, 1], got 1.5"),
])
def test_train_refuses_a_bad_config_in_one_line(tmp_path: Path, config: str, message: str) -> None:
    _write(tmp_path / "bad.toml", "epochs = [\n")
    _write(tmp_path / "unknown.toml", "exit_mixx = 0.2\n")
    _write(tmp_path / "range.toml", "budget = 1.5\n")
    proc = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", "--config", tmp_path / config)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0] and lines[0].startswith("error: ")
    assert not (tmp_path / "run").exists()


def test_sweep_resume_refuses_another_spec_before_training(tmp_path: Path) -> None:
    """A kept sweep folder's spec.toml (written here as the sweep writes it) against the asked spec."""
    from edgeadapt.data.synthetic import write_dataset
    from edgeadapt.sweep import Grid, read_grid, write_spec

    data = write_dataset(tmp_path / "data", per_class=6, size=48)
    out = tmp_path / "sweep"
    out.mkdir()
    write_spec(out, DEFAULTS.replace(epochs=3, exit_mix=0.2), Grid(modes=["dense"], budgets=[0.5]))
    assert read_grid(out / "spec.toml") == Grid(modes=["dense"], budgets=[0.5], gate_scopes=["block"])
    proc = run_cli("sweep", "--data", data, "--out", out, "--modes", "dense", "--epochs", "2", "--resume")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert line == (f"error: --resume: the spec differs from the kept sweep's spec: exit_mix: 0.2 -> 0.4; epochs: 3 "
                    f"-> 2; resume with --config {out / 'spec.toml'}, or start a new sweep folder")
    assert sorted(p.name for p in out.iterdir()) == ["spec.toml"]  # nothing trained, nothing rewritten
    (out / "spec.toml").unlink()
    (out / "runs").mkdir()
    proc = run_cli("sweep", "--data", data, "--out", out, "--modes", "dense", "--resume")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"error: {out} has no spec.toml (a sweep folder from before sweep format 2), so its entries' spec is unknown; "
        "start a new sweep folder")


@pytest.mark.slow
def test_training_again_from_the_run_spec_gives_the_same_weights(tmp_path: Path) -> None:
    """train with options and --set, then train --config RUN/spec.toml: byte-identical weights."""
    from edgeadapt.data.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", per_class=6, size=48)
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli("train", "--data", data, "--out", first, "--epochs", "1", "--image-size", "32", "--seed", "3",
                   "--set", "couple_from=9", "--set", "difficulty_weight=2", "--set", "calibration_samples=8")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--data", data, "--out", second, "--config", first / "spec.toml")
    assert proc.returncode == 0, proc.stderr

    def digest(run: Path) -> str:
        return hashlib.sha256((run / "adapters.safetensors").read_bytes()).hexdigest()

    assert digest(first) == digest(second)
    assert (first / "spec.toml").read_text() == (second / "spec.toml").read_text()
    spec = TrainSpec.from_toml(first / "spec.toml")
    assert (spec.seed, spec.couple_from, spec.difficulty_weight, spec.image_size, spec.fast_layout) == (3, 9, 2.0, 32, True)
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (first, second))
    assert a["thresholds"] == b["thresholds"] and a["heldout_accuracy"] == b["heldout_accuracy"]
