"""``DiffuSETSPipeline``: clinical report + patient information → 12-lead ECG.

Thin glue in diffusers' style: the VAE, the conditional UNet, a swappable ``diffusers``
scheduler and a text encoder are separate parts; ``__call__`` encodes the prompts, runs the
denoising loop written out in full, decodes, and converts the ECGs to the lead order and
sampling rate the caller asks for. Inference only; training lives in :mod:`ecgaug.training`.
"""
from __future__ import annotations

import hashlib
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
from ecgaug.models.modeling_utils import WEIGHTS_NAME
from ecgaug.schedulers import DEFAULT_NUM_INFERENCE_STEPS, make_scheduler, published_ddpm_scheduler
from ecgaug.signal import MODEL_NUM_SAMPLES, RECORD_SECONDS, convert_ecg

__all__ = ["DiffuSETSPipeline", "DiffuSETSPipelineOutput", "PRETRAINED_DIR", "list_pretrained"]

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
MODEL_INDEX = "model_index.json"


def list_pretrained() -> list[str]:
    """Names of the models shipped inside the package (``from_pretrained(name)``)."""
    return sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / MODEL_INDEX).is_file())


@dataclass
class DiffuSETSPipelineOutput:
    ecgs: torch.Tensor  # (num_ecgs, 12, num_samples) float32 mV, in the requested lead order and rate
    latents: torch.Tensor  # (num_ecgs, 4, 128) denoised latents


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
    if isinstance(value, np.ndarray):
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


