"""Training data: an image folder (one sub-folder per class) or a CSV of ``text,label`` rows."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass
class TrainingData:
    """Labels, integer targets and the stored arrays the model's inputs are made from.

    ``arrays`` holds ``images`` (uint8 ``[N, H, W, 3]``), or ``input_ids``, ``attention_mask`` and ``texts``,
    or ``inputs`` (float32 ``[N, ...]``, for a custom backbone).
    """

    labels: list[str]
    targets: np.ndarray
    arrays: dict[str, np.ndarray]
    summary: str


def check_data(path: str | Path, config) -> None:
    """Fail now, with one line, if ``load_training_data`` would (before anything is written or trained)."""
    from ..adapters.custom_model import CUSTOM_PREFIX
    from ..backbones import is_text_backbone

    path = Path(path)
    if config.backbone.startswith(CUSTOM_PREFIX):
        _load_arrays(path, config)
    elif is_text_backbone(config.backbone):
        from .csv_text import read_text_csv

        if path.is_dir():
            raise UserError(f"{path} is a folder; backbone {config.backbone} trains on a CSV file with 'text,label' rows")
        read_text_csv(path)
    else:
        from .folder import scan_image_folder

        if path.is_file() and path.suffix.lower() == ".csv":
            raise UserError(f"{path} is a CSV of texts: train it with a text backbone, e.g. --backbone all-minilm-l6-v2")
        scan_image_folder(path)


def holdout_samples(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The stored held-out inputs the runtime takes: images, texts or array rows."""
    return arrays["images"] if "images" in arrays else arrays["texts"] if "texts" in arrays else arrays["inputs"]


def load_training_data(path: str | Path, config, bar: Callable) -> TrainingData:
    """Read what ``--data`` names, for the backbone in ``config`` (image folder, text CSV or array NPZ)."""
    from ..adapters.custom_model import CUSTOM_PREFIX
    from ..backbones import is_text_backbone

    path = Path(path)
    if config.backbone.startswith(CUSTOM_PREFIX):
        return _load_arrays(path, config)
    text = is_text_backbone(config.backbone)
    if path.is_file() and path.suffix.lower() == ".csv" and not text:
        raise UserError(f"{path} is a CSV of texts: train it with a text backbone, e.g. --backbone all-minilm-l6-v2")
    if text:
        return _load_texts(path, config)
    from .folder import scan_image_folder

    ds = scan_image_folder(path)
    with bar(len(ds.files), "loading images") as step:
        images = ds.load(config.image_size, step)
    return TrainingData(ds.labels, ds.targets, {"images": images},
                        f"{len(ds.files)} images in {len(ds.labels)} classes from {path}")


def _load_texts(path: Path, config) -> TrainingData:
    from ..backbones import text_backbone_dir
    from ..backbones.bert import TOKENIZER_FILE
    from ..runtime.text import TextEncoder
    from .csv_text import read_text_csv

    if path.is_dir():
        raise UserError(f"{path} is a folder; backbone {config.backbone} trains on a CSV file with 'text,label' rows")
    table = read_text_csv(path)
    encoder = TextEncoder(text_backbone_dir(config.backbone, config.backbone_dir) / TOKENIZER_FILE, config.max_length)
    ids, mask = encoder.encode(table.texts, pad_to=config.max_length)
    truncated = int((mask.sum(1) == config.max_length).sum())
    note = f"; {truncated} truncated to {config.max_length} tokens" if truncated else ""
    return TrainingData(table.labels, table.targets,
                        {"input_ids": ids, "attention_mask": mask, "texts": np.array(table.texts, dtype=np.str_)},
                        f"{len(table.texts)} texts in {len(table.labels)} labels from {path}{note}")


def _load_arrays(path: Path, config) -> TrainingData:
    from .npz import read_npz

    if path.suffix.lower() != ".npz":
        raise UserError(f"{path}: a custom backbone trains on an .npz file with arrays X and y")
    table = read_npz(path)
    if config.input_shape and list(table.inputs.shape[1:]) != list(config.input_shape):
        raise UserError(f"{path}: X rows have shape {list(table.inputs.shape[1:])}, the run expects {config.input_shape}")
    config.input_shape = list(table.inputs.shape[1:])
    return TrainingData(table.labels, table.targets, {"inputs": table.inputs},
                        f"{len(table.targets)} rows of shape {config.input_shape} in {len(table.labels)} labels from {path}")
