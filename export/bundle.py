"""``edgeadapt export``: run folder -> bundle folder (model.onnx, manifest.json, samples.npz)."""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from ..backbones import text_backbone_dir
from ..backbones.bert import TOKENIZER_FILE
from ..checkpoint import load_trained_model
from ..cost import GateCosts
from ..errors import UserError
from ..evaluate import batch_inputs
from ..rundir import METRICS, RunDir, prepare_output, save_npz, staged_folder, write_json
from ..runtime.bundle import DENSE, FORMAT_VERSION, MANIFEST, MODEL, SAMPLES, sha256_file
from ..runtime.devices import DeviceProfile
from .budgets import budget_table
from .dense_graph import inline_if_nodes
from .device_fit import fit_to_device
from .onnx_graph import INPUT, OPSET, OUTPUTS, THRESHOLDS, count_if_nodes, export_onnx, set_threshold_default
from .parity import check_dense_parity, check_parity

MAX_SAMPLES = 64      # held-out images carried in the bundle for benchmarking
PARITY_SAMPLES = 8


def export_run(run_dir: Path, out_dir: Path, force: bool = False, log: Callable[[str], None] = print,
               device: DeviceProfile | None = None, freeze_static: bool = False) -> dict:
    """Export, check parity, write the bundle through a temporary folder; returns the manifest.

    With a ``device``, the default thresholds are chosen to fit its latency budget (see device_fit).
    ``freeze_static``: gates that never or always opened on the held-out set lose their If (see static_gates).
    """
    out_dir = Path(out_dir)
    prepare_output(out_dir, force, "bundle")
    model, meta = load_trained_model(run_dir)
    run = RunDir(Path(run_dir))
    metrics = run.load_json(METRICS)
    arrays, targets = run.load_holdout_arrays()
    config = model.config
    text = "input_ids" in arrays
    kind = "text" if text else "array" if "inputs" in arrays else "image"
    norm = meta["normalization"]
    site_of = dict(zip(model.gate_names, config.gated_blocks))
    gate_costs = GateCosts(**meta["costs"])
    all_costs = dict(zip(model.gate_names, gate_costs.for_scope(config.gate_scope)))
    all_macs = dict(zip(model.gate_names, gate_costs.macs_for(config.gate_scope)))
    frozen = static_gates(metrics["gate_rates"], config.gate_scope, config.exit_mix > 0) if freeze_static else {}
    if frozen:
        model.freeze_gates({site_of[name]: STATIC_RUNS[state] for name, state in frozen.items()})
        log(f"static gates without If: {', '.join(f'{k} {v}' for k, v in frozen.items())}")
    gated = bool(model.gate_names)  # False for the baselines, and for a sparse run whose gates all froze
    if device is not None and not gated:
        raise UserError(f"{run_dir} is a {config.mode} baseline without gates: --device has no thresholds to "
                        "choose; export without it and check the device with 'edgeadapt bench --device'")
    with staged_folder(out_dir) as tmp:
        log("exporting to ONNX (one If per gate)...")
        started = time.perf_counter()
        proto = export_onnx(model, tmp / MODEL)
        n_if = count_if_nodes(proto, nested=True)
        if n_if != model.expected_if_nodes:
            raise UserError(f"export produced {n_if} If nodes for {len(model.gate_names)} gates and "
                            f"{model.expected_if_nodes - len(model.gate_names)} adapter experts")
        first = np.arange(min(PARITY_SAMPLES, len(targets)))
        feeds = {name: t.numpy() for name, t in zip(model.input_names, batch_inputs(arrays, first, norm))}
        parity = check_parity(model, str(tmp / MODEL), feeds)
        log(f"parity with PyTorch: max |logit diff| {max(parity.values()):.1e} over "
            f"{', '.join(parity)} ({time.perf_counter() - started:.0f}s)")
        costs = meta["costs"]
        scope_costs = [all_costs[name] for name in model.gate_names]
        table = []
        if gated:
            log("tabulating compute and accuracy across thresholds (for run-time --budget)...")
            table = budget_table(model, arrays, targets, norm, scope_costs)
        keep = _spread(targets, MAX_SAMPLES)
        sample_key = {"text": "texts", "array": "inputs", "image": "images"}[kind]
        save_npz(tmp / SAMPLES, **{sample_key: arrays[sample_key][keep]}, targets=targets[keep])
        files = [MODEL, SAMPLES]
        if text:
            shutil.copyfile(text_backbone_dir(config.backbone, config.backbone_dir) / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
            files.append(TOKENIZER_FILE)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "backbone": config.backbone,
            "mode": config.mode,
            "static_closed": config.static_closed,
            "static_gates": frozen,
            "freeze_static_gates": bool(freeze_static),  # asked for, whether or not any gate qualified
            "gate_scope": config.gate_scope,
            "adapters": {"experts": config.experts, "top_k": config.top_k},
            "budget": config.budget,
            "budget_statistic": config.budget_statistic,
            "labels": config.labels,
            "input": {"text": _text_input, "array": _array_input, "image": _image_input}[kind](config, norm),
            "outputs": {"logits": OUTPUTS[0], "gates": OUTPUTS[1] if gated else None},
            "gate_thresholds_input": THRESHOLDS if gated else None,
            "gates": [{"name": name, "block": block, "threshold": float(t), "macs": int(all_macs[name]),
                       "cost": int(c), "heldout_rate": float(metrics["gate_rates"][name])}
                      for name, block, t, c in zip(model.gate_names, config.gated_blocks,
                                                   model.thresholds.tolist(), scope_costs)],
            "total_macs_all_open": costs["total_macs"],
            "opset": OPSET,
            "parity_max_abs_diff": parity,
            "budget_table": table,
            "metrics": {k: metrics.get(k) for k in ("heldout_accuracy", "heldout_macro_f1", "heldout_accuracy_all_open",
                                                     "heldout_accuracy_ci95", "heldout_accuracy_all_open_ci95", "gap_p_value",
                                                     "linear_probe_accuracy", "compute_fraction", "compute_median", "mac_saving",
                                                     "trainable_parameters")},
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        if device is not None:
            fit = fit_to_device(tmp / MODEL, manifest, arrays[sample_key][keep], device, log)
            thr = np.full(len(model.gate_names), fit["chosen"]["threshold"], np.float32)
            set_threshold_default(proto, thr)
            onnx.save(proto, str(tmp / MODEL))
            for gate, t in zip(manifest["gates"], thr.tolist()):
                gate["threshold"] = t
            manifest["device_fit"] = fit
            manifest["files"][MODEL] = sha256_file(tmp / MODEL)
            chosen = fit["chosen"]
            log(f"{device.name}: threshold {chosen['threshold']:g}, compute {chosen['compute_fraction']:.2f}, "
                f"expected p{fit['latency_percentile']:g} {chosen['expected_latency_ms']:.2f} ms "
                f"(budget {fit['latency_budget_ms']:g} ms), held-out accuracy {chosen['heldout_accuracy']:.3f}")
        if gated:
            onnx.save(inline_if_nodes(proto), str(tmp / DENSE))
            manifest["dense_parity_max_abs_diff"] = check_dense_parity(tmp / MODEL, tmp / DENSE, feeds, len(model.gate_names))
            manifest["files"][DENSE] = sha256_file(tmp / DENSE)
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _image_input(config, norm: dict) -> dict:
    return {"kind": "image", "name": INPUT, "shape": ["N", 3, config.image_size, config.image_size],
            "image_size": config.image_size, "layout": "NCHW", "color": "RGB",
            "resize": "bilinear to image_size x image_size", "scale": 1 / 255,
            "mean": norm["mean"], "std": norm["std"], "dtype": "float32"}


def _array_input(config, norm: dict) -> dict:
    return {"kind": "array", "name": INPUT, "shape": ["N", *config.input_shape], "dtype": "float32"}


def _text_input(config, norm: dict) -> dict:
    return {"kind": "text", "names": ["input_ids", "attention_mask"], "shape": ["N", "T"], "dtype": "int64",
            "tokenizer": TOKENIZER_FILE, "max_length": config.max_length,
            "padding": "to the longest text of the batch; attention_mask 1 on tokens, 0 on padding"}


# what each frozen state means for its block (or, for an exit, for everything after it): does it run?
STATIC_RUNS = {"always runs": True, "dropped": False, "never taken": True}


def static_gates(gate_rates: dict[str, float], scope: str = "block", mixes_last_exit: bool = False) -> dict[str, str]:
    """Gates whose held-out open rate was exactly 0 or 1: ``dropped`` or ``always runs`` once frozen. Early
    exits: only those no held-out input left at (every input went on), ``never taken``: they lose their head;
    the last keeps it where the final answer mixes it in (``exit_mix``).

    Freezing removes their If and gate ops (less overhead), but run-time ``--budget`` can no longer move them.
    """
    if scope == "exit":
        names = list(gate_rates)[:-1] if mixes_last_exit else list(gate_rates)
        return {name: "never taken" for name in names if gate_rates[name] == 1.0}
    return {name: "dropped" if rate == 0.0 else "always runs" for name, rate in gate_rates.items() if rate in (0.0, 1.0)}


def _spread(targets: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices taking classes in turn, so the bundle's samples cover every class."""
    by_class = [list(np.flatnonzero(targets == c)) for c in np.unique(targets)]
    out: list[int] = []
    while len(out) < n and any(by_class):
        for idx in by_class:
            if idx and len(out) < n:
                out.append(idx.pop(0))
    return np.sort(np.asarray(out, dtype=np.int64))
