"""Early exits (gate scope ``exit``): nested Ifs, the rest of the network skipped for inputs that leave."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import IMAGE_SIZE, Trained, run_cli
from edgeadapt.export.bundle import export_run
from edgeadapt.export.onnx_graph import count_if_nodes
from edgeadapt.runtime.gates import CLOSE_ALL, OPEN_ALL

from edgeadapt.adapters import GatedAdapterConfig, create_model
from edgeadapt.cost import measure_costs
from edgeadapt.formats import migrate_run_config
from edgeadapt.train import TrainOptions, run_training


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model(GatedAdapterConfig(num_classes=3, image_size=IMAGE_SIZE, gate_scope="exit",
                                        exit_rule="learned")).eval()
    with torch.no_grad():
        h = m.prefix(_x())
        for j, head in enumerate(m.exit_heads):  # gates that split inputs, exits that predict something
            torch.nn.init.normal_(head.gate.proj.weight, std=2.0)
            torch.nn.init.normal_(head.classifier.weight, std=0.5)
            h = m.run_segment(j, h)
            head.gate.proj.bias -= head.gate(h).median()  # about half of the inputs go on at threshold 0
    return m


def _x(n: int = 6) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32))


def test_default_exits_end_stages(model) -> None:
    assert model.config.exits == [2, 4, 7] and model.gate_names == ["exit02", "exit04", "exit07"]
    assert model.config.gated_blocks == [2, 4, 7]


def _final_and_last_exit(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = model.prefix(x)
    for j in range(3):
        h = model.run_segment(j, h)
    return model.final_logits(model.run_segment(3, h)), model.exit_heads[2].logits(h)


def test_all_open_is_the_full_network_and_all_closed_the_first_exit(model) -> None:
    """All open: the final head's probabilities mixed with ``exit_mix`` (0.4 by default) of the last exit's."""
    x = _x()
    with torch.no_grad():
        logits, gates = model(x, torch.full((3,), OPEN_ALL))
        final, last = _final_and_last_exit(model, x)
        mixed = (0.6 * final.softmax(1) + 0.4 * last.softmax(1)).log()
        assert model.config.exit_mix == 0.4 and gates.all()
        assert torch.allclose(logits, mixed, atol=1e-5) and not torch.allclose(logits, final.log_softmax(1), atol=1e-3)
        logits, gates = model(x, torch.full((3,), CLOSE_ALL))
        first = model.exit_heads[0].logits(model.run_segment(0, model.prefix(x)))
        assert torch.allclose(logits, first, atol=1e-5) and not gates.any()


def test_a_sample_does_not_depend_on_its_batch(model) -> None:
    x = _x()
    with torch.no_grad():
        together, gates = model(x, torch.zeros(3))
        alone = [model(x[i:i + 1], torch.zeros(3)) for i in range(len(x))]
    assert 0 < gates.sum() < gates.numel()  # mixed decisions, or the test shows nothing
    np.testing.assert_allclose(together.numpy(), torch.cat([a[0] for a in alone]).numpy(), atol=1e-5)
    assert torch.equal(gates, torch.cat([a[1] for a in alone]))
    # a gate after an exit the sample took reads closed: it left
    for row in gates.tolist():
        assert row == sorted(row, reverse=True)


def test_the_mix_answers_only_inputs_that_passed_every_exit(model) -> None:
    """Inputs that left keep their exit's logits; the rest get the mixture; ``exit_mix`` 0 is the final head."""
    x, thresholds = _x(), torch.tensor([OPEN_ALL, OPEN_ALL, 0.0])  # every input reaches the last exit
    with torch.no_grad():
        logits, gates = model(x, thresholds)
        model.config.exit_mix = 0.0
        try:
            plain, _ = model(x, thresholds)
        finally:
            model.config.exit_mix = 0.4
        final, last = _final_and_last_exit(model, x)
    went_on = gates.all(dim=1)
    assert 0 < went_on.sum() < len(x)  # some passed every exit, some left, or the test shows nothing
    torch.testing.assert_close(logits[~went_on], plain[~went_on])
    torch.testing.assert_close(plain[went_on], final[went_on])
    torch.testing.assert_close(logits[went_on].exp(), 0.6 * final[went_on].softmax(1) + 0.4 * last[went_on].softmax(1))


