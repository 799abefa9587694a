"""Where training runs: the ``--accelerator`` choice, and a training forward that keeps every tensor on its input's
device. No GPU is needed: PyTorch's meta device refuses to mix with CPU tensors as CUDA does, so a tensor made
on the CPU inside the forward (which would break GPU training) fails here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeadapt.adapters import GatedAdapterConfig, create_model
from edgeadapt.backbones.bert import write_tiny_bert
from edgeadapt.data.synthetic_text import vocabulary
from edgeadapt.distributed import training_device
from edgeadapt.errors import UserError


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_trains_on_the_cpu_without_a_gpu(no_gpu: None) -> None:
    assert training_device("auto") == training_device("cpu") == torch.device("cpu")


def test_auto_takes_the_gpu_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")  # torchrun's fourth process on this machine: the second GPU
    assert training_device("auto") == training_device("cuda") == torch.device("cuda", 1)
    assert training_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_says_what_to_do(no_gpu: None) -> None:
    with pytest.raises(UserError, match="accelerator cuda, but torch sees no CUDA GPU.*use --set accelerator=cpu or auto"):
        training_device("cuda")


def _image(**kw) -> GatedAdapterConfig:
    return GatedAdapterConfig(image_size=64, num_classes=3, **kw)


CONFIGS = {
    "block": lambda tmp: _image(gate_scope="block"),
    "adapter": lambda tmp: _image(gate_scope="adapter"),
    "exit-confidence": lambda tmp: _image(gate_scope="exit"),
    "exit-learned": lambda tmp: _image(gate_scope="exit", exit_rule="learned"),
    "banks": lambda tmp: _image(experts=3, top_k=2),
    "static": lambda tmp: _image(mode="static", static_closed=[2, 9]),
    "text": lambda tmp: GatedAdapterConfig(backbone="bert", num_classes=3, max_length=16, backbone_dir=str(
        write_tiny_bert(tmp / "bert", vocabulary(), hidden=32, layers=2, heads=4))),
    "custom": lambda tmp: GatedAdapterConfig(backbone="module:sensor_backbone:build", blocks="stage?.*",
                                             input_shape=[3, 128], num_classes=3),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_forward_stays_on_the_inputs_device(name: str, tmp_path: Path) -> None:
    model = create_model(CONFIGS[name](tmp_path))
    feats = model.prefix(*model.example_inputs(4))  # the cached prefix, made where the model was
    model.to("meta").train()
    logits, p_open = model.suffix(feats.to("meta"))
    targets = torch.zeros(4, dtype=torch.long, device="meta")
    loss = (torch.nn.functional.cross_entropy(logits, targets) + p_open.sum() + model.margin_loss(3.0)
            + model.exit_loss(targets) + model.balance_loss())
    loss.backward()
    assert logits.device.type == loss.device.type == "meta"
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == "meta" for g in grads)


@pytest.mark.slow
def test_fast_layout_run_exports_with_parity(tmp_path: Path) -> None:
    """A run trained folded and channels-last is saved in the plain layout and exports onto the unfolded
    backbone within the parity tolerance: the checkpoint does not depend on how training was laid out."""
    from edgeadapt.export.bundle import export_run

    from edgeadapt.data.synthetic import write_dataset
    from edgeadapt.train import TrainOptions, run_training

    data = write_dataset(tmp_path / "data", per_class=6, size=64)
    metrics = run_training(data, tmp_path / "run", _image(), TrainOptions(epochs=2, fast_layout=True),
                           log=lambda m: None)
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"fast_layout": true' in config and metrics["device"] == "cpu"
    manifest = export_run(tmp_path / "run", tmp_path / "bundle", log=lambda m: None)
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4
