"""The three splits: train, calibration (thresholds are set on inputs training never saw) and held out."""
from __future__ import annotations

import numpy as np

from edgeadapt.data.folder import stratified_split
from edgeadapt.train import TrainOptions, calibration_split


def _splits(targets: np.ndarray, fraction: float, seed: int = 0):
    train, held = stratified_split(targets, 0.2, seed)
    fit, cal = calibration_split(train, targets, TrainOptions(calibration_fraction=fraction, seed=seed))
    return fit, cal, held


def test_calibration_inputs_are_taken_out_of_training_per_class() -> None:
    targets = np.repeat(np.arange(3), [50, 20, 5])
    fit, cal, held = _splits(targets, 0.1)
    assert not set(fit) & set(cal) and not set(cal) & set(held) and not set(fit) & set(held)
    assert len(fit) + len(cal) + len(held) == len(targets)
    assert [int((targets[cal] == c).sum()) for c in range(3)] == [4, 2, 1]  # 10 % of each class's training part, at least one
    again = _splits(targets, 0.1)
    assert all(np.array_equal(a, b) for a, b in zip((fit, cal, held), again))  # a seed gives the same split


def test_fraction_zero_calibrates_on_training_inputs() -> None:
    targets = np.repeat(np.arange(2), 30)
    fit, cal, held = _splits(targets, 0.0)
    assert sorted(cal) == sorted(fit) and len(fit) + len(held) == len(targets)
