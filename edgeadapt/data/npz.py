"""Array data sets: an ``.npz`` with ``X`` (float, one row per sample: sensor windows, tabular rows) and
``y`` (integer or string labels), checked like an image folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .folder import MIN_PER_CLASS


@dataclass
class ArrayTable:
    """Samples as float32 ``[N, ...]`` and integer labels, classes in sorted order."""

    path: Path
    labels: list[str]
    inputs: np.ndarray
    targets: np.ndarray


def read_npz(path: str | Path, min_per_class: int = MIN_PER_CLASS) -> ArrayTable:
    """Read ``X`` and ``y``; fail with one clear line when the file cannot be trained on."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; pass an .npz with arrays X and y")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data.files or "y" not in data.files:
                raise UserError(f"{path} needs arrays named X and y, found {', '.join(data.files) or 'none'}")
            x, y = data["X"], data["y"]
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz without pickled objects ({exc.__class__.__name__})") from None
    if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
        raise UserError(f"{path}: X must be [N, ...] and y [N]; got X {list(x.shape)}, y {list(y.shape)}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise UserError(f"{path}: X must hold finite numbers (dtype {x.dtype})")
    labels = sorted({str(v) for v in y.tolist()})
    if len(labels) < 2:
        raise UserError(f"{path} has {len(labels)} label(s) in y; a classifier needs at least two")
    names = np.array([str(v) for v in y.tolist()])
    small = [f"{k} ({int((names == k).sum())})" for k in labels if (names == k).sum() < min_per_class]
    if small:
        raise UserError(f"too few rows for label {', '.join(small)}: each label needs at least {min_per_class}")
    index = {k: i for i, k in enumerate(labels)}
    return ArrayTable(path, labels, np.ascontiguousarray(x, np.float32),
                      np.array([index[k] for k in names], np.int64))
