"""A second, real image data set for sweeps: the UCI handwritten digits that scikit-learn ships.

1,797 scans of handwritten digits (43 writers, 8x8 pixels, 17 grey levels; Alpaydin and Kaynak, UCI
"Optical Recognition of Handwritten Digits", CC BY 4.0) come inside the scikit-learn wheel, so no download
is needed. They are written as an image folder (one sub-folder per digit), upscaled to ``size`` pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digit images (float ``[N, 8, 8]`` in 0..16) and their labels, from scikit-learn's wheel."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the digits data set comes from scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    return data.images, data.target.astype(np.int64)


def write_digits(root: Path, size: int = 32) -> int:
    """Write ``root/<digit>/<nnnn>.png`` (dark ink on white, bicubic upscale to ``size``); returns the count."""
    from PIL import Image

    images, targets = load_digits_arrays()
    grey = (255 - images * (255 / 16)).clip(0, 255).astype(np.uint8)  # 16 = full ink
    folders = {label: Path(root) / str(label) for label in np.unique(targets)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(grey, targets)):
        Image.fromarray(img).resize((size, size), Image.BICUBIC).convert("RGB").save(folders[label] / f"{i:04d}.png")
    return len(targets)
