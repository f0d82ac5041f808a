"""The two-stage trainer on a tiny random CogVideoX-I2V pipeline and a tiny generated dataset.

Sizes: 9-frame clips, 32x32 HR crops (8x8 LR), a 2-layer transformer; every run is a few
seconds on a 2-core CPU. The real settings are the config defaults (checked in
test_training_config.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from sparkvsr.media import VideoWriter, write_image
from training.config import TrainConfig, TrainingError, config_from_dict, stage1_config
from training.data import Batch, build_index
from training.export import METADATA, export_checkpoint
from training.loop import STATE_FILE, TrainingState, train
from training.stage1 import latent_objective
from training.stage1 import main as stage1_main
from training.stage2 import main as stage2_main
from training.stage2 import train_stage2

from .tiny_cogvideox import build_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]


def smooth_video(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Low-frequency colour fields drifting one pixel per frame: ``[N, H, W, 3]`` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    field = rng.random((height // 8 + 2, (width + num_frames) // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(field, ((width + num_frames) + 16, height + 16), interpolation=cv2.INTER_CUBIC)
    frames = [big[8 : 8 + height, 8 + n : 8 + n + width] for n in range(num_frames)]
    return (np.clip(np.stack(frames), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four short videos, one image and one broken file, indexed into a list file."""
    root = tmp_path_factory.mktemp("clips")
    for index in range(4):
        with VideoWriter(root / f"clip{index}.mp4", Fraction(25), crf=12) as writer:
            writer.write(smooth_video(12, 40, 48, seed=index))
    write_image(root / "still.png", smooth_video(1, 40, 40, seed=9)[0])
    (root / "broken.mp4").write_bytes(b"not a video")
    list_file = root / "train_list.jsonl"
    build_index([root], list_file, min_frames=9)
    return list_file


