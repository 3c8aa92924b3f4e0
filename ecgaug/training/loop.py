"""One training loop for both DiffuSETS stages (VAE, then UNet on precomputed latents).

The data are in-memory tensors indexed per record, so an epoch is a seeded permutation and a
killed run resumes exactly: the checkpoint holds model, optimizer, learning-rate schedule, EMA,
step and the training generator's state. Under ``torchrun`` each rank takes every
``world_size``-th index of the permutation and gradients are averaged by DDP (gloo on CPU,
NCCL on CUDA). Precision (``mixed_precision="auto"``): bf16 autocast on CUDA; on the CPU, bf16 only where the
stage asks for it (``cpu_bf16``) and the CPU has native bf16 (AVX512-BF16 or AMX):
``benchmarks/bench_training.py`` measured the VAE 1.5x faster under bf16 there and the UNet no faster.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm.auto import tqdm

from ecgaug.distributed import DistributedContext, distributed_context
from ecgaug.models.modeling_utils import cpu_has_native_bf16

__all__ = ["TrainingConfig", "LossFn", "train", "distributed_context"]

CHECKPOINT_NAME = "checkpoint.pt"

# loss_fn(model, batch, generator) -> (scalar loss, {metric name: float})
LossFn = Callable[[nn.Module, Mapping[str, torch.Tensor], torch.Generator], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainingConfig:
    output_dir: str
    max_steps: int = 2000
    batch_size: int = 64  # per process
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # any diffusers.optimization schedule name
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    log_every: int = 10
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time; rerun to continue
    seed: int = 0
    device: str | None = None  # default: cuda if available
    mixed_precision: str = "auto"  # "bf16", "no", or "auto": bf16 on CUDA, and on the CPU where the stage gains from it
    init_from: str | None = None  # model folder (save_pretrained) whose weights start a run that has no checkpoint

    def __post_init__(self):
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision should be 'auto', 'bf16' or 'no', but got {self.mixed_precision!r}.")


def _device(config: TrainingConfig, ctx: DistributedContext) -> torch.device:
    if config.device:
        return torch.device(config.device)
    return torch.device(f"cuda:{ctx.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def use_bf16(mixed_precision: str, device: torch.device, *, cpu_bf16: bool = True) -> bool:
    """Whether to train under bf16 autocast; ``cpu_bf16``: whether this stage gains from it on a CPU with native bf16."""
    if mixed_precision != "auto":
        return mixed_precision == "bf16"
    if device.type == "cuda":
        return True
    return cpu_bf16 and device.type == "cpu" and cpu_has_native_bf16()


def _batches(num_records: int, batch_size: int, epoch: int, seed: int, ctx: DistributedContext):
    """This rank's index batches for one epoch (drop_last, so every rank takes the same number of steps)."""
    order = torch.randperm(num_records, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    per_rank = num_records // ctx.world_size
    order = order[ctx.rank * per_rank:(ctx.rank + 1) * per_rank] if ctx.world_size > 1 else order
    for start in range(0, len(order) - batch_size + 1, batch_size):
        yield order[start:start + batch_size]


def train(
    model: nn.Module,
    data: Mapping[str, torch.Tensor],
    loss_fn: LossFn,
    config: TrainingConfig,
    *,
    describe: str = "train",
    extra_state: Mapping | None = None,
    cpu_bf16: bool = True,
) -> tuple[nn.Module, dict]:
    """Train ``model`` on ``data`` (equal-length tensors, one row per record) and return the EMA model.

    Resumes from ``output_dir/checkpoint.pt`` when it exists. Writes ``log.jsonl`` (losses),
    and the checkpoint every ``checkpoint_every`` steps, at ``max_minutes`` and at the end.
    Returns the model with EMA weights copied in, and a summary dict.
    """
    ctx = distributed_context()
    device = _device(config, ctx)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_records = len(next(iter(data.values())))
    if any(len(v) != num_records for v in data.values()):
        raise ValueError(f"All training tensors need one row per record; got lengths { {k: len(v) for k, v in data.items()} }.")
    steps_per_epoch = num_records // ctx.world_size // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={config.batch_size} x world_size={ctx.world_size} is larger than the {num_records} training records.")

    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.max_steps)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
    generator = torch.Generator().manual_seed(config.seed * 7919 + ctx.rank)
    step, elapsed = 0, 0.0

    checkpoint_path = out / CHECKPOINT_NAME
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"][ctx.rank] if isinstance(state["generator"], list) else state["generator"])
        step, elapsed = int(state["step"]), float(state["elapsed_seconds"])
    elif config.init_from:
        from safetensors.torch import load_file

        from ecgaug.models.modeling_utils import WEIGHTS_NAME

        weights = Path(config.init_from) / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"init_from={config.init_from!r} has no {WEIGHTS_NAME}; pass a model folder written by save_pretrained().")
        model.load_state_dict(load_file(str(weights), device=str(device)))
        ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
    ema.to(device)
    wrapped = nn.parallel.DistributedDataParallel(model) if ctx.world_size > 1 else model

    def save_checkpoint() -> None:
        generators = [generator.get_state()]
        if ctx.world_size > 1:
            generators = [torch.empty_like(generators[0]) for _ in range(ctx.world_size)]
            dist.all_gather_object(generators, generator.get_state())
        if ctx.is_main:
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                "ema": ema.state_dict(), "step": step, "elapsed_seconds": elapsed + time.monotonic() - started,
                "generator": generators if ctx.world_size > 1 else generators[0],
                "config": asdict(config), **(extra_state or {}),
            }
            tmp = checkpoint_path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, checkpoint_path)  # a kill during the save leaves the previous checkpoint intact

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(config.mixed_precision, device, cpu_bf16=cpu_bf16))
    started = time.monotonic()
    log = open(out / "log.jsonl", "a") if ctx.is_main else None
    bar = tqdm(total=config.max_steps, initial=step, desc=describe, disable=not ctx.is_main, dynamic_ncols=True)
    stopped_early = False
    while step < config.max_steps and not stopped_early:
        epoch, skip = divmod(step, steps_per_epoch)
        for i, index in enumerate(_batches(num_records, config.batch_size, epoch, config.seed, ctx)):
            if i < skip:
                continue  # resuming inside an epoch: these batches were already seen
            batch = {k: v[index].to(device, non_blocking=True) for k, v in data.items()}
            with autocast:
                loss, metrics = loss_fn(wrapped, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            lr_scheduler.step()
            ema.step(model.parameters())
            step += 1
            bar.update(1)
            if log is not None and (step % config.log_every == 0 or step == config.max_steps):
                record = {"step": step, "epoch": epoch, "loss": loss.item(), "grad_norm": grad_norm.item(),
                          "lr": lr_scheduler.get_last_lr()[0], "seconds": round(elapsed + time.monotonic() - started, 1), **metrics}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            out_of_time = config.max_minutes is not None and (time.monotonic() - started) / 60 >= config.max_minutes
            if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
                save_checkpoint()
            if out_of_time:
                stopped_early = True
            if step >= config.max_steps or stopped_early:
                break
    bar.close()
    if log is not None:
        log.close()
    ema.copy_to(model.parameters())
    model.eval()
    summary = {"steps": step, "max_steps": config.max_steps, "finished": step >= config.max_steps,
               "wall_seconds": round(elapsed + time.monotonic() - started, 1), "records": num_records, "world_size": ctx.world_size}
    return model, summary


