"""Trainer settings: published defaults, files + overrides, clear errors; shipped launch configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import (
    DataConfig,
    TrainConfig,
    TrainingError,
    config_from_args,
    config_from_dict,
    config_to_dict,
    stage1_config,
    stage2_config,
)
from training.loop import draw_numbers, lr_factor

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "accelerate_configs"


def test_stage1_defaults_are_the_published_settings() -> None:
    config = stage1_config()
    assert (config.data.num_frames, config.data.height, config.data.width) == (33, 320, 640)
    assert config.optim.lr == 2e-5
    assert config.optim.betas == (0.9, 0.95)
    assert config.optim.weight_decay == 1e-4
    assert config.optim.warmup_steps == 100
    assert config.optim.max_grad_norm == 0.1
    assert config.optim.max_steps == 10_000
    assert config.data.no_keyframe_prob == 0.1
    assert config.data.reference.noise_sigma == 0.05
    assert (config.mixed_precision, config.gradient_checkpointing) == ("bf16", True)


def test_stage2_defaults_are_the_published_settings() -> None:
    config = stage2_config()
    assert (config.stage, config.optim.lr, config.optim.max_steps) == (2, 5e-6, 500)
    assert config.image_ratio == 0.5
    assert (config.loss.mse, config.loss.dists, config.loss.frame_diff) == (1.0, 1.0, 1.0)
    assert config.optim.betas == (0.9, 0.95) and config.optim.max_grad_norm == 0.1


def test_yaml_file_then_overrides_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "pretrained: /models/base\n"
        "data:\n  num_frames: 17\n  roots: [/videos/a, /videos/b]\n"
        "optim:\n  lr: 1.0e-5\n  betas: [0.8, 0.9]\n"
    )
    argv = ["--config", str(path), "--set", "optim.lr=3e-5", "--set", "data.height=160"]
    config = config_from_args(1, [*argv, "--max-steps", "7", "--output-dir", "out"])
    assert config.pretrained == "/models/base"
    assert config.data.num_frames == 17 and config.data.height == 160
    assert config.data.roots == ("/videos/a", "/videos/b")
    assert config.optim.lr == 3e-5 and config.optim.betas == (0.8, 0.9)
    assert config.optim.max_steps == 7 and config.output_dir == "out"
    assert config.optim.warmup_steps == 100, "untouched settings keep their defaults"


def test_json_round_trip(tmp_path: Path) -> None:
    config = stage2_config()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config_to_dict(config)))
    assert config_from_args(2, ["--config", str(path)]) == config


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "optim.learning_rate=1"], "unknown setting 'optim.learning_rate'.*lr"),
        (["--set", "data.num_frames=12"], "num_frames 12 must be 8k\\+1"),
        (["--set", "data.height=100"], "multiples of 32"),
        (["--set", "optim.schedule=step"], "'step' is unknown; choose from constant"),
        (["--set", "mixed_precision=fp8"], "'fp8' is unknown"),
        (["--set", "optim.betas=[0.9]"], "needs 2 values"),
        (["--set", "image_ratio=0.5"], "stage 2 setting"),
        (["--set", "optim"], "must look like section.key=value"),
    ],
)
def test_bad_settings_fail_with_a_useful_message(argv: list[str], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        config_from_args(1, argv)


def test_a_stage2_file_is_refused_by_stage1(tmp_path: Path) -> None:
    path = tmp_path / "s2.json"
    path.write_text(json.dumps({"stage": 2}))
    with pytest.raises(TrainingError, match="config says stage 2"):
        config_from_args(1, ["--config", str(path)])


def test_config_is_frozen() -> None:
    config = config_from_dict(TrainConfig, {"data": {"num_frames": 9}})
    assert isinstance(config.data, DataConfig)
    with pytest.raises(AttributeError):
        config.seed = 1  # type: ignore[misc]


def test_warmup_then_constant_and_cosine_schedules() -> None:
    optim = stage1_config().optim
    factor = lr_factor(optim)
    assert factor(0) == pytest.approx(0.01) and factor(99) == 1.0 and factor(5000) == 1.0
    cosine = lr_factor(config_from_dict(type(optim), {"schedule": "cosine"}))
    assert cosine(100) == pytest.approx(1.0) and cosine(10_000) == pytest.approx(0.0)


def test_draws_never_repeat_across_steps_ranks_and_accumulation() -> None:
    seen = [
        draw
        for step in range(5)
        for micro in range(3)
        for rank in range(4)
        for draw in draw_numbers(step, micro, rank, world=4, accumulation=3, batch_size=2)
    ]
    assert sorted(seen) == list(range(5 * 3 * 4 * 2))


@pytest.mark.parametrize(
    ("name", "kind"), [("deepspeed_zero2.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP")]
)
def test_shipped_accelerate_configs_load(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type.name == kind
    assert config.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 2
        assert config.deepspeed_config["gradient_clipping"] == 0.1
    else:
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "CogVideoXBlock"
