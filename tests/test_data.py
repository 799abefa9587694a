"""Image-folder data: clear errors for unusable folders, image loading, the stratified split, synthetic data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeadapt.runtime.preprocess import load_image, normalize
from PIL import Image

from edgeadapt.data.folder import scan_image_folder, stratified_split
from edgeadapt.data.synthetic import CLASSES, write_dataset
from edgeadapt.errors import UserError


def make_folder(root: Path, counts: dict[str, int], size: int = 8) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` small solid images."""
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (size, size), (c * 40, i * 10, 100)).save(root / name / f"{i}.png")
    return root


def test_scan_finds_sorted_classes_and_targets(tmp_path: Path) -> None:
    make_folder(tmp_path, {"zebra": 5, "apple": 6})
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".hidden" / "x.png")
    ds = scan_image_folder(tmp_path)
    assert ds.labels == ["apple", "zebra"]
    assert len(ds.files) == 11 and all(f.suffix == ".png" for f in ds.files)
    assert ds.targets.tolist() == [0] * 6 + [1] * 5
    images = ds.load(16)
    assert images.shape == (11, 16, 16, 3) and images.dtype == np.uint8


def test_scan_missing_folder(tmp_path: Path) -> None:
    message = r"data folder .*nope does not exist; pass a folder with one sub-folder per class"
    with pytest.raises(UserError, match=message):
        scan_image_folder(tmp_path / "nope")


def test_scan_folder_without_class_subfolders(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match="has no class sub-folders with images"):
        scan_image_folder(tmp_path)


def test_scan_single_class(tmp_path: Path) -> None:
    make_folder(tmp_path, {"only": 6})
    with pytest.raises(UserError, match="has only one class with images; a classifier needs at least two"):
        scan_image_folder(tmp_path)


def test_scan_class_with_too_few_images(tmp_path: Path) -> None:
    make_folder(tmp_path, {"good": 5, "rare": 4})
    with pytest.raises(UserError, match=r"too few images in class rare \(4\): each class needs at least 5"):
        scan_image_folder(tmp_path)


def test_load_image_corrupt_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x00garbage, not a png\xff" * 10)
    with pytest.raises(UserError, match="not a readable image") as info:
        load_image(bad, 32)
    assert str(bad) in str(info.value)


def test_load_image_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_image(tmp_path / "gone.png", 32)


def test_load_image_converts_and_resizes(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (40, 20), 200).save(path)
    img = load_image(path, 24)
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8
    assert np.all(img == 200)


def test_normalize_layout_and_values() -> None:
    pixels = np.array([[[0, 127, 255]]], np.uint8)  # one 1x1 image
    x = normalize(pixels, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert x.dtype == np.float32 and x.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, 127 / 255 * 2 - 1, 1.0], atol=1e-6)


def test_stratified_split_keeps_every_class_on_both_sides() -> None:
    targets = np.repeat(np.arange(4), [5, 7, 12, 30])
    train, held = stratified_split(targets, 0.2, seed=3)
    assert set(np.intersect1d(train, held).tolist()) == set()
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(targets)))
    for c, n in enumerate([5, 7, 12, 30]):
        n_held = int((targets[held] == c).sum())
        assert n_held == max(1, round(n * 0.2))
        assert (targets[train] == c).sum() == n - n_held > 0


def test_stratified_split_is_deterministic_per_seed() -> None:
    targets = np.repeat(np.arange(3), 20)
    a = stratified_split(targets, 0.25, seed=7)
    b = stratified_split(targets, 0.25, seed=7)
    c = stratified_split(targets, 0.25, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_write_dataset_is_deterministic(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", per_class=2, size=32, seed=5)
    b = write_dataset(tmp_path / "b", per_class=2, size=32, seed=5)
    c = write_dataset(tmp_path / "c", per_class=2, size=32, seed=6)
    assert sorted(p.name for p in a.iterdir()) == sorted(CLASSES)
    for label in CLASSES:
        for name in ("0000.png", "0001.png"):
            assert (a / label / name).read_bytes() == (b / label / name).read_bytes()
    assert (a / "ok" / "0000.png").read_bytes() != (c / "ok" / "0000.png").read_bytes()
    with Image.open(a / "crack" / "0001.png") as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    ds = scan_image_folder(a, min_per_class=2)
    assert ds.labels == sorted(CLASSES) and len(ds.files) == 2 * len(CLASSES)


def test_data_tickets_writes_a_labelled_csv_and_keeps_an_existing_one(tmp_path: Path) -> None:
    import csv

    from conftest import run_cli_in_process

    out = tmp_path / "tickets.csv"
    done = run_cli_in_process("data", "tickets", "--out", out, "--per-class", "5", "--seed", "3")
    assert done.returncode == 0, done.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    assert sorted({r["label"] for r in rows}) == ["bearing", "electrical", "leak"]
    assert all(len(r["text"].split()) >= 5 for r in rows)
    before = out.read_bytes()
    again = run_cli_in_process("data", "tickets", "--out", out, "--seed", "4")
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: {out} already exists; pass --force to replace it"
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tickets.csv"]  # no temporary file left behind
