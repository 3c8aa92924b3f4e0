"""``GenerationSettings``: how ECGs are generated, as one frozen object checked once.

The model, its text encoder, the sampler, the number of steps, guidance, strength, the output
format and the batch size travel together from a command line to the pipeline (and into a
cache's key). Every valid range is written here and nowhere else:

===================  =======================================================
age                  0–120 years, or unknown (None / NaN)
heart rate           20–300 bpm, or unknown (None / NaN)
num_inference_steps  integer 1 … the model's training steps (1000); default per sampler
guidance_scale       finite, ≥ 1 (1 = no guidance)
strength             in (0, 1] (1 = start from pure noise)
sampling_rate        1–10,000 Hz (of the 10 s ECGs returned and of seed ECGs)
num_samples          integer ≥ 1; batch_size integer ≥ 1 or None (device default)
===================  =======================================================

``DiffuSETSPipeline.__call__`` builds one from its diffusers-style keywords, so the Python API
and the command lines check the same things. A command line adds the shared options with
:func:`add_generation_arguments` and builds the object with
:meth:`GenerationSettings.from_cli_args`; then ``DiffuSETSPipeline.from_settings(settings)``
loads the model and ``pipe(reports, ..., **settings.call_kwargs())`` generates.
"""
from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ecgaug.schedulers import DEFAULT_SCHEDULER, SCHEDULERS, default_num_inference_steps, scheduler_name

__all__ = [
    "AGE_RANGE",
    "HEART_RATE_RANGE",
    "SAMPLING_RATE_RANGE",
    "GenerationSettings",
    "add_generation_arguments",
    "check_age",
    "check_heart_rate",
    "check_positive_int",
    "cli_type",
]

DEFAULT_MODEL = "ptbxl-base"  # the shipped model (ecgaug/pretrained/)
AGE_RANGE = (0.0, 120.0)  # years
HEART_RATE_RANGE = (20.0, 300.0)  # bpm
SAMPLING_RATE_RANGE = (1.0, 10_000.0)  # Hz
TEXT_ENCODERS = ("openai", "minilm", "table")  # the backends of ecgaug.text.encoders.get_text_encoder


def _check_number(name: str, value, low: float, high: float, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} should be a number, but got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} should be between {low:g} and {high:g}{unit}, but got {value:g}.")
    return value


def _check_patient(name: str, value, valid: tuple[float, float], unit: str) -> float | None:
    """None and NaN mean unknown; anything else must be a finite number in ``valid``."""
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return value
    return _check_number(name, value, *valid, unit=f" {unit} (or None if unknown)")


def check_age(value) -> float | None:
    """Age in years: 0–120, or None/NaN for unknown."""
    return _check_patient("age", value, AGE_RANGE, "years")