def test_mix_heads_is_a_stable_log_of_mixed_probabilities() -> None:
    from edgeadapt.adapters.model import mix_heads

    final = torch.tensor([[2.0, 0.0, -1.0], [900.0, -900.0, 0.0]])
    last = torch.tensor([[0.0, 3.0, 0.0], [-900.0, 900.0, 0.0]])
    assert mix_heads(final, last, 0.0) is final
    mixed = mix_heads(final, last, 0.25)
    assert torch.isfinite(mixed).all()  # logits far apart: no log(0)
    torch.testing.assert_close(mixed.exp(), 0.75 * final.softmax(1) + 0.25 * last.softmax(1))
    assert mixed.argmax(1).tolist() == [0, 0]
    assert mix_heads(final, last, 0.5).argmax(1).tolist() == [1, 0]  # a sure last exit outvotes a less sure final head


def test_confidence_exits_let_confident_inputs_leave() -> None:
    torch.manual_seed(0)
    m = create_model(GatedAdapterConfig(num_classes=3, image_size=IMAGE_SIZE, gate_scope="exit")).eval()
    assert all(head.gate is None for head in m.exit_heads)  # no trained gate: the exit's confidence decides
    for head in m.exit_heads:
        torch.nn.init.normal_(head.classifier.weight, std=0.5)
    x = _x(8)
    with torch.no_grad():
        first = m.exit_heads[0].logits(m.run_segment(0, m.prefix(x)))
        p = first.softmax(1).amax(1)
        threshold = float(torch.log((1 - p.median()) / p.median()))
        _, gates = m(x, torch.tensor([threshold, OPEN_ALL, OPEN_ALL]))
    np.testing.assert_array_equal(gates[:, 0].numpy() == 0, (p >= p.median()).numpy())  # the surer half leaves
    assert 0 < gates[:, 0].sum() < len(x)


def test_exits_learn_from_the_final_head_without_moving_it() -> None:
    """Self-distillation: the exit loss adds each exit's KL from the final head's softened predictions, and its
    gradient reaches the exits, never the final head (the teacher is detached)."""
    from edgeadapt.adapters.model import DISTILL_TEMPERATURE as T

    torch.manual_seed(0)
    m = create_model(GatedAdapterConfig(num_classes=3, image_size=IMAGE_SIZE, gate_scope="exit", exits=[4, 7])).train()
    y = torch.tensor([0, 1, 2, 1])
    m(_x(4), torch.zeros(2))
    exits, final = m._exit_logits, m._final_logits
    labels_only = m.exit_loss(y, 0.1)
    ce = sum(torch.nn.functional.cross_entropy(e, y, label_smoothing=0.1) for e in exits) / 2
    torch.testing.assert_close(labels_only, ce)
    teacher = (final.detach() / T).softmax(1)
    kl = sum((teacher * (teacher.log() - (e / T).log_softmax(1))).sum(1).mean() for e in exits) / 2
    assert kl > 1e-4  # untrained exits disagree with the head, or the test shows nothing
    with_kd = m.exit_loss(y, 0.1, distill=0.5)
    torch.testing.assert_close(with_kd, ce + 0.5 * T * T * kl, rtol=1e-5, atol=1e-6)
    m.zero_grad()
    (with_kd - labels_only).backward()
    assert m.head.weight.grad is None or not m.head.weight.grad.any()
    assert m.exit_heads[0].classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("joint", [False, True])
def test_exit_loss_trains_only_the_exit_heads_unless_joint(joint: bool) -> None:
    """By default each exit learns on detached features: its loss moves its own head and nothing the final head
    depends on. ``exit_joint``: deep supervision, the loss reaches the adapters before the exit too."""
    torch.manual_seed(0)
    m = create_model(GatedAdapterConfig(num_classes=3, image_size=IMAGE_SIZE, gate_scope="exit", exits=[4, 7],
                                        exit_joint=joint), pretrained=False).train()
    m(_x(4), torch.zeros(2))
    m.zero_grad()
    m.exit_loss(torch.tensor([0, 1, 2, 1])).backward()
    heads = {id(p) for p in m.exit_heads.parameters()}
    moved = [n for n, p in m.named_parameters() if id(p) not in heads and p.grad is not None and p.grad.any()]
    assert all(p.grad is not None and p.grad.any() for p in (h.classifier.weight for h in m.exit_heads))
    assert (len(moved) > 0) is joint and all(".adapter." in n for n in moved)


def test_uncertainty_is_the_log_odds_of_the_top_class() -> None:
    from edgeadapt.adapters.layer import uncertainty

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [50.0, 0.0, 0.0]])
    p = logits.softmax(1).amax(1)
    np.testing.assert_allclose(uncertainty(logits)[:2, 0].numpy(), torch.log((1 - p) / p)[:2].numpy(), rtol=1e-5)
    assert uncertainty(logits)[1, 0] == pytest.approx(np.log(2.0)) and uncertainty(logits)[2, 0] < -20