class DiffuSETSPipeline:
    """Generate 12-lead ECGs from clinical reports and patient information with DiffuSETS.

    Example:
        >>> pipe = DiffuSETSPipeline.from_pretrained("ptbxl-lite")  # doctest: +SKIP
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
        self.vae = vae.eval()
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.training_scheduler_config = training_scheduler_config or scheduler.config
        self.model_id = model_id
        self.info = info or {}
        # Decoding is one pass (no error accumulation), so on CPUs with bf16 matrix units (AMX) it can
        # run in bfloat16 for ~2.5x speed at ~2% relative RMS error; the denoising loop stays float32.
        self.cpu_decode_dtype: torch.dtype = torch.float32

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = "ptbxl-lite",
        *,
        scheduler: str | SchedulerMixin = "dpmsolver++",
        text_encoder=None,
        text_cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> "DiffuSETSPipeline":
        """Load a model folder written by :meth:`save_pretrained`, or a shipped model by name.

        Args:
            name_or_path: one of :func:`list_pretrained` or a folder with ``model_index.json``.
            scheduler: ``"dpmsolver++"`` (default), ``"ddim"``, ``"ddpm"`` or a diffusers scheduler.
            text_encoder: overrides the encoder named in ``model_index.json``.
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
        if text_encoder is None:
            from ecgaug.text.encoders import get_text_encoder

            spec = dict(index["text_encoder"])
            text_encoder = get_text_encoder(spec.pop("type"), cache_dir=text_cache_dir, **spec)
        model_id = f"{index.get('name', root.name)}-{_weights_digest(root / 'vae' / WEIGHTS_NAME, root / 'unet' / WEIGHTS_NAME)}"
        pipe = cls(vae, unet, make_scheduler(scheduler, training_config), text_encoder,
                   training_scheduler_config=training_config, model_id=model_id, info=index)
        return pipe.to(device) if device is not None else pipe

    @classmethod
    def from_upstream(
        cls,
        folder: str | os.PathLike,
        *,
        scheduler: str | SchedulerMixin = "dpmsolver++",
        text_encoder=None,
        text_cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> "DiffuSETSPipeline":
        """Load DiffuSETS' published ``vae_model.pth`` and ``unet_all.pth`` from ``folder``.

        Download them first, e.g. ``huggingface-cli download Laiyf/DiffuSETS --local-dir DIR``.
        The text encoder defaults to OpenAI ``text-embedding-ada-002`` (needs ``OPENAI_API_KEY``);
        pass ``TableTextEncoder(DIR / "ptbxl_text_embed.csv")`` to use the published embeddings.
        """
        from ecgaug.models.convert import load_upstream_unet, load_upstream_vae

        folder = Path(folder)
        vae = load_upstream_vae(folder / "vae_model.pth")
        unet = load_upstream_unet(folder / "unet_all.pth")
        if text_encoder is None:
            from ecgaug.text.encoders import get_text_encoder

            text_encoder = get_text_encoder("openai", model="text-embedding-ada-002", cache_dir=text_cache_dir)
        training_config = published_ddpm_scheduler().config
        info = {"name": "diffusets-published", "source": "Laiyf/DiffuSETS", "text_encoder": {"type": "openai", "model": "text-embedding-ada-002"}}
        pipe = cls(vae, unet, make_scheduler(scheduler, training_config), text_encoder,
                   training_scheduler_config=training_config, model_id=f"diffusets-published-{_weights_digest(folder / 'vae_model.pth', folder / 'unet_all.pth')}", info=info)
        return pipe.to(device) if device is not None else pipe

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
        return type(self.scheduler).__name__

    @property
    def supports_guidance(self) -> bool:
        return bool(self.unet.config.null_condition)

    def to(self, device: str | torch.device) -> "DiffuSETSPipeline":
        self.vae.to(device)
        self.unet.to(device)
        return self

    def set_scheduler(self, scheduler: str | SchedulerMixin) -> "DiffuSETSPipeline":
        """Swap the sampler (``"ddpm"``, ``"ddim"``, ``"dpmsolver++"`` or an instance); the noise schedule stays."""
        self.scheduler = make_scheduler(scheduler, self.training_scheduler_config)
        return self

    def encode_reports(self, reports: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(B, D)`` of the reports, wrapped in the published prompt template."""
        from ecgaug.text.prompt import build_prompt

        if self.text_encoder is None:
            raise ValueError("This pipeline has no text encoder; pass prompt_embeds instead of reports.")
        return self.text_encoder.encode([build_prompt(r) for r in reports]).to(torch.float32)

    def check_inputs(self, reports, prompt_embeds, guidance_scale: float, num_samples: int) -> int:
        if (reports is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of reports and prompt_embeds (only forward one of the two).")
        if isinstance(reports, str):
            raise ValueError("reports should be a list of report strings (one per condition), but got a single string; wrap it in a list.")
        if num_samples < 1:
            raise ValueError(f"num_samples should be a positive integer, but got {num_samples}.")
        if guidance_scale > 1.0 and not self.supports_guidance:
            raise ValueError(
                f"guidance_scale={guidance_scale} needs a model trained with condition dropout; {self.model_id} was not "
                "(the published DiffuSETS never drops its condition). Use guidance_scale=1.0."
            )
        if prompt_embeds is not None:
            if prompt_embeds.ndim != 2 or prompt_embeds.shape[1] != self.unet.config.text_embed_dim:
                raise ValueError(f"prompt_embeds should have shape (batch, {self.unet.config.text_embed_dim}), but got {tuple(prompt_embeds.shape)}.")
            return prompt_embeds.shape[0]
        return len(reports)

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
            age, sex, heart_rate: one value per report, or one for all (sex ``'M'``/``'F'``).
                ``None`` means unknown, which only models trained with missing-value indicators accept.
            num_samples: ECGs per condition; the output holds ``len(reports) * num_samples`` ECGs, grouped by condition.
            num_inference_steps: sampler steps (default: 25 for DPM-Solver++, 50 for DDIM, 1000 for DDPM).
            guidance_scale: classifier-free guidance, enabled when > 1 (models trained with condition dropout only).
            generator: one ``torch.Generator``, or a list with one per output ECG (results then do not depend on batching).
            lead_order: ``"ptbxl"`` (I, II, III, aVR, aVL, aVF, V1–V6), ``"model"`` (aVF before aVL) or a lead list.
            sampling_rate: of the returned 10 s ECGs: 100 → 1000 samples, 500 → 5000, 102.4 → 1024 (native).
            batch_size: ECGs per forward pass (default: 1024 on GPU, 64 on CPU).
        """
        num_conditions = self.check_inputs(reports, prompt_embeds, guidance_scale, num_samples)
        total = num_conditions * num_samples
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(f"generator list should have one generator per output ECG ({total}), but got {len(generator)}.")
        if latents is not None and tuple(latents.shape) != (total, self.unet.config.in_channels, self.unet.config.latent_length):
            raise ValueError(f"latents should have shape {(total, self.unet.config.in_channels, self.unet.config.latent_length)}, but got {tuple(latents.shape)}.")
        out_samples = int(round(RECORD_SECONDS * sampling_rate))
        if out_samples < 10:
            raise ValueError(f"sampling_rate should give at least 10 samples per 10 s record, but got sampling_rate={sampling_rate}.")

        features = patient_features(_per_row(sex, num_conditions, "sex"), _per_row(age, num_conditions, "age"),
                                    _per_row(heart_rate, num_conditions, "heart_rate"))
        embeds = prompt_embeds.float() if prompt_embeds is not None else self.encode_reports(list(reports))
        self.unet.build_condition(embeds, features)  # validates patient information before any work
        embeds = embeds.repeat_interleave(num_samples, dim=0)
        features = features.repeat_interleave(num_samples, dim=0)

        device = self.device
        batch_size = batch_size or (1024 if device.type == "cuda" else 64)
        steps = num_inference_steps or DEFAULT_NUM_INFERENCE_STEPS.get(self.sampler_name, 50)
        ecgs, all_latents = [], []
        starts = range(0, total, batch_size)
        bar = tqdm(total=total * steps, desc=f"{self.sampler_name} x{steps}", unit="step·ECG", disable=not show_progress)
        for start in starts:
            stop = min(start + batch_size, total)
            gen = generator[start:stop] if isinstance(generator, list) else generator
            lat = None if latents is None else latents[start:stop]
            z = self._denoise(embeds[start:stop].to(device), features[start:stop].to(device), steps, guidance_scale, gen, lat, bar)
            all_latents.append(z.float().cpu())
            ecgs.append(self._decode(z).cpu())
        bar.close()
        ecgs = convert_ecg(torch.cat(ecgs), source_leads="model", target_leads=lead_order,
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

    def _denoise(self, embeds, features, steps, guidance_scale, generator, latents, bar) -> torch.Tensor:
        batch = embeds.shape[0]
        shape = (batch, self.unet.config.in_channels, self.unet.config.latent_length)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        latents = latents.to(self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(steps, device=self.device)
        guided = guidance_scale > 1.0
        if guided:  # conditional and unconditional rows as one doubled batch
            embeds, features = torch.cat([embeds, embeds]), torch.cat([features, features])
            drop = torch.cat([torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)]).to(self.device)
        for t in self.scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            with self._autocast():
                noise = self.unet(model_input, t, embeds, features, drop_condition=drop if guided else None).float()
            if guided:
                noise_cond, noise_uncond = noise.chunk(2)
                noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise, t, latents, generator=generator).prev_sample
            bar.update(batch)
        return latents

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self._autocast(self.cpu_decode_dtype):
            return self.vae.decode(latents).float()  # (B, 12, 1024), model lead order
