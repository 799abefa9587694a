"""Text preprocessing shared by training and the device runtime: one tokenizer file, identical token ids.

Uses the ``tokenizers`` library (Rust, no torch) on the model directory's ``tokenizer.json``; the bundle
carries a copy of that file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


class TextEncoder:
    """Texts -> ``input_ids`` and ``attention_mask`` (int64 ``[N, T]``), truncated to ``max_length``.

    ``pad_to=None`` pads to the longest text of the batch (a batch of one carries no padding at all);
    training pads to ``max_length`` so that every cached sequence has the same length.
    """

    def __init__(self, tokenizer_json: str | Path, max_length: int):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UserError("text bundles need the 'tokenizers' package: pip install tokenizers") from None
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
            raise UserError(f"{tokenizer_json} is not a readable tokenizer.json ({str(exc)[:100]})") from None
        self.max_length = max_length
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)

    def encode(self, texts: list[str], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            raise UserError("no texts to encode")
        ids = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        width = pad_to or max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), np.int64)  # 0 is [PAD] in BERT vocabularies; masked anyway
        mask = np.zeros((len(ids), width), np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return input_ids, mask


def read_texts(inputs: list[str]) -> list[str]:
    """Command-line inputs to texts: a ``.csv`` file gives its ``text`` column, a ``.txt`` file its non-empty
    lines, anything else is a text itself."""
    import csv

    texts: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() in (".csv", ".txt") and path.is_file():
            try:
                with open(path, newline="", encoding="utf-8") as fh:
                    if path.suffix.lower() == ".txt":
                        texts += [line.strip() for line in fh if line.strip()]
                        continue
                    reader = csv.DictReader(fh)
                    if "text" not in (reader.fieldnames or []):
                        raise UserError(f"{path} has no 'text' column in its header")
                    texts += [row["text"] for row in reader]
            except (UnicodeDecodeError, csv.Error) as exc:
                raise UserError(f"{path} is not readable UTF-8 text ({exc.__class__.__name__})") from None
        else:
            texts.append(item)
    if not texts:
        raise UserError("no texts to classify")
    return texts