def test_runs_from_before_exit_rules_keep_their_learned_gate() -> None:
    old = GatedAdapterConfig(gate_scope="exit").to_dict()
    del old["exit_rule"]  # a run config of format 1 (no format_version)
    assert GatedAdapterConfig.from_dict(migrate_run_config({"config": old})["config"]).exit_rule == "learned"
    with pytest.raises(ValueError, match="exit rule must be one of confidence, learned"):
        GatedAdapterConfig(gate_scope="exit", exit_rule="entropy")


def test_exit_heads_widen_before_pooling_and_older_runs_keep_theirs() -> None:
    """``exit_expand``: a 1x1 conv to that many times the channels, ReLU6, then pooling; runs saved before the
    option (no ``exit_expand`` in their config) rebuild without it, so their checkpoints still load."""
    from edgeadapt.adapters.layer import ExitHead

    torch.manual_seed(0)
    head, h = ExitHead(8, 3, expand=4).eval(), torch.randn(2, 8, 5, 5)
    assert (head.expand.in_channels, head.expand.out_channels, head.classifier.in_features) == (8, 32, 32)
    with torch.no_grad():
        pooled = torch.nn.functional.relu6(head.expand(h + head.adapter(h))).mean(dim=(2, 3))
        torch.testing.assert_close(head.logits(h), head.classifier(pooled))
    assert ExitHead(8, 3, expand=0).expand is None and ExitHead(8, 3, expand=0).classifier.in_features == 8
    old = GatedAdapterConfig(gate_scope="exit").to_dict()
    assert old["exit_expand"] == 4
    del old["exit_expand"], old["exit_joint"], old["exit_mix"]
    legacy = create_model(GatedAdapterConfig.from_dict(migrate_run_config({"config": old})["config"]), pretrained=False)
    assert legacy.config.exit_expand == 0 and legacy.config.exit_joint is True
    assert legacy.config.exit_mix == 0.0  # before commit 7227c23 the final head alone answered
    assert not any(".expand." in k for k in legacy.trainable_state())
    with pytest.raises(ValueError, match="exit expand must be 0 .none. or more, not -1"):
        GatedAdapterConfig(gate_scope="exit", exit_expand=-1)
    with pytest.raises(ValueError, match="exit mix must be at least 0 and below 1, not 1.0"):
        GatedAdapterConfig(gate_scope="exit", exit_mix=1.0)


def test_wider_exit_heads_count_in_the_budget() -> None:
    """What going on past exit 0 costs includes exit 1's head, so its expand conv's MACs show there."""
    def costs(expand: int):
        config = GatedAdapterConfig(num_classes=3, image_size=IMAGE_SIZE, gate_scope="exit", exit_expand=expand)
        return measure_costs(create_model(config, pretrained=False)).exit_macs

    wide, plain = costs(4), costs(0)
    side = IMAGE_SIZE // 8  # block 4 ends stage 3 (stride 8): 40 channels
    assert wide[0] - plain[0] == pytest.approx(40 * 160 * side * side, rel=0.05)
    assert wide[2] == plain[2]  # past the last exit: only the final head, the same in both


def test_exit_costs_cover_what_each_exit_skips(model) -> None:
    costs = measure_costs(model)
    assert len(costs.exit_macs) == 3 and all(c > 0 for c in costs.exit_macs)
    assert sum(costs.exit_macs) < costs.total_macs


@pytest.mark.slow
def test_train_and_export_with_exits(trained: Trained, tmp_path: Path) -> None:
    config = GatedAdapterConfig(image_size=IMAGE_SIZE, gate_scope="exit", budget=0.5)
    metrics = run_training(trained.data, tmp_path / "run", config,
                           TrainOptions(epochs=2, batch_size=16, calibration_samples=32), log=lambda m: None)
    assert set(metrics["gate_rates"]) == {"exit02", "exit04", "exit07"}
    assert 0.0 < metrics["mac_saving"] < 1.0
    manifest = export_run(tmp_path / "run", tmp_path / "bundle", log=lambda m: None)
    assert manifest["gate_scope"] == "exit" and [g["name"] for g in manifest["gates"]] == ["exit02", "exit04", "exit07"]
    # parity (gates deployed, all open, all closed, mixed) and the graph without If were checked by export
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-4 and manifest["dense_parity_max_abs_diff"] <= 1e-4
    gated = onnx.load(str(tmp_path / "bundle" / "model.onnx"))
    assert count_if_nodes(gated) == 1 and count_if_nodes(gated, nested=True) == 3  # one If inside the other
    assert count_if_nodes(onnx.load(str(tmp_path / "bundle" / "model_dense.onnx")), nested=True) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())  # as if no held-out input left at exit02
    metrics["gate_rates"] = {"exit02": 1.0, "exit04": 0.5, "exit07": 0.5}
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    res = run_cli("export", tmp_path / "run", "--out", tmp_path / "b2", "--freeze-static-gates")
    assert res.returncode == 0 and "static gates without If: exit02 never taken" in res.stderr
    frozen = json.loads((tmp_path / "b2" / "manifest.json").read_text())
    assert frozen["static_gates"] == {"exit02": "never taken"} and [g["name"] for g in frozen["gates"]] == ["exit04", "exit07"]
    assert count_if_nodes(onnx.load(str(tmp_path / "b2" / "model.onnx")), nested=True) == 2
    assert max(frozen["parity_max_abs_diff"].values()) <= 1e-4


