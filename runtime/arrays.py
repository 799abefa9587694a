"""Array inputs on the device side: rows ``X`` (and labels ``y``) of an .npz, never unpickled."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def read_rows(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` as float32 and ``y`` if present; one clear line for a missing or unreadable file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data.files:
                raise UserError(f"{path} has no array X (found {', '.join(data.files) or 'none'})")
            return np.ascontiguousarray(data["X"], np.float32), (data["y"] if "y" in data.files else None)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz without pickled objects ({exc.__class__.__name__})") from None
