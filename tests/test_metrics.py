"""Scores shared by training, sweep and compare."""
from __future__ import annotations

import numpy as np
import pytest
from edgeadapt.runtime.metrics import accuracy, macro_f1, pareto_front


def test_macro_f1_by_hand() -> None:
    pred = np.array([0, 0, 1, 1, 2, 0])
    true = np.array([0, 1, 1, 1, 2, 2])
    # class 0: tp 1, pred 3, true 1 -> 0.5; class 1: tp 2, pred 2, true 3 -> 0.8; class 2: tp 1, pred 1, true 2 -> 2/3
    assert macro_f1(pred, true) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert accuracy(pred, true) == pytest.approx(4 / 6)


def test_macro_f1_counts_a_rare_class_fully() -> None:
    true = np.array([0] * 9 + [1])
    pred = np.zeros(10, int)  # never predicts the rare defect
    assert accuracy(pred, true) == pytest.approx(0.9)
    assert macro_f1(pred, true) == pytest.approx((2 * 9 / 19 + 0.0) / 2)


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(1.0, 0.70), (2.0, 0.80), (3.0, 0.79), (2.0, 0.75), (4.0, 0.90), (1.0, 0.70)]
    # (3.0, 0.79) is slower and less accurate than (2.0, 0.80); (2.0, 0.75) is as fast and less accurate
    assert pareto_front(points) == [True, True, False, False, True, True]
