"""The second real data set: scikit-learn's handwritten digits written as an image folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn (the dev extra installs it)")


def test_digits_folder_holds_every_scan_by_class(tmp_path: Path) -> None:
    from edgeadapt.data.digits import load_digits_arrays
    from edgeadapt.data.folder import scan_image_folder

    res = run_cli("data", "digits", "--out", tmp_path / "d", "--size", "16")
    assert res.returncode == 0, res.stderr
    ds = scan_image_folder(tmp_path / "d")
    assert ds.labels == [str(d) for d in range(10)] and len(ds.files) == 1797
    images, targets = load_digits_arrays()
    assert np.bincount(ds.targets).tolist() == np.bincount(targets).tolist()
    first = np.asarray(Image.open(tmp_path / "d" / str(targets[0]) / "0000.png").convert("L"), np.float32)
    assert first.shape == (16, 16)
    # ink is dark: the downscaled PNG matches the 8x8 scan, 16 = black
    small = np.asarray(Image.fromarray(first).resize((8, 8), Image.BOX), np.float32)
    expect = 255 - images[0] * (255 / 16)
    assert np.corrcoef(small.ravel(), expect.ravel())[0, 1] > 0.8


def test_digits_refuses_to_replace_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    res = run_cli("data", "digits", "--out", tmp_path / "d")
    assert res.returncode == 1 and "pass --force" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep"
