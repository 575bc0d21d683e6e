"""Configuration: presets, overrides, unknown keys, resolved YAML round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adamml.config import (
    Config,
    ConfigError,
    ModelConfig,
    config_changes,
    dump_config,
    load_config,
    preset_names,
)


def test_presets_load_with_paper_numbers() -> None:
    assert {"paper-rgb-audio", "paper-rgb-flow", "paper-rgb-flow-audio", "tiny"} <= set(preset_names())
    expected = {"paper-rgb-audio": ("rgb", "audio"), "paper-rgb-flow": ("rgb", "flow"),
                "paper-rgb-flow-audio": ("rgb", "flow", "audio")}
    for name, modalities in expected.items():
        model = load_config(name).model
        assert model.modalities == modalities
        assert (model.resnet.depth, model.input_size, model.num_segments, model.frames_per_segment) == (50, 224, 10, 8)
        assert (model.policy.size, model.policy.frames, model.policy.hidden, model.policy.lstm_hidden) == (
            160, 4, (2048, 2048), 256)
        assert model.num_classes == 31 and model.fusion.kind == "weighted"
        assert model.policy.threshold == 0.5 and model.policy.temperature == 5.0
    assert load_config("tiny").model.modalities == ("rgb", "flow", "audio")


def test_overrides_parse_yaml_values() -> None:
    cfg = load_config("tiny", ["model.policy.threshold=0.25", "model.modalities=[rgb, audio]",
                               "model.resnet.pretrained=/tmp/w.pth", "model.num_classes=7"])
    assert cfg.model.policy.threshold == 0.25
    assert cfg.model.modalities == ("rgb", "audio")
    assert cfg.model.resnet.pretrained == "/tmp/w.pth"
    assert cfg.model.num_classes == 7


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  policy:\n    treshold: 0.3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "model.policy.treshold" in str(error.value) and str(path) in str(error.value)
    path.write_text("modle:\n  num_classes: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(path)


def test_unknown_override_key_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="model.polcy"):
        load_config("tiny", ["model.polcy.threshold=0.3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("tiny", ["model.num_classes"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config("tiny", ["model.num_classes=many"])
    with pytest.raises(ConfigError, match="depth must be 18, 34 or 50"):
        load_config("tiny", ["model.resnet.depth=101"])
    with pytest.raises(ConfigError, match="unknown modality"):
        load_config("tiny", ["model.modalities=[rgb, depth]"])
    with pytest.raises(ConfigError, match="fusion.kind"):
        load_config("tiny", ["model.fusion.kind=concat"])
    with pytest.raises(ConfigError, match="no preset named"):
        load_config("paper-rgb-smell")


def test_dump_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config("paper-rgb-flow", ["model.policy.threshold=0.4"])
    path = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert "threshold: 0.4" in path.read_text()


def test_a_run_trained_with_another_configuration_is_neither_reused_nor_resumed(tmp_path: Path) -> None:
    from adamml.workflows.steps import RunMismatchError, check_same_run

    cfg = load_config("tiny", ["model.num_classes=4"])
    changed = load_config("tiny", ["model.num_classes=4", "model.policy.head_input=lstm",
                                   "train.efficiency_weights.flow=0.3", "train.random_rates.rgb=0.25"])
    assert config_changes(cfg, cfg) == []
    assert config_changes(cfg, changed) == ["model.policy.head_input: 'lstm+features' -> 'lstm'",
                                            "train.efficiency_weights.flow: 0.8 -> 0.3",
                                            "train.random_rates.rgb: - -> 0.25"]
    run = tmp_path / "adamml"
    check_same_run(cfg, "adamml", run)  # nothing there yet
    dump_config(cfg, run / "config.yaml")
    check_same_run(cfg, "adamml", run)  # the same configuration: reused / resumed
    with pytest.raises(RunMismatchError, match=r"adamml holds a run of the adamml stage .*"
                                               r"head_input: 'lstm\+features' -> 'lstm'.*remove .*adamml to train"):
        check_same_run(changed, "adamml", run)
    # a baseline stage compares the configuration it trains (its fusion kind set to its own name)
    baseline = tmp_path / "gating"
    dump_config(dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, fusion=dataclasses.replace(cfg.model.fusion, kind="gating"))), baseline / "config.yaml")
    check_same_run(cfg, "gating", baseline)


def test_configs_are_frozen_and_default_to_the_paper() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.num_classes = 3  # type: ignore[misc]
    assert ModelConfig().resnet.depth == 50 and ModelConfig().policy.size == 160


def test_every_stage_has_a_record_whose_phases_have_settings():
    from adamml.config import BASELINE_KINDS, LATE_FUSION_KINDS, Config
    from adamml.stages import BASELINE_STAGES, STAGE_TABLE, STAGES, get_stage

    assert STAGES == ("unimodal", "fusion", "random", "adamml", *BASELINE_STAGES)
    # every fusion baseline trains a fusion kind the configuration knows; the labels people read come from the table
    assert {get_stage(s).fusion_kind for s in BASELINE_STAGES} == {"average", *BASELINE_KINDS}
    assert {get_stage(s).fusion_kind for s in BASELINE_STAGES} <= set(LATE_FUSION_KINDS + BASELINE_KINDS)
    assert get_stage("random").rates_from == "adamml" and get_stage("unimodal").one_modality
    assert get_stage("unimodal").method_label(["flow"]) == "Flow" and get_stage("fusion").method_label(
        ["rgb", "audio"]) == "Weighted fusion"
    train = Config().train
    for stage in STAGE_TABLE.values():
        assert [p.name for p in stage.phases_for(train)] == [spec.name for spec in stage.phases]
    assert get_stage("adamml").uses_policy and not get_stage("fusion").uses_policy
    assert [p.name for p in get_stage("adamml").phases_for(train)] == ["policy_pretrain", "warmup", "alternating",
                                                                       "finetune"]
    assert get_stage("gradient-blending").holds_out and not get_stage("unimodal").needs_init
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        get_stage("nope")


def test_a_file_can_start_from_a_preset_and_say_only_what_it_changes(tmp_path):
    from adamml.config import load_config

    mine = tmp_path / "mine.yaml"
    mine.write_text("base: paper-rgb-flow-audio\nmodel: {num_classes: 7, policy: {size: 96}}\n"
                    "train: {efficiency_weights: {rgb: 1.0, audio: 0.1}, alternating: {epochs: 3}}\n")
    cfg, paper = load_config(mine), load_config("paper-rgb-flow-audio")
    assert cfg.model.num_classes == 7 and cfg.model.policy.size == 96
    assert cfg.model.policy.lstm_hidden == paper.model.policy.lstm_hidden == 256  # the rest of the section: the base's
    assert cfg.train.alternating.epochs == 3 and cfg.train.alternating.milestones == paper.train.alternating.milestones
    assert cfg.train.efficiency_weights == {"rgb": 1.0, "audio": 0.1}  # a mapping is replaced whole, not merged
    # the presets themselves: each paper preset is the base with its classes or modalities
    assert load_config("paper-fcvid-rgb-audio").train == load_config("paper-rgb-audio").train
    assert load_config("tiny").model.resnet.depth == 18 and load_config("tiny").train.warmup.lr == paper.train.warmup.lr
    relative = tmp_path / "child.yaml"
    relative.write_text("base: mine.yaml\nmodel: {num_classes: 5}\n")
    assert load_config(relative).model.policy.size == 96 and load_config(relative).model.num_classes == 5


def test_a_base_that_cannot_be_used_is_an_error_naming_the_file(tmp_path):
    from adamml.config import ConfigError, load_config

    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop.yaml.*a cycle"):
        load_config(loop)
    odd = tmp_path / "odd.yaml"
    odd.write_text("base: [tiny]\n")
    with pytest.raises(ConfigError, match=r"odd.yaml: `base` must name a preset or a YAML file"):
        load_config(odd)
    missing = tmp_path / "missing.yaml"
    missing.write_text("base: nope\n")
    with pytest.raises(ConfigError, match="no preset named 'nope'"):
        load_config(missing)


def test_every_paper_preset_pins_the_papers_setting() -> None:
    """The paper's numbers (Sec. 4, supplementary Sec. B, the official README's commands) in all 12 presets."""
    from adamml.config.yaml_io import preset_names

    papers = [name for name in preset_names() if name.startswith("paper-")]
    assert len(papers) == 12
    for name in papers:
        cfg = load_config(name)
        model, data, train = cfg.model, cfg.data, cfg.train
        assert train.batch_size == 72, name
        assert (data.train_segments, model.num_segments, model.frames_per_segment, data.stride) == (5, 10, 8, 4)
        assert tuple(data.train_scale) == (256, 320) and data.test_short_side == 256 and model.input_size == 224
        assert (train.warmup.epochs, train.alternating.epochs, train.finetune.epochs) == (5, 20, 10)
        assert (train.unimodal.lr, train.unimodal.epochs, tuple(train.unimodal.milestones)) == (0.01, 60, (20, 40, 50))
        for phase in (train.fusion, train.warmup, train.alternating, train.finetune):  # recognizer SGD
            assert (phase.lr, phase.momentum, phase.weight_decay) == (0.001, 0.9, 0.0001), name
        assert (train.policy_lr, train.policy_weight_decay, train.policy_pretrain.epochs) == (0.01, 0.0001, 0)
        assert (model.resnet.depth, model.resnet.base_width, model.resnet.dropout) == (50, 64, 0.5)
        assert (model.audio.size, model.audio.width_mult) == (256, 1.0)
        assert (model.policy.size, model.policy.frames, model.policy.audio_size, model.policy.width_mult) == (
            160, 4, 256, 1.0)
        assert (tuple(model.policy.hidden), model.policy.lstm_hidden) == ((2048, 2048), 256)
        assert (model.resnet.pretrained, model.audio.pretrained, model.policy.pretrained) == (None, None, None)


def test_a_paper_run_from_random_weights_says_so_and_names_the_keys() -> None:
    from pathlib import Path

    from adamml.train.run import random_start_warning

    unimodal = load_config("paper-rgb-flow-audio", ["model.modalities=[rgb]"])
    message = random_start_warning(unimodal, "unimodal", [])
    assert "model.resnet.pretrained" in message and "resnet50" in message and "policy" not in message
    given = load_config("paper-rgb-flow-audio", ["model.modalities=[rgb]", "model.resnet.pretrained=/w/r50.pth"])
    assert random_start_warning(given, "unimodal", []) is None
    adamml = random_start_warning(load_config("paper-rgb-audio"), "adamml", [Path("rgb.pt"), Path("audio.pt")])
    assert "model.policy.pretrained" in adamml and "model.resnet.pretrained" not in adamml  # recognizers from --init
    assert random_start_warning(load_config("tiny"), "adamml", []) is None  # the CPU preset is meant to start so


def test_numbers_in_exponent_form_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 and 1.0e30 as strings; people and YAML 1.2 read numbers
    cfg = load_config("tiny", ["train.unimodal.lr=1e-3", "train.clip_grad_norm=1.0e30"])
    assert cfg.train.unimodal.lr == 0.001 and cfg.train.clip_grad_norm == 1e30
    with pytest.raises(ConfigError, match="must be a finite number"):
        load_config("tiny", ["train.clip_grad_norm=1e400"])
    with pytest.raises(ConfigError, match="must be a number"):
        load_config("tiny", ["train.clip_grad_norm=1e-3x"])
