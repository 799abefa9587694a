"""A bundle on disk: ``model.onnx``, ``manifest.json`` and held-out samples, every file hashed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

MANIFEST = "manifest.json"
MODEL = "model.onnx"
DENSE = "model_dense.onnx"  # the same model with every If inlined (for devices where conditionals cost)
SAMPLES = "samples.npz"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex digest of a file, read in chunks so large models do not double memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A verified bundle: its folder and parsed manifest."""

    root: Path
    manifest: dict

    @property
    def model_path(self) -> Path:
        return self.root / MODEL

    @property
    def has_gates(self) -> bool:
        """Baseline bundles (dense, static, linear-probe, full) have no gates: one graph, no If."""
        return bool(self.manifest["gates"])

    def graph_path(self, graph: str) -> Path:
        """``gated`` (one If per gate) or ``dense`` (no If); a bundle without gates has only the one graph."""
        if graph == "dense" and self.has_gates:
            if not (self.root / DENSE).exists():
                raise UserError(f"bundle {self.root} has no {DENSE}; re-export it to run the dense graph")
            return self.root / DENSE
        return self.model_path

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def gate_names(self) -> list[str]:
        return [g["name"] for g in self.manifest["gates"]]

    @property
    def kind(self) -> str:
        """``image``, ``text`` or ``array`` (bundles from before text support are image bundles)."""
        return self.manifest["input"].get("kind", "image")

    @property
    def image_size(self) -> int:
        return int(self.manifest["input"]["image_size"])

    def default_thresholds(self) -> np.ndarray:
        return np.asarray([g["threshold"] for g in self.manifest["gates"]], np.float32)

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out images (uint8 ``[N, H, W, 3]``) or texts, and their label indices, as stored at export."""
        path = self.root / SAMPLES
        if not path.exists():
            raise UserError(f"bundle {self.root} holds no samples; pass --data with inputs to run")
        with np.load(path, allow_pickle=False) as data:
            return data[{"text": "texts", "array": "inputs"}.get(self.kind, "images")], data["targets"]


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read the manifest and check every listed file against its sha256."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"bundle {root} does not exist; create one with 'edgeadapt export RUN_DIR --out {root}'")
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise UserError(f"bundle {root} has no {MANIFEST}; re-export it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{manifest_path} is not valid JSON ({exc}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{manifest_path} is not an edgeadapt bundle manifest of format {FORMAT_VERSION}")
    if verify:
        for name, expected in manifest.get("files", {}).items():
            path = root / name
            if not path.exists():
                raise UserError(f"bundle {root} is missing {name}; re-export the bundle")
            if sha256_file(path) != expected:
                raise UserError(f"{path} does not match its sha256 in {MANIFEST} (tampered or corrupt); re-export")
        if MODEL not in manifest.get("files", {}):
            raise UserError(f"{manifest_path} lists no {MODEL}; re-export the bundle")
    return Bundle(root, manifest)


def budget_column(manifest: dict) -> str:
    """The budget table column a budget is read against: bundles from before 2026-11-29 have only the mean."""
    table = manifest.get("budget_table") or [{}]
    return "compute_median" if manifest.get("budget_statistic") == "median" and "compute_median" in table[0] \
        else "compute_fraction"


def require_gates(bundle: Bundle, option: str) -> None:
    """Options about gates refuse the baselines (dense, static, linear-probe, full) in one clear line."""
    if not bundle.has_gates:
        raise UserError(f"bundle {bundle.root} has no gates (mode {bundle.manifest.get('mode')}); {option} applies "
                        "only to sparse bundles")


def thresholds_for_budget(bundle: Bundle, budget: float) -> np.ndarray:
    """Per-gate thresholds from the bundle's budget table: the most compute that stays within ``budget``, for
    the median input or the mean as the bundle was calibrated (``budget_statistic``)."""
    table = bundle.manifest.get("budget_table")
    require_gates(bundle, "--budget")
    if not table:
        raise UserError(f"bundle {bundle.root} has no budget table; re-export it to use --budget")
    key = budget_column(bundle.manifest)
    fitting = [r for r in table if r[key] <= budget + 1e-9]
    if not fitting:
        least = min(r[key] for r in table)
        raise UserError(f"--budget {budget:g} is below the least compute this bundle reaches ({least:.3f})")
    best = max(fitting, key=lambda r: (r[key], -r["threshold"]))
    return np.full(len(bundle.gate_names), best["threshold"], np.float32)
