"""A tiny gated bundle built with ``onnx.helper`` in well under a second: tests of the runtime, bench and the
device-side commands need a bundle in the exact format ``edgeadapt export`` writes, not a trained model.

The graph mirrors an exported one: ``input`` [N, 3, 8, 8] float32 and ``gate_thresholds`` [G] (an overridable
input whose initializer holds the deployed values) in; ``logits`` [N, K] and ``gates`` [N, G] (0/1) out. Each
gate is a Gemm on the features, its margin ``logit - threshold``, and one ``If`` on "any sample open" whose
then-branch runs a small adapter (MatMul, Tanh, MatMul) and keeps it per sample with ``Where``; the else-branch passes
the features through. The head leans towards the first label, and every open adapter adds class evidence, so
accuracy grows with compute as in a trained bundle. ``reference`` computes the same function in numpy, so tests
check the runtime's numbers.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from edgeadapt.export.dense_graph import inline_if_nodes
from edgeadapt.runtime.bundle import DENSE, FORMAT_VERSION, MANIFEST, MODEL, SAMPLES, sha256_file
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SIZE = 8
LABELS = ["crack", "ok", "scratch"]
BLOCKS = [2, 4, 6]
GATES = [f"block{b:02d}" for b in BLOCKS]
COSTS = [100, 200, 300]  # per-gate compute, as the manifest's ``cost``; unequal so compute fractions are weighted
PER_CLASS = 4  # stored samples per class: 12 in all, so a gate splitting them in half opens exactly 6
HIDDEN = 16
OPSET = 18
SHARED_THRESHOLD = 0.0  # the deployed threshold, one value for every gate as calibration writes it
TABLE_GRID = [OPEN_ALL, -3.0, -1.5, -0.75, -0.25, 0.0, 0.25, 0.75, 1.5, 3.0, CLOSE_ALL]
MEAN = STD = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class Weights:
    """The tiny model's parameters; ``reference`` and the ONNX graph both read these."""

    embed: np.ndarray      # [3, HIDDEN]: per-channel mean -> features
    gate_w: np.ndarray     # [G, HIDDEN, 1]
    gate_b: np.ndarray     # [G, 1]: set so every gate opens for half the stored samples at SHARED_THRESHOLD
    down: np.ndarray       # [G, HIDDEN, 3]: the adapter's projection
    up: np.ndarray         # [G, 3, HIDDEN]
    head_w: np.ndarray     # [HIDDEN, K]
    head_b: np.ndarray     # [K]


@dataclass(frozen=True)
class Tiny:
    """A tiny bundle folder, the labelled image folder its samples were written to, and its weights."""

    bundle: Path
    data: Path
    weights: Weights