def check_heart_rate(value) -> float | None:
    """Heart rate in bpm: 20–300, or None/NaN for unknown."""
    return _check_patient("heart_rate", value, HEART_RATE_RANGE, "bpm")


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} should be a positive integer, but got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides which ECGs come out, except the conditions and the seeds.

    Args:
        model: a shipped model name (``ecgaug.pipeline.list_pretrained()``) or a model folder.
        upstream: instead of ``model``, DiffuSETS' published checkpoints: a Hugging Face repo id
            (``"Laiyf/DiffuSETS"``, downloaded into the hub cache) or a folder holding them.
        revision: with a hub ``upstream``: a branch, tag or commit hash to pin (default ``"main"``).
        text_encoder: overrides the model's text encoder, as keyword options merged onto its
            spec (e.g. ``{"request_timeout": 30}``); one with a ``"type"`` replaces it
            (``{"type": "table", "path": "ptbxl_text_embed.csv"}``). None: the model's own.
        scheduler: a name of ``ecgaug.schedulers.SCHEDULERS`` (default ``"sde-dpmsolver++"``) or a diffusers scheduler instance.
        num_inference_steps: sampler steps; None takes the sampler's default (15 SDE-DPM-Solver++, 12 UniPC, 25 DPM-Solver++,
            50 DDIM, 1000 DDPM), resolved here, so ``settings.num_inference_steps`` is what runs.
        guidance_scale: classifier-free guidance, enabled when > 1; finite, ≥ 1.
        strength: with seed ECGs, the fraction of the schedule that is run, in (0, 1]; 1 starts
            from pure noise (seed ECGs are then not used).
        lead_order: ``"ptbxl"``, ``"model"`` or a list of lead names (output and seed ECGs).
        sampling_rate: Hz of the 10 s output and seed ECGs, 1–10,000 (100 → 1000 samples).
        batch_size: ECGs per forward pass; None: 1024 on GPU, 64 on CPU.

    Raises:
        ValueError: naming the first setting outside its valid range.
    """

    model: str = DEFAULT_MODEL
    upstream: str | None = None
    revision: str | None = None
    text_encoder: Mapping[str, Any] | None = None
    scheduler: Any = DEFAULT_SCHEDULER  # a name of SCHEDULERS or a diffusers SchedulerMixin
    num_inference_steps: int | None = None
    guidance_scale: float = 1.0
    strength: float = 1.0
    lead_order: str | Sequence[str] = "ptbxl"
    sampling_rate: float = 100.0
    batch_size: int | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if isinstance(self.scheduler, str) and self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler should be one of {sorted(SCHEDULERS)} or a diffusers scheduler, but got {self.scheduler!r}.")
        steps = default_num_inference_steps(self.scheduler) if self.num_inference_steps is None else self.num_inference_steps
        steps = check_positive_int("num_inference_steps", steps)
        train_steps = 1000 if isinstance(self.scheduler, str) else self.scheduler.config.num_train_timesteps
        if steps > train_steps:
            raise ValueError(f"num_inference_steps should be at most the model's {train_steps} training steps, but got {steps}.")
        set_("num_inference_steps", steps)
        guidance = self.guidance_scale
        if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not (math.isfinite(guidance) and guidance >= 1):
            raise ValueError(f"guidance_scale should be a finite number >= 1 (1 = no guidance), but got {guidance!r}.")
        set_("guidance_scale", float(guidance))
        strength = _check_number("strength", self.strength, 0.0, 1.0)
        if strength == 0.0:
            raise ValueError("strength should be in (0, 1] (1 = start from pure noise), but got 0.")
        set_("strength", strength)
        set_("sampling_rate", _check_number("sampling_rate", self.sampling_rate, *SAMPLING_RATE_RANGE, " Hz"))
        from ecgaug.signal import resolve_lead_order  # numpy, scipy and torch: not needed to parse a command line

        leads = resolve_lead_order(self.lead_order)
        set_("lead_order", self.lead_order if isinstance(self.lead_order, str) else leads)
        if self.batch_size is not None:
            set_("batch_size", check_positive_int("batch_size", self.batch_size))
        if self.text_encoder is not None and not isinstance(self.text_encoder, Mapping):
            raise ValueError(f"text_encoder should be a mapping of encoder options, e.g. {{'type': 'minilm'}}, but got {self.text_encoder!r}.")
        if self.revision is not None and self.upstream is None:
            raise ValueError("revision pins a Hugging Face upstream; it needs upstream (e.g. 'Laiyf/DiffuSETS').")

    @property
    def sampler_name(self) -> str:
        return self.scheduler if isinstance(self.scheduler, str) else scheduler_name(self.scheduler)

    @property
    def num_output_samples(self) -> int:
        """Samples per 10 s ECG at ``sampling_rate``."""
        return int(round(10.0 * self.sampling_rate))

    def call_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``DiffuSETSPipeline.__call__`` / ``generate`` for these settings."""
        return {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "strength": self.strength,
            "lead_order": self.lead_order,
            "sampling_rate": self.sampling_rate,
            "batch_size": self.batch_size,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (e.g. for ``generation.json`` or a cache key)."""
        return {
            "model": self.model if self.upstream is None else None,
            "upstream": self.upstream,
            "revision": self.revision,
            "text_encoder": dict(self.text_encoder) if self.text_encoder is not None else None,
            "scheduler": self.sampler_name,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "strength": self.strength,
            "lead_order": list(self.lead_order) if not isinstance(self.lead_order, str) else self.lead_order,
            "sampling_rate": self.sampling_rate,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace, **overrides) -> "GenerationSettings":
        """From the options of :func:`add_generation_arguments` (missing ones keep their defaults)."""
        text_encoder = {}
        name, table = getattr(args, "text_encoder", None), getattr(args, "text_table", None)
        if table is not None and name not in (None, "table"):
            raise ValueError(f"--text_table looks embeddings up in a table, so it cannot go with --text_encoder {name}")
        if table is not None or name == "table":
            if not table and getattr(args, "upstream", None) is None:
                raise ValueError("--text_table without a path needs --upstream (whose ptbxl_text_embed.csv it uses)")
            text_encoder = {"type": "table", "path": table or None}  # "" → the upstream's own table
        elif name is not None:
            text_encoder = {"type": name}  # the model's own options (e.g. its MiniLM checkpoint) are kept when the type matches
        if getattr(args, "request_timeout", None) is not None:
            text_encoder["request_timeout"] = args.request_timeout
        names = ("model", "upstream", "revision", "scheduler", "num_inference_steps", "guidance_scale", "strength",
                 "lead_order", "sampling_rate", "batch_size")
        values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
        values["text_encoder"] = text_encoder or None
        return cls(**{**values, **overrides})


def cli_type(check: Callable[[Any], Any], parse: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses a string and applies one of the checks above.

    Argparse then reports a bad value as ``argument --age: age should be between 0 and 120 ...``
    with the usage line and exit status 2, never a traceback.
    """

    def convert(text: str):
        try:
            return check(parse(text))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _settings_check(name: str) -> Callable[[Any], Any]:
    """Check one field by building settings with it (the checks live in ``__post_init__`` only)."""

    def check(value):
        GenerationSettings(**{name: value})
        return value

    check.__name__ = name
    return check


def add_generation_arguments(parser: argparse.ArgumentParser, *, seed_ecgs: bool = False) -> None:
    """Add the options :meth:`GenerationSettings.from_cli_args` reads (``--strength`` if ``seed_ecgs``)."""
    group = parser.add_argument_group("model and sampler")
    group.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or model folder (default {DEFAULT_MODEL})")
    group.add_argument("--upstream", default=None,
                       help="DiffuSETS' published weights instead of --model: a Hugging Face repo id (Laiyf/DiffuSETS; "
                            "downloaded into the hub cache, HF_HUB_OFFLINE=1 uses the cache only) or a folder with "
                            "vae_model.pth and unet_all.pth; uses OpenAI embeddings unless --text_table")
    group.add_argument("--revision", default=None, help="with a hub --upstream: branch, tag or commit hash to pin")
    group.add_argument("--text_encoder", choices=TEXT_ENCODERS, default=None,
                       help="text encoder instead of the model's own (table: the same as --text_table)")
    group.add_argument("--text_table", nargs="?", const="", default=None, metavar="CSV",
                       help="look embeddings up in the published ptbxl_text_embed.csv: this path, or with no path the "
                            "--upstream repository's own")
    group.add_argument("--request_timeout", type=cli_type(lambda v: _check_number("request_timeout", v, 0.001, 3600, " s")),
                       default=None, help="OpenAI text encoder: seconds per request before it is retried (default 60)")
    group.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=sorted(SCHEDULERS), help=f"sampler (default {DEFAULT_SCHEDULER})")
    group.add_argument("--num_inference_steps", type=cli_type(_settings_check("num_inference_steps"), int), default=None,
                       help="sampler steps, 1–1000 (default: 15 SDE-DPM-Solver++, 12 UniPC, 25 DPM-Solver++, 50 DDIM, 1000 DDPM)")
    group.add_argument("--guidance_scale", type=cli_type(_settings_check("guidance_scale")), default=1.0,
                       help="classifier-free guidance, finite, >= 1 (1 = none; models trained with condition dropout only)")
    if seed_ecgs:
        group.add_argument("--strength", type=cli_type(_settings_check("strength")), default=1.0,
                           help="with seed ECGs: fraction of the schedule run, in (0, 1]; small stays close to the seed")
    group.add_argument("--sampling_rate", type=cli_type(_settings_check("sampling_rate")), default=100.0,
                       help="Hz of the 10 s ECGs (1–10000): 100 → 1000 samples, 500 → 5000, 102.4 native")
    group.add_argument("--lead_order", default="ptbxl", choices=["ptbxl", "model", "mimic"],
                       help="lead order of the ECGs: ptbxl (I, II, III, aVR, ...) or the model's MIMIC order (model and mimic)")
    group.add_argument("--batch_size", type=cli_type(lambda v: check_positive_int("batch_size", v), int), default=None,
                       help="ECGs per forward pass (default 1024 on GPU, 64 on CPU)")