@pytest.mark.slow
def test_train_exits_where_the_user_places_them(trained: Trained, tmp_path: Path) -> None:
    """``exits=7``: one exit after block 7, so one If, and a gate rate for it alone; ``exit_mix`` is kept."""
    res = run_cli("train", "--data", trained.data, "--out", tmp_path / "run", "--gate-scope", "exit", "--set", "exits=7",
                  "--set", "exit_mix=0.25", "--epochs", "1", "--image-size", IMAGE_SIZE, "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert list(metrics["gate_rates"]) == ["exit07"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["exits"] == [7] and config["exit_mix"] == 0.25
    res = run_cli("export", tmp_path / "run", "--out", tmp_path / "bundle")
    assert res.returncode == 0, res.stderr
    assert count_if_nodes(onnx.load(str(tmp_path / "bundle" / "model.onnx")), nested=True) == 1


@pytest.mark.slow
def test_exits_no_input_took_are_frozen_out(model, tmp_path: Path) -> None:
    """An exit every input passed loses its head and its If; the rest computes exactly what it did."""
    import copy

    from edgeadapt.export.bundle import static_gates

    assert static_gates({"exit02": 1.0, "exit04": 0.0, "exit07": 0.4}, "exit") == {"exit02": "never taken"}
    # the last exit's head also answers the inputs that pass it when the final head mixes it in (exit_mix)
    every_input_went_on = {"exit02": 1.0, "exit04": 1.0, "exit07": 1.0}
    assert static_gates(every_input_went_on, "exit", mixes_last_exit=True) == {"exit02": "never taken",
                                                                                "exit04": "never taken"}
    assert len(static_gates(every_input_went_on, "exit")) == 3
    frozen = copy.deepcopy(model)
    frozen.freeze_gates({model.config.exits[0]: True})
    assert frozen.gate_names == ["exit04", "exit07"] and len(frozen.exit_heads) == 2
    x = _x()
    with torch.no_grad():
        thr = model.thresholds.clone()
        thr[0] = OPEN_ALL  # go on past exit02 for every input: what the frozen model does
        ref, ref_gates = model(x, thr)
        got, gates = frozen(x)
    assert torch.allclose(got, ref, atol=1e-5) and torch.equal(gates, ref_gates[:, 1:])
    with pytest.raises(ValueError, match="exit07 took every input"):
        copy.deepcopy(model).freeze_gates({model.config.exits[2]: False})
    with pytest.raises(ValueError, match=r"exit07 is mixed into the final answer \(exit mix 0.4\): it keeps its head"):
        copy.deepcopy(model).freeze_gates({model.config.exits[2]: True})
    path = tmp_path / "frozen.onnx"
    from edgeadapt.export.onnx_graph import export_onnx

    assert count_if_nodes(export_onnx(frozen, path), nested=True) == 2


def test_exit_scope_is_refused_off_lite0(tmp_path: Path) -> None:
    from edgeadapt.backbones.bert import write_tiny_bert
    from edgeadapt.data.synthetic_text import vocabulary

    model_dir = write_tiny_bert(tmp_path / "b", vocabulary(), hidden=32, layers=1, heads=4)
    with pytest.raises(ValueError, match="gate scope exit .early exits. is built for EfficientNet-Lite0 only, not bert"):
        GatedAdapterConfig(backbone="bert", backbone_dir=str(model_dir), gate_scope="exit")
    with pytest.raises(ValueError, match="built for EfficientNet-Lite0 only, not module:sensor_backbone:build"):
        GatedAdapterConfig(backbone="module:sensor_backbone:build", blocks="stage?.*", gate_scope="exit")
    # the baselines have no gates, so the scope means nothing to them
    assert create_model(GatedAdapterConfig(backbone="bert", backbone_dir=str(model_dir), gate_scope="exit",
                                           mode="dense", num_classes=2)).config.mode == "dense"
