"""The budget's unit: MACs plus memory traffic, counted per layer, and what it does to Lite0's blocks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeadapt.adapters import GatedAdapterConfig, create_model
from edgeadapt.cost import ACTIVATION_COST, WEIGHT_COST, GateCosts, count_macs, count_work, measure_costs


def test_conv_work_is_counted_per_output_element_and_per_tensor_touched() -> None:
    conv = nn.Conv2d(4, 8, 3, padding=1)
    macs, traffic = count_work(conv, torch.zeros(3, 4, 5, 5))  # only the first sample counts
    assert macs == 8 * 25 * (4 * 9)
    assert traffic == ACTIVATION_COST * (4 * 25 + 8 * 25) + WEIGHT_COST * (8 * 4 * 9)


def test_linear_and_depthwise_work() -> None:
    lin = nn.Linear(6, 3)
    assert count_work(lin, torch.zeros(2, 6)) == (18, ACTIVATION_COST * 9 + WEIGHT_COST * 18)
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, torch.zeros(1, 8, 4, 4)) == 8 * 16 * 9


def test_runs_without_traffic_keep_budgeting_in_macs() -> None:
    old = GateCosts(block_macs=[10, 30], adapter_macs=[1, 2], total_macs=100)
    assert old.for_scope("block") == [10, 30] and old.macs_for("adapter") == [1, 2]
    new = GateCosts(block_macs=[10, 30], adapter_macs=[1, 2], total_macs=100, block_traffic=[5, 0], adapter_traffic=[1, 1])
    assert new.for_scope("block") == [15, 30] and new.for_scope("adapter") == [2, 3]
    assert new.macs_for("block") == [10, 30]


def test_lite0_costs_weigh_the_high_resolution_block_above_its_macs() -> None:
    """At 128 px block 2 runs at 32x32 with 24 channels: memory-bound, so its share of the budget is larger than
    its share of the MACs, and the weight-heavy 4x4 blocks 12-14 keep more than their MACs alone would give them
    against blocks 9 and 10 (measured latency shares: 17.6 % and 11.5 %, docs/concepts/budget-and-threshold-calibration.md)."""
    costs = measure_costs(create_model(GatedAdapterConfig(image_size=128, num_classes=3)))
    cost = np.asarray(costs.for_scope("block"), float)
    macs = np.asarray(costs.block_macs, float)
    cost_share, mac_share = cost / cost.sum(), macs / macs.sum()
    assert mac_share[0] == pytest.approx(0.121, abs=0.002) and cost_share[0] == pytest.approx(0.176, abs=0.01)
    assert cost_share[6] == pytest.approx(0.113, abs=0.01) and cost_share[6] / cost_share[4] > mac_share[6] / mac_share[4]
    assert costs.block_traffic and all(t > 0 for t in costs.block_traffic + costs.adapter_traffic)
