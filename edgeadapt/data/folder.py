"""Image-folder data sets (one sub-folder per class) with checks and a seeded stratified split."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..runtime.preprocess import IMAGE_SUFFIXES, load_image

MIN_PER_CLASS = 5


@dataclass
class ImageFolder:
    """Files and integer labels of an image folder, classes in sorted order."""

    root: Path
    labels: list[str]
    files: list[Path]
    targets: np.ndarray

    def load(self, size: int, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Every image resized to ``size``: uint8 ``[N, size, size, 3]``."""
        out = np.empty((len(self.files), size, size, 3), np.uint8)
        for i, path in enumerate(self.files):
            out[i] = load_image(path, size)
            if progress:
                progress(1)
        return out


def scan_image_folder(root: str | Path, min_per_class: int = MIN_PER_CLASS) -> ImageFolder:
    """Find classes and images; fail with one clear line when the folder cannot be trained on."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass a folder with one sub-folder per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files_by_class = {c.name: sorted(f for f in c.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
    files_by_class = {k: v for k, v in files_by_class.items() if v}
    if not files_by_class:
        raise UserError(f"data folder {root} has no class sub-folders with images ({', '.join(IMAGE_SUFFIXES)})")
    if len(files_by_class) < 2:
        raise UserError(f"data folder {root} has only one class with images; a classifier needs at least two")
    small = [f"{k} ({len(v)})" for k, v in files_by_class.items() if len(v) < min_per_class]
    if small:
        raise UserError(f"too few images in class {', '.join(small)}: each class needs at least {min_per_class}")
    labels = list(files_by_class)
    files = [f for k in labels for f in files_by_class[k]]
    targets = np.concatenate([np.full(len(files_by_class[k]), i) for i, k in enumerate(labels)])
    return ImageFolder(root, labels, files, targets.astype(np.int64))


def stratified_split(targets: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, held-out): the same fraction of every class held out, at least one each."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        n_held = max(1, int(round(len(idx) * holdout)))
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
