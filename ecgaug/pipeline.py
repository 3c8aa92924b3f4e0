"""``DiffuSETSPipeline``: clinical report + patient information → 12-lead ECG.

Thin glue in diffusers' style: the VAE, the conditional UNet, a swappable ``diffusers``
scheduler and a text encoder are separate parts; ``__call__`` encodes the prompts, runs the
denoising loop written out in full, decodes, and converts the ECGs to the lead order and
sampling rate the caller asks for. Inference only; training lives in :mod:`ecgaug.training`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from ecgaug.models import ECGVAE, ConditionalUNet1D
from ecgaug.models.modeling_utils import WEIGHTS_NAME, cpu_has_native_bf16
from ecgaug.schedulers import DEFAULT_SCHEDULER, make_scheduler, published_ddpm_scheduler, scheduler_name
from ecgaug.settings import DEFAULT_MODEL, GenerationSettings, check_age, check_heart_rate, check_positive_int
from ecgaug.signal import MODEL_LEADS, MODEL_NUM_SAMPLES, convert_ecg, resolve_lead_order

__all__ = ["DiffuSETSPipeline", "DiffuSETSPipelineOutput", "PRETRAINED_DIR", "list_pretrained"]

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
MODEL_INDEX = "model_index.json"


def list_pretrained() -> list[str]:
    """Names of the models shipped inside the package (``from_pretrained(name)``)."""
    return sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / MODEL_INDEX).is_file())


@dataclass
class DiffuSETSPipelineOutput:
    ecgs: torch.Tensor  # (num_ecgs, 12, num_samples) float32 mV, in the requested lead order and rate
    latents: torch.Tensor  # (num_ecgs, latent channels, latent length) denoised latents


def _weights_digest(*paths: Path) -> str:
    """Short SHA-256 over weight files: the part of a model id that changes when the weights do."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()[:10]


def _per_row(value, n: int, name: str) -> list:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, (str, int, float)) or value is None:
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} should have one value per report ({n}), but got {len(value)}.")
    return value


def _sex_to_float(sex) -> float:
    if sex is None or (isinstance(sex, float) and np.isnan(sex)):
        return float("nan")
    if sex in ("M", "F"):
        return 1.0 if sex == "M" else 0.0
    raise ValueError(f"sex should be 'M', 'F' or None (unknown), but got {sex!r}.")


def patient_features(sex: Sequence, age: Sequence, heart_rate: Sequence) -> torch.Tensor:
    """``(B, 3)`` float32: sex_is_male, age in years, heart rate in bpm (NaN = unknown)."""
    rows = [[_sex_to_float(s), np.nan if a is None else float(a), np.nan if h is None else float(h)] for s, a, h in zip(sex, age, heart_rate)]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)


def _text_encoder(default_spec: dict, override, cache_dir):
    """An encoder instance as given, or built from the model's spec with ``override`` options merged in.

    An override naming another ``"type"`` replaces the spec instead of merging into it.
    """
    if override is not None and not isinstance(override, dict):
        return override  # an encoder instance
    override = dict(override or {})
    spec = override if override.get("type", default_spec["type"]) != default_spec["type"] else {**default_spec, **override}
    from ecgaug.text.encoders import get_text_encoder

    return get_text_encoder(spec.pop("type"), cache_dir=cache_dir, **spec)


