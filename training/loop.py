"""The accelerate training loop both stages share.

One optimiser step = ``gradient_accumulation_steps`` micro-batches on every process. Which
samples a micro-batch holds is a pure function of (seed, step, micro-batch, rank): draw numbers
``((step * accumulation + micro) * world + rank) * batch_size + position``. A resumed run (from
``accelerate`` state: weights, optimiser, schedule) therefore sees exactly the batches the
uninterrupted run saw, and the VAE's latent sampling is seeded the same way.

Outputs under ``output_dir``: ``checkpoints/step-XXXXXX/`` (accelerate state, the transformer as
a diffusers folder for export, ``training_state.json``), ``metrics.jsonl`` (one line per step:
loss and its parts, lr, throughput), ``cache/`` (the empty-prompt T5 embedding, computed once)
and TensorBoard logs in ``logs/`` when tensorboard is installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from sparkvsr.conditioning import alpha_bar
from sparkvsr.errors import SparkVSRError
from training.config import (
    DataConfig,
    OptimConfig,
    TrainConfig,
    TrainingError,
    config_from_args,
    config_to_dict,
)
from training.data import Batch, TrainingSet, build_index, collate, list_hash, load_index
from training.model import ConfiguredModel, Restorer, load_components

STATE_FILE = "training_state.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

Objective = Callable[[Restorer, Batch, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
"""(model, batch, seeded generator) -> (loss to minimise, its parts as floats for logging)."""


@dataclasses.dataclass(frozen=True)
class StepLog:
    """What one optimiser step reports (also a line of metrics.jsonl)."""

    step: int
    loss: float
    lr: float
    clips_per_s: float
    frames_per_s: float
    parts: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data.update(data.pop("parts"))  # loss parts sit beside the loss, one key each
        return json.dumps(data)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    checkpoint: Path | None
    logs: tuple[StepLog, ...]


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """``training_state.json`` of a checkpoint: enough to resume, export and audit it."""

    stage: int
    step: int
    config: dict
    data_list: str
    data_list_hash: str
    pretrained: str
    world_size: int

    def write(self, folder: Path) -> None:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        (folder / STATE_FILE).write_text(json.dumps(data, indent=2, sort_keys=True))

    @staticmethod
    def read(folder: str | Path) -> TrainingState:
        path = Path(folder) / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return TrainingState(**{k: data[k] for k in TrainingState.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TrainingError(
                f"{folder} is not a training checkpoint (cannot read {STATE_FILE}: {e})"
            ) from e


# ---------------------------------------------------------------------------------------------
# Small helpers


def lr_factor(optim: OptimConfig) -> Callable[[int], float]:
    """Multiplier of ``optim.lr`` at a step: linear warm-up, then constant / cosine / linear."""

    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        progress = (step - optim.warmup_steps) / max(1, optim.max_steps - optim.warmup_steps)
        progress = min(1.0, progress)
        if optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


def draw_numbers(
    step: int, micro: int, rank: int, world: int, accumulation: int, batch_size: int
) -> list[int]:
    """The sample draws of one micro-batch (see the module doc)."""
    batch_id = (step * accumulation + micro) * world + rank
    return [batch_id * batch_size + position for position in range(batch_size)]


def batch_generator(seed: int, draws: tuple[int, ...]) -> torch.Generator:
    """A CPU generator for the batch's latent sampling, the same on resume and on any device."""
    state = np.random.SeedSequence([seed, *draws, 0x5A7]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / CHECKPOINTS / f"step-{step:06d}"


def find_checkpoint(output_dir: Path, resume: str) -> Path | None:
    """The folder ``resume`` names: "latest" (None when there is none yet) or a path."""
    if resume == "latest":
        found = sorted((output_dir / CHECKPOINTS).glob("step-*"))
        found = [p for p in found if (p / STATE_FILE).is_file()]
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise TrainingError(f"resume: {path} is not a checkpoint folder (no {STATE_FILE})")
    return path


def prepare_index(data: DataConfig, is_main: bool) -> Path:
    """The data list, built from ``data.roots`` when it does not exist yet (main process)."""
    list_file = Path(data.list_file)
    if list_file.is_file():
        return list_file
    if not data.roots:
        raise TrainingError(
            f"data list {list_file} does not exist and data.roots is empty: set data.roots to "
            f"your video folders, or run `python -m training.data index ROOT... --out {list_file}`"
        )
    if is_main:
        build_index(data.roots, list_file, min_frames=data.num_frames)
    return list_file


def _has_tensorboard() -> bool:
    return any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))


# ---------------------------------------------------------------------------------------------
# The loop


