"""Benchmark inputs: the bundle's held-out samples, or the user's ``--data`` (images, a CSV of texts, .npz rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .preprocess import load_image
from .session import Runtime


def load_inputs(rt: Runtime, data: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Real inputs: the bundle's held-out samples, or every image under ``data`` (labels if foldered)."""
    if data is None:
        return rt.bundle.samples()
    data = Path(data)
    if rt.kind == "text":
        return _load_texts(rt, data)
    if rt.kind == "array":
        return _load_arrays(rt, data)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder of images")
    from .preprocess import IMAGE_SUFFIXES

    files = sorted(f for f in data.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--data {data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = np.stack([load_image(f, rt.bundle.image_size) for f in files])
    labels = rt.bundle.labels
    targets = [labels.index(f.parent.name) if f.parent.name in labels else -1 for f in files]
    return images, (np.asarray(targets) if min(targets) >= 0 else None)


def _load_texts(rt: Runtime, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Texts of a ``text,label`` CSV (labels used where every one is the bundle's)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"--data {path} is not a readable UTF-8 CSV ({exc.__class__.__name__})") from None
    if not rows or "text" not in rows[0]:
        raise UserError(f"--data {path} needs a 'text' column and at least one row")
    labels = rt.bundle.labels
    targets = [labels.index(r.get("label") or "") if (r.get("label") or "") in labels else -1 for r in rows]
    return np.array([r["text"] for r in rows], dtype=np.str_), (np.asarray(targets) if min(targets) >= 0 else None)


def _load_arrays(rt: Runtime, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows ``X`` of an .npz (labels ``y`` used where every one is the bundle's)."""
    from .arrays import read_rows

    x, y = read_rows(path)
    labels = rt.bundle.labels
    if y is None or any(str(v) not in labels for v in y.tolist()):
        return x, None
    return x, np.array([labels.index(str(v)) for v in y.tolist()])