class DiffuSETSPipeline:
    """Generate 12-lead ECGs from clinical reports and patient information with DiffuSETS.

    Example:
        >>> pipe = DiffuSETSPipeline.from_pretrained("ptbxl-base")  # doctest: +SKIP
        >>> ecgs = pipe.generate(["atrial fibrillation"], age=70, sex="M", heart_rate=110,
        ...                      generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
        >>> ecgs.shape  # doctest: +SKIP
        torch.Size([1, 12, 1000])
    """

    def __init__(
        self,
        vae: ECGVAE,
        unet: ConditionalUNet1D,
        scheduler: SchedulerMixin,
        text_encoder,
        *,
        training_scheduler_config: Any | None = None,
        model_id: str = "unnamed",
        info: dict | None = None,
    ):
        if text_encoder is not None and text_encoder.embedding_dim != unet.config.text_embed_dim:
            raise ValueError(
                f"Text encoder {text_encoder.name} gives {text_encoder.embedding_dim}-d embeddings, "
                f"but the UNet was trained on {unet.config.text_embed_dim}-d ones."
            )
        self.vae = vae.eval().fuse_upsampling()
        self.unet = unet.eval().fuse_projections()
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.training_scheduler_config = training_scheduler_config or scheduler.config
        self.model_id = model_id
        self.info = info or {}
        # Decoding is one pass (no error accumulation): on CPUs with native bf16 it runs in bfloat16,
        # about 2x faster (README: error and fidelity measured on ptbxl-base); the denoising loop stays float32.
        self.cpu_decode_dtype: torch.dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        scheduler: str | SchedulerMixin = DEFAULT_SCHEDULER,
        text_encoder=None,
        text_cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> "DiffuSETSPipeline":
        """Load a model folder written by :meth:`save_pretrained`, or a shipped model by name.

        Args:
            name_or_path: one of :func:`list_pretrained` or a folder with ``model_index.json``.
            scheduler: a name of ``ecgaug.schedulers.SCHEDULERS`` (default ``DEFAULT_SCHEDULER``) or a diffusers scheduler.
            text_encoder: an encoder instance, or a dict of options merged onto the encoder named in
                ``model_index.json`` (one with another ``"type"`` replaces it).
            text_cache_dir: where embeddings are cached on disk (default: none).
        """
        root = Path(name_or_path)
        if not (root / MODEL_INDEX).is_file():
            if (PRETRAINED_DIR / str(name_or_path) / MODEL_INDEX).is_file():
                root = PRETRAINED_DIR / str(name_or_path)
            else:
                raise FileNotFoundError(
                    f"No DiffuSETS model at {name_or_path!r}: expected a folder with {MODEL_INDEX} or one of the shipped "
                    f"models {list_pretrained()}. Published weights load with DiffuSETSPipeline.from_upstream(folder)."
                )
        index = json.loads((root / MODEL_INDEX).read_text())
        vae = ECGVAE.from_pretrained(root / "vae")
        unet = ConditionalUNet1D.from_pretrained(root / "unet")
        training_config = DDPMScheduler.from_config(json.loads((root / "scheduler" / "scheduler_config.json").read_text())).config
        text_encoder = _text_encoder(index["text_encoder"], text_encoder, text_cache_dir)
        model_id = f"{index.get('name', root.name)}-{_weights_digest(root / 'vae' / WEIGHTS_NAME, root / 'unet' / WEIGHTS_NAME)}"
        pipe = cls(vae, unet, make_scheduler(scheduler, training_config), text_encoder,
                   training_scheduler_config=training_config, model_id=model_id, info=index)
        return pipe.to(device) if device is not None else pipe

    @classmethod
    def from_upstream(
        cls,
        source: str | os.PathLike = "Laiyf/DiffuSETS",
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        scheduler: str | SchedulerMixin = DEFAULT_SCHEDULER,
        text_encoder=None,
        text_cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> "DiffuSETSPipeline":
        """Load DiffuSETS' published ``vae_model.pth`` and ``unet_all.pth``.

        Args:
            source: the Hugging Face repo id (default ``"Laiyf/DiffuSETS"``; files are downloaded
                into the hub cache once) or a folder holding the two files.
            revision: with a repo id: branch, tag or commit hash to pin (default ``"main"``).
            cache_dir: with a repo id: hub cache folder (default: ``HF_HOME``'s).
            local_files_only: with a repo id: only the cache, no network (as ``HF_HUB_OFFLINE=1``).
            text_encoder: an encoder instance or options as in :meth:`from_pretrained`. Default:
                OpenAI ``text-embedding-ada-002`` (needs ``OPENAI_API_KEY``); ``{"type": "table"}``
                looks the published embeddings up in ``source``'s ``ptbxl_text_embed.csv``.
        """
        from ecgaug.models.convert import UPSTREAM_TEXT_TABLE, load_upstream_unet, load_upstream_vae, upstream_file

        def fetch(filename: str) -> Path:
            return upstream_file(source, filename, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)

        vae_path, unet_path = fetch("vae_model.pth"), fetch("unet_all.pth")
        vae = load_upstream_vae(vae_path)
        unet = load_upstream_unet(unet_path)
        if isinstance(text_encoder, dict) and text_encoder.get("type") == "table" and not text_encoder.get("path"):
            text_encoder = {**text_encoder, "path": str(fetch(UPSTREAM_TEXT_TABLE))}
        text_encoder = _text_encoder({"type": "openai", "model": "text-embedding-ada-002"}, text_encoder, text_cache_dir)
        training_config = published_ddpm_scheduler().config
        info = {"name": "diffusets-published", "source": str(source), "revision": revision,
                "text_encoder": {"type": "openai", "model": "text-embedding-ada-002"}}
        pipe = cls(vae, unet, make_scheduler(scheduler, training_config), text_encoder,
                   training_scheduler_config=training_config, model_id=f"diffusets-published-{_weights_digest(vae_path, unet_path)}", info=info)
        return pipe.to(device) if device is not None else pipe

    @classmethod
    def from_settings(cls, settings: GenerationSettings, *, text_cache_dir: str | os.PathLike | None = None,
                      device: str | torch.device | None = None) -> "DiffuSETSPipeline":
        """The model ``settings`` name (``upstream`` if set, else ``model``) with its text encoder and scheduler."""
        common = dict(scheduler=settings.scheduler, text_encoder=None if settings.text_encoder is None else dict(settings.text_encoder),
                      text_cache_dir=text_cache_dir, device=device)
        if settings.upstream is not None:
            return cls.from_upstream(settings.upstream, revision=settings.revision, **common)
        return cls.from_pretrained(settings.model, **common)

    def save_pretrained(self, directory: str | os.PathLike, *, text_encoder_spec: dict | None = None, extra: dict | None = None) -> Path:
        """Write ``model_index.json``, ``vae/``, ``unet/`` and ``scheduler/`` (the training DDPM schedule)."""
        directory = Path(directory)
        self.vae.save_pretrained(directory / "vae")
        self.unet.save_pretrained(directory / "unet")
        DDPMScheduler.from_config(self.training_scheduler_config).save_config(directory / "scheduler")
        index = {**self.info, **(extra or {}), "_class_name": type(self).__name__}
        if text_encoder_spec is not None:
            index["text_encoder"] = text_encoder_spec
        if "text_encoder" not in index:
            raise ValueError("save_pretrained needs text_encoder_spec, e.g. {'type': 'minilm'}, so the folder says how to embed reports.")
        (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return directory

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def sampler_name(self) -> str:
        """The sampler's name in ``ecgaug.schedulers.SCHEDULERS`` (e.g. ``"dpmsolver++"``), else its class name."""
        return scheduler_name(self.scheduler)

    @property
    def precision(self) -> str:
        """The arithmetic the ECGs come from, part of a cache's key: ``cuda-bf16-autocast``, ``cpu-float32``
        or ``cpu-float32+bf16-decoding`` (``cpu_decode_dtype``)."""
        if self.device.type == "cuda":
            return "cuda-bf16-autocast"
        return "cpu-float32+bf16-decoding" if self.cpu_decode_dtype == torch.bfloat16 else "cpu-float32"

    @property
    def supports_guidance(self) -> bool:
        return bool(self.unet.config.null_condition)

    def to(self, device: str | torch.device) -> "DiffuSETSPipeline":
        self.vae.to(device)
        self.unet.to(device)
        return self

    def set_scheduler(self, scheduler: str | SchedulerMixin) -> "DiffuSETSPipeline":
        """Swap the sampler (a name of ``ecgaug.schedulers.SCHEDULERS`` or an instance); the noise schedule stays."""
        self.scheduler = make_scheduler(scheduler, self.training_scheduler_config)
        return self

    def encode_reports(self, reports: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(B, D)`` of the reports, wrapped in the published prompt template."""
        from ecgaug.text.prompt import build_prompt

        if self.text_encoder is None:
            raise ValueError("This pipeline has no text encoder; pass prompt_embeds instead of reports.")
        return self.text_encoder.encode([build_prompt(r) for r in reports]).to(torch.float32)

    def check_inputs(self, reports, prompt_embeds, age, sex, heart_rate, num_samples: int, settings: GenerationSettings) -> int:
        """Check everything before any work; return the number of conditions."""
        if (reports is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of reports and prompt_embeds (only forward one of the two).")
        if isinstance(reports, str):
            raise ValueError("reports should be a list of report strings (one per condition), but got a single string; wrap it in a list.")
        check_positive_int("num_samples", num_samples)
        if settings.guidance_scale > 1.0 and not self.supports_guidance:
            raise ValueError(
                f"guidance_scale={settings.guidance_scale} needs a model trained with condition dropout; {self.model_id} was not "
                "(the published DiffuSETS never drops its condition). Use guidance_scale=1.0."
            )
        if prompt_embeds is not None:
            if prompt_embeds.ndim != 2 or prompt_embeds.shape[1] != self.unet.config.text_embed_dim:
                raise ValueError(f"prompt_embeds should have shape (batch, {self.unet.config.text_embed_dim}), but got {tuple(prompt_embeds.shape)}.")
            num_conditions = prompt_embeds.shape[0]
        else:
            num_conditions = len(reports)
        for value in _per_row(age, num_conditions, "age"):
            check_age(value)
        for value in _per_row(heart_rate, num_conditions, "heart_rate"):
            check_heart_rate(value)
        for value in _per_row(sex, num_conditions, "sex"):
            _sex_to_float(value)
        return num_conditions

    @torch.no_grad()
    def encode_ecgs(self, ecgs, *, lead_order: str | Sequence[str] = "ptbxl", sampling_rate: float = 100.0,
                    batch_size: int = 64) -> torch.Tensor:
        """Latents ``(B, latent channels, latent length)`` of real 10 s ECGs ``(B, 12, 10 * sampling_rate)`` in mV (the VAE's posterior mean)."""
        leads = resolve_lead_order(lead_order)
        num_samples = int(round(10.0 * sampling_rate))
        ecgs = torch.as_tensor(ecgs, dtype=torch.float32)
        expected = f"(num_ecgs, 12, {num_samples}): 10 s at {sampling_rate:g} Hz in mV, leads in the order {', '.join(leads)}"
        if len(leads) != 12 or set(leads) != set(MODEL_LEADS):
            raise ValueError(f"Seed ECGs need all 12 leads, but lead_order names {len(leads)}: {', '.join(leads)}.")
        if ecgs.ndim != 3 or ecgs.shape[1:] != (12, num_samples):
            raise ValueError(f"Seed ECGs should have shape {expected}; got shape {tuple(ecgs.shape)}.")
        if not torch.isfinite(ecgs).all():
            raise ValueError(f"Seed ECGs should be finite (shape {expected}), but hold NaN or inf values.")
        ecgs = convert_ecg(ecgs, source_leads=leads, target_leads="model", num_samples=MODEL_NUM_SAMPLES)
        latents = [self.vae.encode(chunk.to(self.device)).mode() for chunk in ecgs.split(batch_size)]
        return torch.cat(latents).float()

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        reports: Sequence[str] | None = None,
        age=None,
        sex=None,
        heart_rate=None,
        *,
        prompt_embeds: torch.Tensor | None = None,
        num_samples: int = 1,
        init_ecgs: torch.Tensor | np.ndarray | None = None,
        strength: float = 1.0,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        lead_order: str | Sequence[str] = "ptbxl",
        sampling_rate: float = 100.0,
        batch_size: int | None = None,
        show_progress: bool = True,
        return_dict: bool = True,
    ):
        """Generate ECGs.

        Args:
            reports: one report per condition; several findings joined by ``|``.
            age, sex, heart_rate: one value per report, or one for all: age 0–120 years, sex ``'M'``/``'F'``,
                heart rate 20–300 bpm. ``None`` means unknown, which only models trained with
                missing-value indicators accept.
            num_samples: ECGs per condition; the output holds ``len(reports) * num_samples`` ECGs, grouped by condition.
            init_ecgs: real seed ECGs, one per report, ``(len(reports), 12, 10 * sampling_rate)`` in mV and in
                ``lead_order`` (as the output). Generation starts from them, noised part-way (as diffusers' img2img).
            strength: with ``init_ecgs``: the fraction of the ``num_inference_steps`` schedule that is run, in (0, 1];
                small values stay close to the seed, 1 starts from pure noise (the seeds are then not used).
            num_inference_steps: sampler steps, 1–1000 (default: 15 for SDE-DPM-Solver++, 12 for UniPC, 25 for DPM-Solver++, 50 for DDIM, 1000 for DDPM).
            guidance_scale: classifier-free guidance, enabled when > 1 (models trained with condition dropout only).
            generator: one ``torch.Generator``, or a list with one per output ECG (results then do not depend on batching).
            latents: the starting noise ``(num_ecgs, latent channels, latent length)`` (8 x 128 for ptbxl-base) (with ``init_ecgs``: the noise added to their latents).
            lead_order: ``"ptbxl"`` (I, II, III, aVR, aVL, aVF, V1–V6), ``"model"`` (aVF before aVL) or a lead list.
            sampling_rate: of the returned 10 s ECGs, 1–10,000 Hz: 100 → 1000 samples, 500 → 5000, 102.4 → 1024 (native).
            batch_size: ECGs per forward pass (default: 1024 on GPU, 64 on CPU).

        Valid ranges are those of :mod:`ecgaug.settings`; a value outside them raises ``ValueError``.
        """
        settings = GenerationSettings(model=self.model_id, scheduler=self.scheduler, num_inference_steps=num_inference_steps,
                                      guidance_scale=guidance_scale, strength=strength, lead_order=lead_order,
                                      sampling_rate=sampling_rate, batch_size=batch_size)
        num_conditions = self.check_inputs(reports, prompt_embeds, age, sex, heart_rate, num_samples, settings)
        total = num_conditions * num_samples
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(f"generator list should have one generator per output ECG ({total}), but got {len(generator)}.")
        if latents is not None and tuple(latents.shape) != (total, self.unet.config.in_channels, self.unet.config.latent_length):
            raise ValueError(f"latents should have shape {(total, self.unet.config.in_channels, self.unet.config.latent_length)}, but got {tuple(latents.shape)}.")
        steps = settings.num_inference_steps
        denoised_steps = int(steps * settings.strength)  # as diffusers' img2img
        if init_ecgs is None and settings.strength < 1.0:
            raise ValueError(f"strength={settings.strength} < 1 needs init_ecgs (real seed ECGs); without them pass strength=1.")
        if denoised_steps < 1:
            raise ValueError(f"strength * num_inference_steps = {settings.strength} * {steps} leaves no denoising step; raise either.")
        if init_ecgs is not None and len(init_ecgs) != num_conditions:
            raise ValueError(f"init_ecgs should hold one seed ECG per report ({num_conditions}), but got {len(init_ecgs)}.")

        features = patient_features(_per_row(sex, num_conditions, "sex"), _per_row(age, num_conditions, "age"),
                                    _per_row(heart_rate, num_conditions, "heart_rate"))
        device = self.device
        batch_size = settings.batch_size or (1024 if device.type == "cuda" else 64)
        init_latents = None
        if init_ecgs is not None:
            init_latents = self.encode_ecgs(init_ecgs, lead_order=settings.lead_order, sampling_rate=settings.sampling_rate, batch_size=batch_size)
            init_latents = None if settings.strength == 1.0 else init_latents.repeat_interleave(num_samples, dim=0)
        embeds = prompt_embeds.float() if prompt_embeds is not None else self.encode_reports(list(reports))
        self.unet.build_condition(embeds, features)  # validates patient information before any work
        embeds = embeds.repeat_interleave(num_samples, dim=0)
        features = features.repeat_interleave(num_samples, dim=0)

        ecgs, all_latents = [], []
        bar = tqdm(total=total * denoised_steps, desc=f"{self.sampler_name} x{denoised_steps}", unit="step·ECG", disable=not show_progress)
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            gen = generator[start:stop] if isinstance(generator, list) else generator
            noise = None if latents is None else latents[start:stop]
            init = None if init_latents is None else init_latents[start:stop]
            z = self._denoise(embeds[start:stop].to(device), features[start:stop].to(device), settings, gen, noise, init, bar)
            all_latents.append(z.float().cpu())
            ecgs.append(self._decode(z).cpu())
        bar.close()
        out_samples = settings.num_output_samples
        ecgs = convert_ecg(torch.cat(ecgs), source_leads="model", target_leads=settings.lead_order,
                           num_samples=None if out_samples == MODEL_NUM_SAMPLES else out_samples)
        output = DiffuSETSPipelineOutput(ecgs=ecgs.float(), latents=torch.cat(all_latents))
        return output if return_dict else (output.ecgs, output.latents)

    def generate(self, reports: Sequence[str], age=None, sex=None, heart_rate=None, **kwargs) -> torch.Tensor:
        """Like ``__call__``, returning only the ECGs ``(B, 12, num_samples)`` in mV."""
        kwargs.setdefault("show_progress", False)
        return self(reports, age, sex, heart_rate, **kwargs).ecgs

    def _autocast(self, cpu_dtype: torch.dtype | None = None):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if cpu_dtype is not None and cpu_dtype != torch.float32:
            return torch.autocast("cpu", dtype=cpu_dtype)
        return torch.autocast("cpu", enabled=False)

    def _timesteps(self, steps: int, strength: float) -> torch.Tensor:
        """The last ``int(steps * strength)`` timesteps of a ``steps``-step schedule (diffusers' img2img ``get_timesteps``)."""
        self.scheduler.set_timesteps(steps, device=self.device)
        begin = (steps - int(steps * strength)) * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(begin)
        return self.scheduler.timesteps[begin:]

    def _denoise(self, embeds, features, settings: GenerationSettings, generator, noise, init_latents, bar) -> torch.Tensor:
        batch = embeds.shape[0]
        shape = (batch, self.unet.config.in_channels, self.unet.config.latent_length)
        if noise is None:
            noise = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        noise = noise.to(self.device)
        if init_latents is None:  # pure noise, the full schedule
            timesteps = self._timesteps(settings.num_inference_steps, 1.0)
            latents = noise * self.scheduler.init_noise_sigma
        else:  # the seeds' latents noised to the first timestep run
            timesteps = self._timesteps(settings.num_inference_steps, settings.strength)
            latents = self.scheduler.add_noise(init_latents.to(self.device), noise, timesteps[:1].repeat(batch))
        guidance_scale = settings.guidance_scale
        guided = guidance_scale > 1.0
        if guided:  # conditional and unconditional rows as one doubled batch
            embeds, features = torch.cat([embeds, embeds]), torch.cat([features, features])
            drop = torch.cat([torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)]).to(self.device)
        # Stochastic samplers draw their noise from `generator`; deterministic ones (UniPC) take no generator.
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        with self._autocast():  # what the condition adds to each block: the same at every step
            condition = self.unet.condition_embeddings(embeds, features, drop if guided else None)
        for t in timesteps:
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            with self._autocast():
                noise_pred = self.unet(model_input, t, condition_embeddings=condition).float()
            if guided:
                noise_cond, noise_uncond = noise_pred.chunk(2)
                noise_pred = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            bar.update(batch)
        return latents

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self._autocast(self.cpu_decode_dtype):
            return self.vae.decode(latents).float()  # (B, 12, 1024), model lead order
