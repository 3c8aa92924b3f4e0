"""Noise schedulers from ``diffusers``, built from a model's training (DDPM) configuration.

The published DiffuSETS trains and samples with DDPM over 1000 steps (linear betas 0.00085 →
0.012, diffusers' defaults otherwise). Faster samplers reuse the same noise schedule through
``from_config``, so betas are never written twice.
"""
from __future__ import annotations

import inspect

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = ["SCHEDULERS", "DEFAULT_NUM_INFERENCE_STEPS", "published_ddpm_scheduler", "make_scheduler"]

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}
# What a sampler takes from the training schedule; everything else keeps each sampler's own default
# (e.g. its timestep spacing), so a config read back from disk builds the same sampler.
SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "clip_sample", "clip_sample_range")
DEFAULT_NUM_INFERENCE_STEPS = {"DDPMScheduler": 1000, "DDIMScheduler": 50, "DPMSolverMultistepScheduler": 25}


def published_ddpm_scheduler(**overrides) -> DDPMScheduler:
    """DiffuSETS' training scheduler: 1000 steps, linear betas from 0.00085 to 0.012."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", **overrides)


def make_scheduler(name_or_scheduler: str | SchedulerMixin, training_config) -> SchedulerMixin:
    """A sampler named ``"ddpm"``, ``"ddim"`` or ``"dpmsolver++"`` over the noise schedule of ``training_config``."""
    if isinstance(name_or_scheduler, SchedulerMixin):
        return name_or_scheduler
    if name_or_scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {name_or_scheduler!r}. Valid values are {sorted(SCHEDULERS)} or a diffusers scheduler instance.")
    cls, extra = SCHEDULERS[name_or_scheduler]
    accepted = set(inspect.signature(cls.__init__).parameters)
    schedule = {k: training_config[k] for k in SCHEDULE_KEYS if k in training_config and k in accepted}
    return cls(**schedule, **extra)
