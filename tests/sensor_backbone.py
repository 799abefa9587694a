"""A user's module for the custom-backbone tests: a small 1-D residual CNN over 3-axis vibration windows.

Stands in for a pretrained sensor model (its weights are seeded, not trained); what matters here is the
contract: ``build()`` returns a module mapping ``[N, 3, 128]`` to features ``[N, 32]``, and the blocks in
``stage1``/``stage2`` keep their input's shape.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ResBlock1d(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv1d(ch, ch, 5, padding=2)
        self.conv2 = nn.Conv1d(ch, ch, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class SensorNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(3, 16, 7, stride=2, padding=3)
        self.stage1 = nn.ModuleList([ResBlock1d(16), ResBlock1d(16)])
        self.down = nn.Conv1d(16, 32, 3, stride=2, padding=1)
        self.stage2 = nn.ModuleList([ResBlock1d(32)])
        self.norm = nn.LayerNorm(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        for b in self.stage1:
            h = b(h)
        h = torch.relu(self.down(h))
        for b in self.stage2:
            h = b(h)
        return self.norm(h.mean(2))


def build() -> SensorNet:
    torch.manual_seed(0)
    return SensorNet().eval()


def shape_changer() -> nn.Module:
    """Breaks the contract: its named block changes the channel count."""
    net = build()
    net.stage2[0] = nn.Conv1d(32, 32, 3, stride=2, padding=1)
    return net


def vibration_windows(per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three machine states as 3-axis windows of 128 samples: normal, imbalance (strong 1x), bearing (spikes)."""
    rng = np.random.default_rng(seed)
    t = np.arange(128) / 128
    xs, ys = [], []
    for label in ("normal", "imbalance", "bearing"):
        for _ in range(per_class):
            f = rng.uniform(3, 5)
            x = 0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28, (3, 1))) + 0.2 * rng.standard_normal((3, 128))
            if label == "imbalance":
                x += 1.0 * np.sin(2 * np.pi * f * t)
            if label == "bearing":
                x[:, rng.integers(0, 128, 6)] += rng.choice([-2.0, 2.0], (3, 6))
            xs.append(x)
            ys.append(label)
    return np.asarray(xs, np.float32), np.asarray(ys)
