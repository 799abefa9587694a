"""Rebuild a trained model from its run folder: pretrained backbone + safetensors of what was trained."""
from __future__ import annotations

from pathlib import Path

import torch

from .adapters import GatedAdapterConfig, GatedModel, create_model
from .errors import UserError
from .rundir import CONFIG, WEIGHTS, RunDir


def load_trained_model(run_dir: str | Path) -> tuple[GatedModel, dict]:
    """The model in eval mode with calibrated thresholds, and the run's ``config.json``."""
    run = RunDir(Path(run_dir))
    run.check()
    meta = run.load_config()
    try:
        config = GatedAdapterConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run.path(CONFIG)} has a bad config ({exc}); re-run 'edgeadapt train'") from None
    model = create_model(config)
    load_weights(model, run)
    return model.eval(), meta


def load_weights(model: GatedModel, run: RunDir) -> None:
    """Copy a run's trained weights into ``model``, built from the same config: every key and shape must match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(run.path(WEIGHTS)))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{run.path(WEIGHTS)} is not a readable safetensors file ({exc}); re-run 'edgeadapt train'") from None
    expected = set(model.trainable_state())
    if set(state) != expected:
        missing = sorted(expected - set(state))[:3]
        raise UserError(f"{run.path(WEIGHTS)} does not match the config (missing e.g. {missing}); re-run 'edgeadapt train'")
    with torch.no_grad():
        current = model.state_dict()
        for k, v in state.items():
            if current[k].shape != v.shape:
                raise UserError(f"{run.path(WEIGHTS)}: {k} has shape {list(v.shape)}, expected {list(current[k].shape)}")
            current[k].copy_(v)
