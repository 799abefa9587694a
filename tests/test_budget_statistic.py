"""Which input the budget holds for: calibration and run-time --budget read the median input's compute (what
p50 latency follows) or the mean, as the run chose."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from edgeadapt.runtime.bundle import Bundle, budget_column, thresholds_for_budget
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL

from edgeadapt.adapters import GatedAdapterConfig
from edgeadapt.thresholds import calibrate_thresholds, compute_fraction, compute_median, per_input_compute

# three samples, two gates costing 3 and 1: compute 1, 0.75 and 0 of the gated total
GATES = np.array([[1, 1], [1, 0], [0, 0]], np.float64)
COSTS = [3, 1]


def test_per_input_mean_and_median_compute() -> None:
    assert per_input_compute(GATES, COSTS) == pytest.approx([1.0, 0.75, 0.0])
    assert compute_fraction(GATES, COSTS) == pytest.approx(1.75 / 3)
    assert compute_median(GATES, COSTS) == pytest.approx(0.75)


class _ThresholdGates(torch.nn.Module):
    """Stands in for a gated model: gate j opens for sample i when feats[i, j] > threshold j."""

    def __init__(self, gates: int):
        super().__init__()
        self.register_buffer("thresholds", torch.zeros(gates))

    def suffix(self, feats: torch.Tensor, thresholds: torch.Tensor | None = None):
        opened = feats > (self.thresholds if thresholds is None else thresholds)
        return torch.zeros(len(feats), 2), opened.float()


# 11 samples whose two gate scores spread over a range, so compute falls step by step as the offset rises
FEATS = torch.tensor([[s, s - 1.0] for s in [-5.0, -4.0, -3.0, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0]])


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_calibration_meets_the_budget_for_its_statistic_at_the_lowest_offset(statistic: str) -> None:
    model = _ThresholdGates(2)
    measure = {"median": compute_median, "mean": compute_fraction}[statistic]
    offset = float(calibrate_thresholds(model, FEATS, [1, 1], 0.5, statistic, iters=16)[0])

    def at(off: float) -> float:
        return measure((FEATS > off).float().numpy(), [1, 1])

    assert at(offset) <= 0.5
    assert at(offset - 0.01) > 0.5  # bisection found the most compute within the budget


def test_median_calibration_opens_more_than_the_mean_when_the_median_input_costs_less() -> None:
    model = _ThresholdGates(2)
    # five easy inputs that never open the second gate (compute at most 0.5), four hard ones that open both
    skewed = torch.tensor([[s, -9.0] for s in (1.0, 2.0, 3.0, 4.0, 5.0)] + [[9.0, 9.0]] * 4)
    by_median = float(calibrate_thresholds(model, skewed, [1, 1], 0.5, "median", iters=16)[0])
    by_mean = float(calibrate_thresholds(model, skewed, [1, 1], 0.5, "mean", iters=16)[0])
    assert by_median < by_mean  # a lower threshold: more gates open, the median input still within budget
    assert compute_median((skewed > by_median).float().numpy(), [1, 1]) <= 0.5
    assert compute_fraction((skewed > by_median).float().numpy(), [1, 1]) > 0.5


def _bundle(statistic: str | None) -> Bundle:
    table = [{"threshold": OPEN_ALL, "compute_fraction": 1.0, "compute_median": 1.0, "heldout_accuracy": 0.9},
             {"threshold": 0.0, "compute_fraction": 0.45, "compute_median": 0.6, "heldout_accuracy": 0.85},
             {"threshold": 1.0, "compute_fraction": 0.3, "compute_median": 0.4, "heldout_accuracy": 0.8},
             {"threshold": CLOSE_ALL, "compute_fraction": 0.0, "compute_median": 0.0, "heldout_accuracy": 0.3}]
    manifest = {"gates": [{"name": "block02"}, {"name": "block04"}], "budget_table": table}
    if statistic is not None:
        manifest["budget_statistic"] = statistic
    return Bundle(None, manifest)


@pytest.mark.parametrize(("statistic", "threshold"), [("median", 1.0), ("mean", 0.0), (None, 0.0)])
def test_run_time_budget_reads_the_column_the_bundle_was_calibrated_on(statistic: str | None, threshold: float) -> None:
    bundle = _bundle(statistic)
    assert budget_column(bundle.manifest) == ("compute_median" if statistic == "median" else "compute_fraction")
    assert thresholds_for_budget(bundle, 0.5).tolist() == [threshold, threshold]


def test_the_mean_is_the_default_and_old_runs_keep_it_and_bad_statistics_are_refused() -> None:
    assert GatedAdapterConfig().budget_statistic == "mean"
    assert GatedAdapterConfig.from_dict({"budget": 0.5}).budget_statistic == "mean"
    with pytest.raises(ValueError, match="budget statistic must be one of mean, median, not 'p90'"):
        GatedAdapterConfig(budget_statistic="p90")