def train(config: TrainConfig, make_objective: Callable[[torch.device], Objective]) -> TrainResult:
    """Train ``config.optim.max_steps`` optimiser steps (from a checkpoint when resuming).

    Run under ``accelerate launch`` for several processes; a plain call trains on one.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        # Without CUDA, processes started by torchrun (`accelerate launch --multi_gpu`) must
        # still join one gloo group instead of each training alone on the same files.
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=["tensorboard"] if _has_tensorboard() else None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
    )
    set_seed(config.seed)
    is_main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index

    # 1. Data: the index (built once, by the main process) and the deterministic sample set.
    with accelerator.main_process_first():
        list_file = prepare_index(config.data, is_main)
    dataset = TrainingSet(
        load_index(list_file),
        config.data,
        config.degradation,
        config.image_degradation,
        config.seed,
        image_ratio=config.image_ratio,
        batch_size=config.batch_size,
    )
    data_hash = list_hash(list_file)

    # 2. Model: trainable transformer, frozen VAE, the empty-prompt embedding (cached once).
    weight_dtype = WEIGHT_DTYPES[config.mixed_precision]
    with accelerator.main_process_first():
        parts = load_components(
            config.pretrained, output_dir / "cache", accelerator.device, weight_dtype
        )
    transformer = parts.transformer
    transformer.requires_grad_(True).train()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
        parts.vae.enable_gradient_checkpointing()
    transformer_config = transformer.config

    # 3. Optimiser and schedule (stepped once per optimiser step on every process).
    optim = config.optim
    optimizer = torch.optim.AdamW(
        transformer.parameters(),
        lr=optim.lr,
        betas=optim.betas,
        weight_decay=optim.weight_decay,
        eps=optim.eps,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(optim))
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:
        # Our loader is not prepared (draws are planned per rank), so DeepSpeed is told the
        # micro-batch size instead of reading it from a prepared DataLoader.
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    accelerator.register_for_checkpointing(schedule)
    model = Restorer(
        ConfiguredModel(transformer, transformer_config),
        parts.vae,
        parts.prompt_embeds,
        alpha_bar(parts.alphas_cumprod, weight_dtype),
        weight_dtype,
    )
    objective = make_objective(accelerator.device)

    # 4. Resume from accelerate state.
    start = 0
    if config.resume:
        folder = find_checkpoint(output_dir, config.resume)
        if folder is not None:
            state = TrainingState.read(folder)
            if state.stage != config.stage:
                raise TrainingError(
                    f"checkpoint {folder} is from stage {state.stage}; stage {config.stage} "
                    "starts from an exported pipeline (`pretrained`), it cannot resume it"
                )
            accelerator.load_state(str(folder))
            start = state.step
            if is_main:
                print(f"resumed from {folder} at step {start}")
                if state.world_size != world:
                    print(
                        f"note: the checkpoint was trained on {state.world_size} processes and "
                        f"this run has {world}; training continues with other sample draws"
                    )

    # 5. The loop.
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers(f"sparkvsr-stage{config.stage}")
    accumulation = config.gradient_accumulation_steps
    batches = _batches(dataset, config, start, rank, world)
    logs: list[StepLog] = []
    checkpoint: Path | None = None
    bar = tqdm(
        total=optim.max_steps, initial=start, disable=not is_main, desc=f"stage {config.stage}"
    )
    for step in range(start, optim.max_steps):
        began = time.perf_counter()
        losses, totals = [], {}
        for _ in range(accumulation):
            batch = next(batches).to(accelerator.device)
            with accelerator.accumulate(transformer):
                loss, loss_parts = objective(
                    model, batch, batch_generator(config.seed, batch.draws)
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(transformer.parameters(), optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            for name, value in loss_parts.items():
                totals[name] = totals.get(name, 0.0) + value / accumulation
        lr = schedule.get_last_lr()[0]
        schedule.step()
        mean_loss = float(accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
        seconds = time.perf_counter() - began
        clips = config.batch_size * accumulation * world
        log = StepLog(
            step + 1,
            mean_loss,
            lr,
            clips / seconds,
            clips * batch.hr.shape[2] / seconds,
            tuple(sorted(totals.items())),
        )
        logs.append(log)
        bar.update(1)
        if is_main and (step + 1) % config.log_every == 0:
            bar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.2e}")
            with open(output_dir / METRICS, "a") as f:
                f.write(log.to_json() + "\n")
            accelerator.log(
                {"loss": mean_loss, "lr": lr, "clips_per_s": log.clips_per_s, **totals},
                step=step + 1,
            )
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == optim.max_steps:
            state = TrainingState(
                config.stage,
                step + 1,
                config_to_dict(config),
                str(list_file),
                data_hash,
                config.pretrained,
                world,
            )
            checkpoint = save_checkpoint(accelerator, transformer, output_dir, state, config)
    bar.close()
    accelerator.end_training()
    return TrainResult(max(start, optim.max_steps), checkpoint, tuple(logs))


def _batches(
    dataset: TrainingSet, config: TrainConfig, start: int, rank: int, world: int
) -> Iterator[Batch]:
    """This process's micro-batches from optimiser step ``start`` on, in order."""
    accumulation = config.gradient_accumulation_steps
    order = [
        draw
        for step in range(start, config.optim.max_steps)
        for micro in range(accumulation)
        for draw in draw_numbers(step, micro, rank, world, accumulation, config.batch_size)
    ]
    workers = config.data.num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=order,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
    return iter(loader)


def save_checkpoint(
    accelerator, transformer, output_dir: Path, state: TrainingState, config: TrainConfig
) -> Path:
    """Accelerate state (to resume) + the transformer as a diffusers folder (to export).

    Every process takes part (sharded states are gathered); the main process writes the
    transformer and the metadata, then prunes all but the newest ``keep_checkpoints``.
    """
    folder = checkpoint_dir(output_dir, state.step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder))
    weights = accelerator.get_state_dict(transformer)
    if accelerator.is_main_process:
        accelerator.unwrap_model(transformer).save_pretrained(
            folder / "transformer", state_dict=weights, safe_serialization=True
        )
        state.write(folder)
        older = sorted((output_dir / CHECKPOINTS).glob("step-*"))[: -config.keep_checkpoints]
        for old in older:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def stage_main(
    stage: int, argv: list[str] | None, run: Callable[[TrainConfig], TrainResult]
) -> int:
    """The command line of ``training.stage{stage}``: parse the settings, ``run`` them, report.

    Returns the exit status: 0 when training finished, 2 (message on stderr) on a SparkVSRError.
    """
    try:
        result = run(config_from_args(stage, argv))
    except SparkVSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"stage {stage} finished at step {result.step}; last checkpoint: {result.checkpoint}")
    return 0
