"""The two DiffuSETS training stages and the model sizes they train.

1. :func:`train_vae`: reconstruction (MSE, mV²) plus a small KL term. Afterwards the latent
   latents are normalised (``shift_factor`` = per-channel mean, ``scaling_factor`` = 1 / std), so the
   UNet sees centred, unit-scale latents.
2. :func:`train_unet`: v-prediction under the published DDPM noise schedule, on VAE latents
   precomputed once, with condition dropout (classifier-free guidance) and per-feature dropout of
   age/sex/heart rate (so "unknown" is learned, never invented).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ecgaug.models import ECGVAE, ConditionalUNet1D, UNetConfig, VAEConfig
from ecgaug.models.modeling_utils import build_seeded
from ecgaug.schedulers import published_ddpm_scheduler
from ecgaug.training.conditions import ConditionedECGs
from ecgaug.training.loop import TrainingConfig, train

__all__ = ["MODEL_SIZES", "train_vae", "encode_latents", "train_unet", "embed_reports", "scheduler_for_trained_models"]

# Typical adult values (sex_is_male, age in years, heart rate in bpm): inputs of unit scale for our models.
PATIENT_MEAN = (0.5, 60.0, 75.0)
PATIENT_STD = (0.5, 17.0, 20.0)

# name -> (VAE config, UNet config without text_embed_dim)
MODEL_SIZES = {
    "published": (VAEConfig(), UNetConfig()),
    "base": (  # eight independent leads, limb leads derived; 8 x 128 latent
        VAEConfig(in_channels=8, latent_channels=8, block_out_channels=(32, 64, 128, 128), layers_per_block=1,
                  norm_num_groups=16, derive_limb_leads=True),
        UNetConfig(in_channels=8, block_out_channels=(24, 48, 96, 128), kernel_size=5, num_heads=4, bottleneck_attention_dim=64,
                   bottleneck_num_heads=4, patient_feature_mean=PATIENT_MEAN, patient_feature_std=PATIENT_STD,
                   patient_missing_indicators=True, null_condition=True),
    ),
    "lite": (
        VAEConfig(block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8),
        UNetConfig(block_out_channels=(16, 32, 64, 128), kernel_size=5, num_heads=4, bottleneck_attention_dim=32,
                   bottleneck_num_heads=4, patient_feature_mean=PATIENT_MEAN, patient_feature_std=PATIENT_STD,
                   patient_missing_indicators=True, null_condition=True),
    ),
    "tiny": (  # for tests and smoke runs
        VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4),
        UNetConfig(block_out_channels=(8, 16), kernel_size=3, num_heads=2, bottleneck_attention_dim=8, bottleneck_num_heads=2,
                   time_hidden_dim=16, patient_feature_mean=PATIENT_MEAN, patient_feature_std=PATIENT_STD,
                   patient_missing_indicators=True, null_condition=True),
    ),
}


def scheduler_for_trained_models():
    """Our models' DDPM schedule: the published betas, v-prediction, no clipping of the predicted latent.

    v-prediction keeps the target well scaled at high noise, where an epsilon-predicting model's
    small errors are amplified into the predicted latent (our short CPU trainings diverged there).
    """
    return published_ddpm_scheduler(clip_sample=False, prediction_type="v_prediction")


def train_vae(data: ConditionedECGs, vae_config: VAEConfig, config: TrainingConfig, *, kl_weight: float = 1e-4) -> tuple[ECGVAE, dict]:
    """Train the VAE on ``data.signals`` and calibrate its latent scaling factor."""
    model = build_seeded(config.seed, ECGVAE, dataclasses.replace(vae_config, scaling_factor=1.0))

    def loss_fn(vae, batch, generator):
        x = batch["signal"]
        latent_length = x.shape[-1] // 2 ** (len(vae_config.block_out_channels) - 1)
        noise = torch.randn((x.shape[0], vae_config.latent_channels, latent_length), generator=generator).to(x.device)
        recon, posterior = vae(x, noise=noise)
        mse = F.mse_loss(recon.float(), x)
        kl = posterior.kl().mean() / x[0].numel()  # per signal value, like the MSE
        return mse + kl_weight * kl, {"mse": mse.item(), "kl": kl.item()}

    model, summary = train(model, {"signal": data.signals}, loss_fn, config, describe="VAE")
    model = calibrate_latents(model, data.signals)
    summary.update(scaling_factor=model.config.scaling_factor, shift_factor=list(model.config.shift_factor))
    return model, summary


def calibrate_latents(vae: ECGVAE, signals: torch.Tensor, max_records: int = 4096) -> ECGVAE:
    """The same VAE with ``shift_factor`` = per-channel latent mean and ``scaling_factor`` = 1 / std after the shift."""
    device = next(vae.parameters()).device
    with torch.no_grad():
        means = torch.cat([vae.encode(signals[i:i + 256].to(device)).mean.cpu() for i in range(0, min(len(signals), max_records), 256)])
    shift = means.mean(dim=(0, 2))
    scale = float(1.0 / (means - shift[:, None]).std())
    new = ECGVAE(dataclasses.replace(vae.config, scaling_factor=scale, shift_factor=tuple(shift.tolist())))
    new.load_state_dict(vae.state_dict())
    return new.eval()


@torch.no_grad()
def encode_latents(vae: ECGVAE, signals: torch.Tensor, batch_size: int = 256, show_progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised posterior means and standard deviations ``(N, 4, 128)`` of every record, computed once."""
    device = next(vae.parameters()).device
    means, stds = [], []
    for start in tqdm(range(0, len(signals), batch_size), desc="encoding latents", disable=not show_progress):
        posterior = vae.encode(signals[start:start + batch_size].to(device))
        means.append(posterior.mode().cpu())
        stds.append((torch.exp(0.5 * posterior.logvar) * vae.config.scaling_factor).cpu())
    return torch.cat(means), torch.cat(stds)


