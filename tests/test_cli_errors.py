"""Every user error from the command line: exit status 1, one ``error:`` line on stderr, no traceback."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from conftest import Trained, flip_byte, run_cli, run_cli_in_process
from PIL import Image
from tiny_bundle import Tiny


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1, exactly one non-empty stderr line starting with ``error:`` and containing every fragment."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.returncode == 1
    return lines[0]


def _classes(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_train_missing_data_folder(tmp_path: Path) -> None:
    """The console script itself: one line even counting whatever importing torch might print."""
    proc = run_cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert_user_error(proc, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_train_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    proc = run_cli_in_process("train", "--data", tmp_path / "data", "--out", tmp_path / "run")
    assert_user_error(proc, "has no class sub-folders with images")
    assert not (tmp_path / "run").exists()


def test_train_class_with_too_few_images(tmp_path: Path) -> None:
    data = _classes(tmp_path / "data", {"many": 6, "few": 2})
    proc = run_cli_in_process("train", "--data", data, "--out", tmp_path / "run")
    assert_user_error(proc, "too few images in class few (2)", "at least 5")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so accelerator=cuda is valid here")
def test_train_on_cuda_without_a_gpu(tmp_path: Path) -> None:
    data = _classes(tmp_path / "data", {"a": 6, "b": 6})
    proc = run_cli_in_process("train", "--data", data, "--out", tmp_path / "run", "--set", "accelerator=cuda")
    assert_user_error(proc, "accelerator cuda", "no CUDA GPU", "--set accelerator=cpu or auto")
    assert not (tmp_path / "run").exists()


def test_train_into_existing_folder_without_force(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_cli_in_process("train", "--data", tiny.data, "--out", out)
    assert_user_error(proc, str(out), "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, message", [
    (["--gate-scope", "exit", "--set", "exits=1"], "exits: exits must be distinct blocks between 2 and 14 in order, got [1]"),
    (["--gate-scope", "exit", "--set", "exits=7,4"], "got [7, 4]"),
    (["--gate-scope", "exit", "--set", "exits=seven"], "--set exits: expected an integer, got 'seven'"),
    (["--set", "exits=7"], "exits places early exits; it needs gate_scope exit (and mode sparse)"),
    (["--set", "exit_distill=0.5"], "exit_distill trains early exits; it needs gate_scope exit"),
    (["--set", "exit_expand=2"], "exit_expand shapes early exits; it needs gate_scope exit"),
    (["--set", "exit_joint=true"], "exit_joint trains early exits; it needs gate_scope exit"),
    (["--set", "exit_mix=0.2"], "exit_mix combines early exits; it needs gate_scope exit"),
    (["--gate-scope", "exit", "--mode", "dense", "--set", "exits=7"], "exits places early exits"),
    (["--set", "couple_from=8"], "couple_from: block 8 has no gate; the gated blocks are 2, 4, 6, 7, 9, 10, 12, 13, 14"),
    (["--set", "couple_from=9", "--mode", "static"], "coupled gates (couple_from) need mode sparse"),
    (["--set", "label_smoothing=0.5"], "label_smoothing must be in [0, 0.5), got 0.5"),
    (["--set", "epochs=ten"], "--set epochs: expected an integer, got 'ten'"),
    (["--set", "exit_mixx=0.2"], "--set exit_mixx: unknown key; did you mean exit_mix?"),
    (["--set", "epochs"], "--set 'epochs': write key=value"),
])
def test_train_bad_spec_before_reading_data(args: list[str], message: str, tmp_path: Path) -> None:
    """Checked before the data: the folder named here does not even exist (in process: a table of cases)."""
    proc = run_cli_in_process("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", *args)
    assert_user_error(proc, message)
    assert not (tmp_path / "run").exists()


def test_export_missing_run_folder(tmp_path: Path) -> None:
    proc = run_cli("export", tmp_path / "norun", "--out", tmp_path / "bundle")
    assert_user_error(proc, str(tmp_path / "norun"), "does not exist", "edgeadapt train")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_export_into_existing_folder_without_force(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = run_cli("export", trained.run, "--out", out)
    assert_user_error(proc, "--force")
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_run_missing_image(tiny: Tiny, tmp_path: Path) -> None:
    proc = run_cli("run", tiny.bundle, tmp_path / "missing.png")
    assert_user_error(proc, str(tmp_path / "missing.png"), "no such file")
    assert proc.stdout == ""


def test_run_unreadable_image(tiny: Tiny, tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG but not really" * 20)
    proc = run_cli("run", tiny.bundle, bad)
    assert_user_error(proc, str(bad), "not a readable image")


def test_run_missing_bundle(tmp_path: Path) -> None:
    proc = run_cli("run", tmp_path / "nobundle", tmp_path / "x.png")
    assert_user_error(proc, "does not exist", "edgeadapt export")


@pytest.mark.parametrize("command", ["run", "bench"])
def test_tampered_model(command: str, tiny_copy: Path, tmp_path: Path) -> None:
    flip_byte(tiny_copy / "model.onnx")
    args = ["run", tiny_copy, tmp_path / "x.png"] if command == "run" else ["bench", tiny_copy, "--runs", "2"]
    proc = run_cli(*args)
    assert_user_error(proc, "model.onnx", "sha256")
    assert proc.stdout == ""


def test_bench_data_folder_without_images(tiny: Tiny, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("bench", tiny.bundle, "--data", empty, "--runs", "2", "--no-cold-start")
    assert_user_error(proc, f"--data {empty} holds no images")


def test_bench_data_not_a_folder(tiny: Tiny, tmp_path: Path) -> None:
    proc = run_cli("bench", tiny.bundle, "--data", tmp_path / "nope", "--runs", "2", "--no-cold-start")
    assert_user_error(proc, "is not a folder of images")


def test_bench_json_file_not_replaced_without_force(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    out.write_text("previous result")
    proc = run_cli("bench", tiny.bundle, "--runs", "2", "--warmup", "0", "--no-cold-start", "--json", out)
    assert_user_error(proc, str(out), "--force")
    assert out.read_text() == "previous result"
    proc = run_cli("bench", tiny.bundle, "--runs", "2", "--warmup", "0", "--no-cold-start", "--threads", "1",
                   "--json", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "latency_ms" in out.read_text()
