"""A training run's folder: config (``format_version`` in ``formats``), its training spec (spec.toml), trainable
weights (safetensors), metrics and held-out samples."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

CONFIG = "config.json"
WEIGHTS = "adapters.safetensors"
METRICS = "metrics.json"
HOLDOUT = "holdout.npz"


@dataclass
class RunDir:
    """Paths of a run folder; ``load_*`` methods fail with one clear line when a file is missing or bad."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def check(self) -> None:
        """A run folder must hold what ``edgeadapt train`` writes."""
        if not self.root.is_dir():
            raise UserError(f"run folder {self.root} does not exist; create it with 'edgeadapt train'")
        missing = [n for n in (CONFIG, WEIGHTS, METRICS, HOLDOUT) if not self.path(n).exists()]
        if missing:
            raise UserError(f"run folder {self.root} is missing {', '.join(missing)}; re-run 'edgeadapt train'")

    def load_json(self, name: str) -> dict:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.path(name)} is unreadable ({exc.__class__.__name__}); re-run 'edgeadapt train'") from None

    def load_config(self) -> dict:
        """``config.json`` in the current format (``formats.migrate_run_config``: older runs get the values they
        were built with)."""
        from .formats import migrate_run_config

        return migrate_run_config(self.load_json(CONFIG), str(self.path(CONFIG)))

    def load_holdout(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out images and targets (image runs)."""
        arrays, targets = self.load_holdout_arrays()
        if "images" not in arrays:
            raise UserError(f"{self.path(HOLDOUT)} holds texts, not images")
        return arrays["images"], targets

    def load_holdout_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Held-out inputs as stored (``images``, or ``input_ids``, ``attention_mask``, ``texts``) and targets."""
        try:
            with np.load(self.path(HOLDOUT), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            return arrays, arrays.pop("targets")
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.path(HOLDOUT)} is unreadable ({exc.__class__.__name__}); re-run 'edgeadapt train'") from None


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an npz through a temporary name (np.savez appends .npz, so name it explicitly)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def write_json(path: Path, data: dict) -> None:
    """Write JSON through a temporary name so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def prepare_output(path: Path, force: bool, what: str) -> None:
    """Refuse to overwrite a non-empty folder unless ``--force``."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a folder; choose another --out")
    if path.exists() and any(path.iterdir()) and not force:
        raise UserError(f"{what} folder {path} already exists and is not empty; pass --force to replace it")


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir``; on success it replaces ``out_dir``, on failure it is removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should read like any new folder
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
