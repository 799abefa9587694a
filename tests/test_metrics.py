"""Scores shared by training, sweep and compare."""
from __future__ import annotations

import math

import numpy as np
import pytest
from edgeadapt.runtime.metrics import accuracy, accuracy_interval, gap_text, macro_f1, mcnemar_p, pareto_front, wilson_interval


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


def test_wilson_interval_by_hand() -> None:
    # 140 of 144 right: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    lo, hi = wilson_interval(140, 144)
    assert (lo, hi) == pytest.approx((0.93077, 0.98912), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # the textbook 0-of-10 bound
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    wide, narrow = wilson_interval(50, 100), wilson_interval(500, 1000)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_accuracy_interval_reads_per_input_scores() -> None:
    correct = np.array([True] * 140 + [False] * 4)
    assert accuracy_interval(correct) == pytest.approx(list(wilson_interval(140, 144)))
    assert accuracy_interval(correct.astype(int).tolist()) == accuracy_interval(correct)  # JSON's 0/1 lists too


def test_gap_text_gives_points_and_how_sure() -> None:
    assert gap_text(0.854, 0.861, 1.0) == "0.7 points below all open, McNemar p 1.00, within the noise"
    assert gap_text(0.80, 0.90, 0.001) == "10.0 points below all open, McNemar p 0.00"
    assert gap_text(0.958, 0.924, None) == "3.4 points above all open"  # a run from before the p-value


def test_mcnemar_counts_only_discordant_inputs() -> None:
    both = np.ones(300, bool)
    a = both.copy()
    b = both.copy()
    b[:3] = False  # b misses 3 inputs a gets right, nothing the other way: p = 2 * (1/2)^3
    assert mcnemar_p(a, b) == pytest.approx(0.25)
    assert mcnemar_p(b, a) == pytest.approx(0.25)
    b[3:13] = False  # 13 to 0
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5 ** 13)
    a2 = a.copy()
    a2[20:24] = False  # 13 against 4: sum_{k<=4} C(17, k) / 2^17, doubled
    assert mcnemar_p(a2, b) == pytest.approx(2 * sum(math.comb(17, k) for k in range(5)) / 2 ** 17)
    assert mcnemar_p(a, a) == 1.0
    assert mcnemar_p(np.array([1, 0]), np.array([0, 1])) == 1.0  # one each way: capped at 1