def run_config(pipeline: Path, list_file: Path, out: Path, **changes) -> TrainConfig:
    values = {
        "pretrained": str(pipeline),
        "output_dir": str(out),
        "mixed_precision": "no",
        "gradient_checkpointing": False,
        "checkpoint_every": 10,
        "data": {
            "list_file": str(list_file),
            "num_frames": 9,
            "height": 32,
            "width": 32,
            "num_workers": 0,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 3, "max_steps": 10},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            values.setdefault(key, {}).update(value)
        else:
            values[key] = value
    return config_from_dict(TrainConfig, values, stage1_config())


class SmallPerceptual(torch.nn.Module):
    """A stand-in for DISTS: distance between random conv features of [N, 3, H, W] in [0, 1]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3)
        )
        self.calls = 0
        self.frames_seen = 0

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert prediction.ndim == 4 and prediction.shape[1] == 3
        assert 0 <= float(prediction.detach().min()) <= float(prediction.detach().max()) <= 1
        self.calls += 1
        self.frames_seen += prediction.shape[0]
        return (self.features(prediction) - self.features(target)).abs().mean()


def test_index_skips_broken_files_and_keeps_probes(dataset: Path) -> None:
    entries = [json.loads(line) for line in dataset.read_text().splitlines()]
    kinds = sorted(e["kind"] for e in entries)
    assert kinds == ["image", "video", "video", "video", "video"]
    video = next(e for e in entries if e["kind"] == "video")
    assert video["num_frames"] == 12 and (video["width"], video["height"]) == (48, 40)
    assert len(video["info"]["frame_pts"]) == 12


@pytest.fixture(scope="module")
def stage1_run(pipeline: Path, dataset: Path, tmp_path_factory):
    """30 stage-1 steps with checkpoints at 10, 20 and 30 (shared by the tests below)."""
    out = tmp_path_factory.mktemp("stage1") / "run"
    config = run_config(
        pipeline,
        dataset,
        out,
        gradient_checkpointing=True,
        optim={"max_steps": 30, "lr": 3e-3},
    )
    return config, train(config, lambda device: latent_objective)


def test_stage1_lowers_the_latent_loss(stage1_run) -> None:
    config, result = stage1_run
    losses = [log.loss for log in result.logs]
    assert len(losses) == 30 and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    # Margin: the last five steps average at least 10% below the first five (each step draws
    # other clips, crops and degradations, so single losses scatter by about +-0.1).
    assert last < 0.9 * first, (first, last)
    lines = (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert [entry["step"] for entry in logged] == list(range(1, 31))
    assert {"loss", "lr", "clips_per_s", "frames_per_s", "latent_mse"} <= set(logged[0])
    assert logged[0]["lr"] == pytest.approx(3e-3 / 3)  # warm-up
    assert logged[-1]["lr"] == pytest.approx(3e-3)
    state = TrainingState.read(result.checkpoint)
    assert (state.stage, state.step, state.world_size) == (1, 30, 1)
    assert state.config["optim"]["max_steps"] == 30
    assert len(list((Path(config.output_dir) / "cache").glob("empty-prompt-*.pt"))) == 1
    kept = sorted(p.name for p in (Path(config.output_dir) / "checkpoints").iterdir())
    assert kept == ["step-000010", "step-000020", "step-000030"]


def test_reference_latents_follow_the_sampled_keyframes(pipeline: Path) -> None:
    """Keyframes 4 and 8 fill latent slots 1 and 2 (f // 4), keyframe 0 slot 0; none: all zeros."""
    from sparkvsr.conditioning import alpha_bar
    from training.model import ConfiguredModel, Restorer, load_components

    parts = load_components(pipeline, None, torch.device("cpu"), torch.float32)
    model = Restorer(
        ConfiguredModel(parts.transformer, parts.transformer.config),
        parts.vae,
        parts.prompt_embeds,
        alpha_bar(parts.alphas_cumprod, torch.float32),
        torch.float32,
    )
    references = torch.rand(3, 3, 32, 32) * 2 - 1
    batch = Batch(
        hr=torch.zeros(3, 3, 9, 32, 32),
        lr=torch.rand(3, 3, 9, 8, 8),
        references=(references[:2], torch.zeros(0, 3, 32, 32), references[2:]),
        keyframes=((4, 8), (), (0,)),
        is_image=False,
        draws=(0, 1, 2),
    )
    generator = torch.Generator().manual_seed(0)
    lr_latent = model.lr_latent(batch.lr, generator)
    assert lr_latent.shape == (3, 16, 3, 4, 4)
    # One VAE pass encodes the keyframes of the whole batch; each lands in its own sample.
    reference = model.reference_latent(lr_latent, batch, generator)
    filled = reference.abs().sum(dim=(1, 3, 4)) > 0
    assert filled.tolist() == [[False, True, True], [False, False, False], [True, False, False]]
    x0 = model.predict_x0(lr_latent, reference)
    assert x0.shape == lr_latent.shape
    pixels = model.decode_aligned(x0, 9)
    assert pixels.shape == (3, 3, 9, 32, 32)
    assert model.decode_aligned(x0[:, :, :1], 1).shape == (3, 3, 1, 32, 32)
    with pytest.raises(TrainingError, match="not the 8 of the target clip"):
        model.decode_aligned(x0, 8)


def test_stage2_trains_on_videos_and_images_with_an_injected_perceptual_net(
    pipeline: Path, dataset: Path, tmp_path: Path
) -> None:
    perceptual = SmallPerceptual()
    config = run_config(pipeline, dataset, tmp_path / "stage2", stage=2, image_ratio=0.5)
    config = config_from_dict(TrainConfig, {"optim": {"lr": 5e-4}}, config)
    result = train_stage2(config, perceptual=perceptual)
    assert len(result.logs) == 10 and all(np.isfinite(log.loss) for log in result.logs)
    parts = [dict(log.parts) for log in result.logs]
    kinds = {p["image_batch"] for p in parts}
    assert kinds == {0.0, 1.0}, "both image and video batches were drawn"
    assert all(p["dists"] > 0 and p["mse"] > 0 for p in parts)
    assert all(p["frame_diff"] == 0 for p in parts if p["image_batch"])
    assert perceptual.calls == 10
    # Frames reach the perceptual net one by one: 9 per video batch, 1 per image batch.
    videos = sum(1 for p in parts if not p["image_batch"])
    assert perceptual.frames_seen == 9 * videos + (10 - videos)
    assert TrainingState.read(result.checkpoint).stage == 2


def test_stage2_without_pyiqa_names_the_extra(
    pipeline: Path, dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # import pyiqa -> ImportError
    config = run_config(pipeline, dataset, tmp_path / "nodists", stage=2, image_ratio=0.5)
    with pytest.raises(TrainingError, match="pip install pyiqa"):
        train_stage2(config)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_stage2_uses_pyiqa_dists_when_installed(
    pipeline: Path, dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    from . import fake_pyiqa

    monkeypatch.setitem(sys.modules, "pyiqa", fake_pyiqa)
    config = run_config(
        pipeline, dataset, tmp_path / "dists", stage=2, image_ratio=0.5, optim={"max_steps": 2}
    )
    result = train_stage2(config)
    assert "dists" in fake_pyiqa.CREATED
    assert all(dict(log.parts)["dists"] > 0 for log in result.logs)


def test_resume_reproduces_the_uninterrupted_run(
    stage1_run, pipeline: Path, dataset: Path, tmp_path: Path
) -> None:
    config, straight = stage1_run
    step10 = Path(config.output_dir) / "checkpoints" / "step-000010"
    assert (step10 / STATE_FILE).is_file()
    changes = dict(gradient_checkpointing=True, resume=str(step10))
    resumed = train(
        run_config(
            pipeline, dataset, tmp_path / "b", optim={"max_steps": 20, "lr": 3e-3}, **changes
        ),
        lambda device: latent_objective,
    )
    assert [log.step for log in resumed.logs] == list(range(11, 21))
    # Same seed, same draws, same optimiser state: equal up to float32 summation order.
    np.testing.assert_allclose(resumed.logs[-1].loss, straight.logs[19].loss, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        [log.loss for log in resumed.logs], [log.loss for log in straight.logs[10:20]], atol=1e-5
    )
    # "latest" continues after the newest checkpoint of an output folder.
    more = train(
        run_config(pipeline, dataset, tmp_path / "b", optim={"max_steps": 22}, resume="latest"),
        lambda device: latent_objective,
    )
    assert [log.step for log in more.logs] == [21, 22]


def test_export_loads_in_the_dit_engine_and_restores(
    stage1_run, pipeline: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from sparkvsr.engines.base import RestoreOptions
    from sparkvsr.engines.dit import DitEngine
    from sparkvsr.frames import ArrayFrames

    _, result = stage1_run
    out = tmp_path / "export"
    command = [sys.executable, "-m", "training.export", str(result.checkpoint), str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    metadata = json.loads((out / METADATA).read_text())
    assert (metadata["stage"], metadata["step"]) == (1, 30)
    assert metadata["data_list_hash"] == TrainingState.read(result.checkpoint).data_list_hash
    assert metadata["config"]["optim"]["max_steps"] == 30
    trained = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    base = load_file(pipeline / "transformer" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base), "weights were trained"
    assert all(v.dtype == torch.float32 for v in trained.values())

    engine = DitEngine(model=out, device="cpu")
    lr = smooth_video(9, 8, 8, seed=3)
    reference = smooth_video(1, 32, 32, seed=4)[0]
    chunks = list(
        engine.restore(ArrayFrames(lr), {0: reference}, RestoreOptions(chunk=9, overlap=0))
    )
    frames = np.concatenate([chunk.frames for chunk in chunks])
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8

    with pytest.raises(TrainingError, match="exists and is not empty"):
        export_checkpoint(result.checkpoint, out)


@pytest.mark.parametrize("main", [stage1_main, stage2_main], ids=["stage1", "stage2"])
def test_stage_command_lines_report_bad_settings(main, tmp_path: Path, capsys) -> None:
    """A bad setting stops the command with status 2 and names the setting; nothing is written."""
    out = tmp_path / "never"
    assert main(["--set", "optim.learning_rate=1", "--output-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert "error: unknown setting 'optim.learning_rate'" in captured.err
    assert "finished" not in captured.out and not out.exists()


def test_accelerate_launch_on_two_cpu_processes_with_gloo(
    pipeline: Path, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    settings = {
        "pretrained": str(pipeline),
        "output_dir": str(out),
        "mixed_precision": "no",
        "checkpoint_every": 5,
        "data": {"list_file": str(dataset), "num_frames": 9, "height": 32, "width": 32},
        "optim": {"max_steps": 5, "warmup_steps": 1},
    }
    config_file = tmp_path / "stage1.json"
    config_file.write_text(json.dumps(settings))
    accelerate = Path(sys.executable).parent / "accelerate"
    # accelerate 1.15 starts ONE process for `--cpu --num_processes 2` unless MPI is used
    # (`--mpirun_hostfile`); `--multi_gpu` goes through torchrun, and on a machine without
    # CUDA the trainer joins the processes into one gloo group.
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "training.stage1", "--config", str(config_file), "--set", "data.num_workers=0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage 1 finished at step 5" in done.stdout
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4, 5], "one line per step, main only"
    state = TrainingState.read(out / "checkpoints" / "step-000005")
    assert (state.step, state.world_size) == (5, 2)
    assert (out / "checkpoints" / "step-000005" / "transformer" / "config.json").is_file()
