"""Text data sets: a CSV file with a ``text`` and a ``label`` column, checked like an image folder."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .folder import MIN_PER_CLASS


@dataclass
class TextTable:
    """Texts and integer labels, classes in sorted order."""

    path: Path
    labels: list[str]
    texts: list[str]
    targets: np.ndarray


def read_text_csv(path: str | Path, min_per_class: int = MIN_PER_CLASS) -> TextTable:
    """Read ``text,label`` rows; fail with one clear line when the file cannot be trained on."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; pass a CSV with a header 'text,label'")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "text" not in fields or "label" not in fields:
                raise UserError(f"{path} needs the columns 'text' and 'label' in its header, found {fields}")
            rows = [(r["text"], r["label"]) for r in reader]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise UserError(f"{path} is not a readable CSV ({exc})") from None
    empty = [i + 2 for i, (t, y) in enumerate(rows) if not (t or "").strip() or not (y or "").strip()]
    if empty:
        raise UserError(f"{path}: empty text or label on line(s) {', '.join(map(str, empty[:5]))}; fill or remove them")
    labels = sorted({y.strip() for _, y in rows})
    if len(labels) < 2:
        raise UserError(f"{path} has {len(labels)} label(s); a classifier needs at least two")
    counts = {k: sum(1 for _, y in rows if y.strip() == k) for k in labels}
    small = [f"{k} ({n})" for k, n in counts.items() if n < min_per_class]
    if small:
        raise UserError(f"too few rows for label {', '.join(small)}: each label needs at least {min_per_class}")
    index = {k: i for i, k in enumerate(labels)}
    return TextTable(path, labels, [t for t, _ in rows], np.array([index[y.strip()] for _, y in rows], np.int64))
