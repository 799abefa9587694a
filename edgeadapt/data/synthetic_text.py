"""A generated text data set: short maintenance tickets from a production line, three fault labels.

Deterministic for a seed, made offline. Each ticket mixes two cue words of its fault with line jargon
shared by all faults, and one ticket in eight swaps a cue word for one of another fault, so the task is
easy but not trivially separable. For tests and examples, not a benchmark of language understanding.
"""
from __future__ import annotations

import csv
import os
import random
from pathlib import Path

CUES = {
    "bearing": ["bearing", "grinding", "vibration", "spindle", "rattle", "hum", "noise", "wobble"],
    "leak": ["leak", "oil", "drip", "puddle", "seal", "hose", "fluid", "wet"],
    "electrical": ["fuse", "spark", "wire", "short", "breaker", "voltage", "tripped", "sensor"],
}
JARGON = ["line", "three", "operator", "reported", "near", "station", "after", "shift", "press", "conveyor",
          "the", "at", "was", "on", "during", "restart", "cell", "robot", "checked", "again"]


def write_text_dataset(path: str | Path, per_class: int = 40, seed: int = 0) -> Path:
    """Write ``text,label`` rows to ``path`` (a CSV) and return it."""
    rng = random.Random(seed)
    rows = []
    for label, cues in CUES.items():
        others = [w for k, ws in CUES.items() if k != label for w in ws]
        for _ in range(per_class):
            words = rng.sample(cues, 2) + rng.sample(JARGON, rng.randint(3, 8))
            if rng.random() < 0.125:
                words[1] = rng.choice(others)
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # written whole, then renamed: never half a CSV under the name
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def vocabulary() -> list[str]:
    """Every word the generator uses (a tiny test tokenizer needs no more)."""
    return sorted({w for ws in CUES.values() for w in ws} | set(JARGON))
