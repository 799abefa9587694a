"""Every user error from the command line: exit status 1, one ``error:`` line on stderr, no traceback."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from conftest import Trained, flip_byte, run_cli
from PIL import Image

pytestmark = pytest.mark.slow


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
    proc = run_cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert_user_error(proc, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_train_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    proc = run_cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run")
    assert_user_error(proc, "has no class sub-folders with images")
    assert not (tmp_path / "run").exists()


def test_train_class_with_too_few_images(tmp_path: Path) -> None:
    data = _classes(tmp_path / "data", {"many": 6, "few": 2})
    proc = run_cli("train", "--data", data, "--out", tmp_path / "run")
    assert_user_error(proc, "too few images in class few (2)", "at least 5")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so --accelerator cuda is valid here")
def test_train_on_cuda_without_a_gpu(tmp_path: Path) -> None:
    data = _classes(tmp_path / "data", {"a": 6, "b": 6})
    proc = run_cli("train", "--data", data, "--out", tmp_path / "run", "--accelerator", "cuda")
    assert_user_error(proc, "--accelerator cuda", "no CUDA GPU", "--accelerator cpu or auto")
    assert not (tmp_path / "run").exists()


def test_train_into_existing_folder_without_force(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_cli("train", "--data", trained.data, "--out", out)
    assert_user_error(proc, str(out), "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, message", [
    (["--gate-scope", "exit", "--exits", "1"], "--exits: exits must be distinct blocks between 2 and 14 in order, got [1]"),
    (["--gate-scope", "exit", "--exits", "7,4"], "got [7, 4]"),
    (["--gate-scope", "exit", "--exits", "seven"], "--exits must be a comma-separated list, got 'seven'"),
    (["--gate-scope", "exit", "--exits", ","], "--exits is empty; name the blocks after which an exit sits"),
    (["--exits", "7"], "--exits places early exits; it needs --gate-scope exit"),
    (["--exit-distill", "0.5"], "--exit-distill trains early exits; it needs --gate-scope exit"),
    (["--exit-expand", "2"], "--exit-expand shapes early exits; it needs --gate-scope exit"),
    (["--exit-joint"], "--exit-joint trains early exits; it needs --gate-scope exit"),
    (["--exit-mix", "0.2"], "--exit-mix combines early exits; it needs --gate-scope exit"),
    (["--couple-from", "8"], "--couple-from: block 8 has no gate; the gated blocks are 2, 4, 6, 7, 9, 10, 12, 13, 14"),
    (["--couple-from", "9", "--mode", "static"], "coupled gates (--couple-from) need --mode sparse"),
])
def test_train_bad_exits_or_coupling_before_reading_data(args: list[str], message: str, tmp_path: Path) -> None:
    """Checked before the data: the folder named here does not even exist."""
    proc = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", *args)
    assert_user_error(proc, message)
    assert not (tmp_path / "run").exists()


def test_export_missing_run_folder(tmp_path: Path) -> None:
    proc = run_cli("export", tmp_path / "norun", "--out", tmp_path / "bundle")
    assert_user_error(proc, str(tmp_path / "norun"), "does not exist", "edgeadapt train")
    assert not (tmp_path / "bundle").exists()


def test_export_into_existing_folder_without_force(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = run_cli("export", trained.run, "--out", out)
    assert_user_error(proc, "--force")
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_run_missing_image(trained: Trained, tmp_path: Path) -> None:
    proc = run_cli("run", trained.bundle, tmp_path / "missing.png")
    assert_user_error(proc, str(tmp_path / "missing.png"), "no such file")
    assert proc.stdout == ""


def test_run_unreadable_image(trained: Trained, tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG but not really" * 20)
    proc = run_cli("run", trained.bundle, bad)
    assert_user_error(proc, str(bad), "not a readable image")


def test_run_missing_bundle(tmp_path: Path) -> None:
    proc = run_cli("run", tmp_path / "nobundle", tmp_path / "x.png")
    assert_user_error(proc, "does not exist", "edgeadapt export")


@pytest.mark.parametrize("command", ["run", "bench"])
def test_tampered_model(command: str, bundle_copy: Path, tmp_path: Path) -> None:
    flip_byte(bundle_copy / "model.onnx")
    args = ["run", bundle_copy, tmp_path / "x.png"] if command == "run" else ["bench", bundle_copy, "--runs", "2"]
    proc = run_cli(*args)
    assert_user_error(proc, "model.onnx", "sha256")
    assert proc.stdout == ""


def test_bench_data_folder_without_images(trained: Trained, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("bench", trained.bundle, "--data", empty, "--runs", "2", "--no-cold-start")
    assert_user_error(proc, f"--data {empty} holds no images")


def test_bench_data_not_a_folder(trained: Trained, tmp_path: Path) -> None:
    proc = run_cli("bench", trained.bundle, "--data", tmp_path / "nope", "--runs", "2", "--no-cold-start")
    assert_user_error(proc, "is not a folder of images")


def test_bench_json_file_not_replaced_without_force(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    out.write_text("previous result")
    proc = run_cli("bench", trained.bundle, "--runs", "2", "--warmup", "0", "--no-cold-start", "--json", out)
    assert_user_error(proc, str(out), "--force")
    assert out.read_text() == "previous result"
    proc = run_cli("bench", trained.bundle, "--runs", "2", "--warmup", "0", "--no-cold-start", "--threads", "1",
                   "--json", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "latency_ms" in out.read_text()