def embed_reports(reports: list[list[str]], text_encoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every distinct report once: returns the table ``(T, D)`` and per-record indices ``(N, K)``."""
    from ecgaug.text.prompt import build_prompt

    width = max(len(r) for r in reports)
    distinct = sorted({text for variants in reports for text in variants})
    position = {text: i for i, text in enumerate(distinct)}
    table = text_encoder.encode([build_prompt(text) for text in distinct], show_progress=True)  # minutes on a CPU
    index = torch.tensor([[position[v[k % len(v)]] for k in range(width)] for v in reports], dtype=torch.long)
    return table, index


def train_unet(
    data: ConditionedECGs,
    vae: ECGVAE,
    text_encoder,
    unet_config: UNetConfig,
    config: TrainingConfig,
    *,
    condition_dropout: float = 0.1,
    patient_feature_dropout: float = 0.1,
) -> tuple[ConditionalUNet1D, dict]:
    """Train the conditional UNet to predict the noise added to VAE latents."""
    unet_config = dataclasses.replace(unet_config, text_embed_dim=text_encoder.embedding_dim, in_channels=vae.config.latent_channels,
                                      latent_length=vae.config.latent_length, null_condition=condition_dropout > 0 or unet_config.null_condition)
    if (data.patient.isnan().any() or patient_feature_dropout > 0) and not unet_config.patient_missing_indicators:
        raise ValueError("Some age/sex/heart-rate values are unknown (or feature dropout is on), so the UNet needs patient_missing_indicators=True.")
    mean, std = encode_latents(vae, data.signals)
    table, text_index = embed_reports(data.reports, text_encoder)
    scheduler = scheduler_for_trained_models()
    model = build_seeded(config.seed, ConditionalUNet1D, unet_config)

    def loss_fn(unet, batch, generator):
        b, device = batch["latent_mean"].shape[0], batch["latent_mean"].device
        draw = lambda *shape: torch.rand(shape, generator=generator).to(device)  # noqa: E731
        variant = (draw(b) * text_index.shape[1]).long().clamp_max(text_index.shape[1] - 1)
        embeds = table.to(device)[batch["text_index"][torch.arange(b, device=device), variant]]
        latents = batch["latent_mean"] + batch["latent_std"] * torch.randn(batch["latent_mean"].shape, generator=generator).to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        patient = batch["patient"].masked_fill(draw(b, 3) < patient_feature_dropout, float("nan"))
        drop = draw(b) < condition_dropout if condition_dropout > 0 else None
        pred = unet(noisy, t, embeds, patient, drop_condition=drop)
        target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, t)
        loss = F.mse_loss(pred.float(), target)
        return loss, {}

    tensors = {"latent_mean": mean, "latent_std": std, "text_index": text_index, "patient": data.patient}
    model, summary = train(model, tensors, loss_fn, config, describe="UNet", cpu_bf16=False)  # measured no faster on the CPU
    summary.update(distinct_reports=len(table), condition_dropout=condition_dropout, patient_feature_dropout=patient_feature_dropout)
    return model, summary