def sample_images(per_class: int = PER_CLASS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, SIZE, SIZE, 3] images whose class is the brightest colour channel, and their targets."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(per_class):
        for c in range(len(LABELS)):
            base = rng.uniform(20, 110, 3)
            base[c] = rng.uniform(150, 235)
            noise = rng.normal(0, 12, (SIZE, SIZE, 3))
            images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
            targets.append(c)
    return np.stack(images), np.asarray(targets, np.int64)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> the float32 NCHW the graph takes, as the runtime's preprocessing does."""
    x = (images.astype(np.float32) / 255.0 - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def reference(w: Weights, x: np.ndarray, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """The graph's function in numpy (float64): logits [N, K] and gates [N, G] (bool) for normalised ``x``."""
    thr = np.broadcast_to(np.asarray(thresholds, np.float64), (len(GATES),))
    h = x.astype(np.float64).mean(axis=(2, 3)) @ w.embed
    opened = []
    for k in range(len(GATES)):
        margin = h @ w.gate_w[k] + w.gate_b[k] - thr[k]  # [N, 1]
        h = np.where(margin > 0, h + _delta(w, k, h), h)
        opened.append(margin[:, 0] > 0)
    return h @ w.head_w + w.head_b, np.stack(opened, axis=1)


def _delta(w: Weights, k: int, h: np.ndarray) -> np.ndarray:
    """What adapter ``k`` adds to the features where its gate is open."""
    return np.tanh(h @ w.down[k]) @ w.up[k]


def make_weights(images: np.ndarray, seed: int = 0) -> Weights:
    """Random features, a head that reads the brightest channel but leans to the first label, adapters that
    sharpen the channel means, and gate biases that split the samples in half."""
    rng = np.random.default_rng(seed + 1)
    embed = rng.normal(0, 1, (3, HIDDEN))
    unembed = np.linalg.pinv(embed)  # features -> channel means
    head_w = unembed * 4.0  # logits ~ 4 x channel means: the brightest channel wins, but for the bias
    down = np.stack([unembed * 2.0 + rng.normal(0, 0.05, unembed.shape) for _ in GATES])
    up = np.stack([embed * 0.5 for _ in GATES])
    w = Weights(embed=embed, gate_w=rng.normal(0, 0.6, (len(GATES), HIDDEN, 1)), gate_b=np.zeros((len(GATES), 1)),
                down=down, up=up, head_w=head_w, head_b=np.asarray([5.0, 0.0, 0.0]))
    x = normalize(images)
    for k in range(len(GATES)):  # gate by gate: a gate's input depends on the gates before it
        h = x.astype(np.float64).mean(axis=(2, 3)) @ w.embed
        for j in range(k):
            margin = h @ w.gate_w[j] + w.gate_b[j] - SHARED_THRESHOLD
            h = np.where(margin > 0, h + _delta(w, j, h), h)
        logits = np.sort((h @ w.gate_w[k])[:, 0])
        mid = len(logits) // 2
        w.gate_b[k] = SHARED_THRESHOLD - (logits[mid - 1] + logits[mid]) / 2  # median at the threshold
    return Weights(**{k: np.asarray(v, np.float32) for k, v in w.__dict__.items()})


def _f32(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def build_model(w: Weights, thresholds: np.ndarray) -> onnx.ModelProto:
    """The gated graph: one top-level ``If`` per gate, branch weights local to their branch."""
    nodes = [
        helper.make_node("ReduceMean", ["input", "spatial_axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "embed"], ["h0"]),
    ]
    inits = [numpy_helper.from_array(np.asarray([2, 3], np.int64), "spatial_axes"), _f32("embed", w.embed),
             numpy_helper.from_array(np.zeros((), np.float32), "zero"), thresholds_init(thresholds)]
    for k in range(len(GATES)):
        h, nxt = f"h{k}", f"h{k + 1}"
        inits += [_f32(f"gate{k}_w", w.gate_w[k]), _f32(f"gate{k}_b", w.gate_b[k]),
                  numpy_helper.from_array(np.asarray(k, np.int64), f"gate{k}_index")]
        nodes += [
            helper.make_node("Gemm", [h, f"gate{k}_w", f"gate{k}_b"], [f"gate{k}_logit"]),
            helper.make_node("Gather", ["gate_thresholds", f"gate{k}_index"], [f"gate{k}_thr"], axis=0),
            helper.make_node("Sub", [f"gate{k}_logit", f"gate{k}_thr"], [f"gate{k}_margin"]),
            helper.make_node("ReduceMax", [f"gate{k}_margin"], [f"gate{k}_max"], keepdims=0),
            helper.make_node("Greater", [f"gate{k}_max", "zero"], [f"gate{k}_any"]),
            helper.make_node("Greater", [f"gate{k}_margin", "zero"], [f"gate{k}_open"]),
            helper.make_node("Cast", [f"gate{k}_open"], [f"gate{k}_out"], to=TensorProto.FLOAT),
        ]
        then = helper.make_graph(
            [helper.make_node("MatMul", [h, f"adapter{k}_down"], [f"adapter{k}_mm"]),
             helper.make_node("Tanh", [f"adapter{k}_mm"], [f"adapter{k}_act"]),
             helper.make_node("MatMul", [f"adapter{k}_act", f"adapter{k}_up"], [f"adapter{k}_delta"]),
             helper.make_node("Add", [h, f"adapter{k}_delta"], [f"adapter{k}_sum"]),
             helper.make_node("Where", [f"gate{k}_open", f"adapter{k}_sum", h], [f"then{k}_out"])],
            f"then{k}", [], [helper.make_tensor_value_info(f"then{k}_out", TensorProto.FLOAT, None)],
            initializer=[_f32(f"adapter{k}_down", w.down[k]), _f32(f"adapter{k}_up", w.up[k])])
        skip = helper.make_graph(
            [helper.make_node("Identity", [h], [f"else{k}_out"])],
            f"else{k}", [], [helper.make_tensor_value_info(f"else{k}_out", TensorProto.FLOAT, None)])
        nodes.append(helper.make_node("If", [f"gate{k}_any"], [nxt], then_branch=then, else_branch=skip))
    last = f"h{len(GATES)}"
    inits += [_f32("head_w", w.head_w), _f32("head_b", w.head_b)]
    nodes += [helper.make_node("Gemm", [last, "head_w", "head_b"], ["logits"]),
              helper.make_node("Concat", [f"gate{k}_out" for k in range(len(GATES))], ["gates"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny_gated",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE]),
         helper.make_tensor_value_info("gate_thresholds", TensorProto.FLOAT, [len(GATES)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)]),
         helper.make_tensor_value_info("gates", TensorProto.FLOAT, ["N", len(GATES)])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeadapt-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def thresholds_init(thresholds: np.ndarray) -> onnx.TensorProto:
    """The deployed thresholds as the default of the ``gate_thresholds`` input, as export writes them."""
    return _f32("gate_thresholds", thresholds)


def budget_table(w: Weights, x: np.ndarray, targets: np.ndarray) -> list[dict]:
    """One row per shared threshold, from the numpy reference: compute (mean and median input) and accuracy."""
    costs = np.asarray(COSTS, np.float64)
    rows = []
    for thr in TABLE_GRID:
        logits, gates = reference(w, x, thr)
        per_input = gates.astype(np.float64) @ costs / costs.sum()
        rows.append({"threshold": thr, "compute_fraction": round(float(per_input.mean()), 6),
                     "compute_median": round(float(np.median(per_input)), 6),
                     "heldout_accuracy": round(float((logits.argmax(1) == targets).mean()), 6)})
    return rows


def write_images(folder: Path, images: np.ndarray, targets: np.ndarray) -> Path:
    """The samples as PNG files in one sub-folder per label (``ok/0000.png``), as ``bench --data`` reads them."""
    counts = dict.fromkeys(range(len(LABELS)), 0)
    for img, t in zip(images, targets.tolist()):
        (folder / LABELS[t]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / LABELS[t] / f"{counts[t]:04d}.png")
        counts[t] += 1
    return folder


def write_tiny_bundle(out: Path, seed: int = 0, dense: bool = True) -> Weights:
    """Write the bundle folder ``out`` (model.onnx, model_dense.onnx, samples.npz, manifest.json); its weights."""
    out.mkdir(parents=True, exist_ok=False)
    images, targets = sample_images(seed=seed)
    w = make_weights(images, seed)
    thresholds = np.full(len(GATES), SHARED_THRESHOLD, np.float32)
    proto = build_model(w, thresholds)
    onnx.save(proto, str(out / MODEL))
    np.savez_compressed(out / SAMPLES, images=images, targets=targets)
    x = normalize(images)
    logits, gates = reference(w, x, thresholds)
    files = [MODEL, SAMPLES]
    if dense:
        onnx.save(inline_if_nodes(proto), str(out / DENSE))
        files.append(DENSE)
    accuracy = float((logits.argmax(1) == targets).mean())
    all_open = float((reference(w, x, OPEN_ALL)[0].argmax(1) == targets).mean())
    table = budget_table(w, x, targets)
    deployed = next(r for r in table if r["threshold"] == SHARED_THRESHOLD)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backbone": "tiny",
        "mode": "sparse",
        "static_closed": None,
        "static_gates": {},
        "freeze_static_gates": False,
        "gate_scope": "block",
        "adapters": {"experts": 1, "top_k": 1},
        "budget": 0.5,
        "budget_statistic": "mean",
        "labels": list(LABELS),
        "input": {"kind": "image", "name": "input", "shape": ["N", 3, SIZE, SIZE], "image_size": SIZE,
                  "layout": "NCHW", "color": "RGB", "resize": "bilinear to image_size x image_size", "scale": 1 / 255,
                  "mean": MEAN, "std": STD, "dtype": "float32"},
        "outputs": {"logits": "logits", "gates": "gates"},
        "gate_thresholds_input": "gate_thresholds",
        "gates": [{"name": name, "block": block, "threshold": SHARED_THRESHOLD, "macs": cost * 1000, "cost": cost,
                   "heldout_rate": float(gates[:, k].mean())}
                  for k, (name, block, cost) in enumerate(zip(GATES, BLOCKS, COSTS))],
        "total_macs_all_open": 2 * sum(COSTS) * 1000,
        "opset": OPSET,
        "parity_max_abs_diff": {"deployed": 0.0, "all_open": 0.0, "all_closed": 0.0, "mixed": 0.0},
        "budget_table": table,
        "metrics": {"heldout_accuracy": accuracy, "heldout_accuracy_all_open": all_open,
                    "compute_fraction": deployed["compute_fraction"], "compute_median": deployed["compute_median"]},
        "files": {name: sha256_file(out / name) for name in files},
    }
    if dense:
        manifest["dense_parity_max_abs_diff"] = 0.0
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return w


def build_tiny(root: Path, seed: int = 0) -> Tiny:
    """A tiny bundle under ``root/bundle`` and its samples as a labelled image folder under ``root/data``."""
    w = write_tiny_bundle(root / "bundle", seed)
    images, targets = sample_images(seed=seed)
    return Tiny(root / "bundle", write_images(root / "data", images, targets), w)
