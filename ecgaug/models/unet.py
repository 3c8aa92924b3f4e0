"""The DiffuSETS conditional 1-D UNet over VAE latents.

Rebuilt from the facts in DiffuSETS' published model description (Lai et al., Patterns 2025).
It predicts the noise in a latent ``(B, 4, 128)`` at a diffusion timestep, conditioned on a
text embedding of the clinical report and on patient information (sex, age, heart rate).

Conditioning enters every block through a "cross-attention" whose keys and values come from a
single condition vector repeated along the sequence. Attention over identical keys is uniform,
so the layer's output is exactly its value path applied to that vector; :class:`ConditionInjection`
computes that directly (same numbers, no attention over the sequence). The published checkpoint's
query-path weights therefore have no effect and are dropped by the converter, knowingly.

For sampling, :meth:`ConditionalUNet1D.fuse_projections` folds each chain of linear layers into one
(attention projections, the condition's value path) and tabulates the time embeddings: the same
function up to float rounding, about 1.5x faster per step at small batches on a CPU.

Patient features are ``(sex_is_male, age_years, heart_rate_bpm)``, raw, as published. Models
trained here may add a learned "unknown" per feature (``patient_missing_indicators``) and a learned
null condition for classifier-free guidance (``null_condition``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ecgaug.models.modeling_utils import FusionMixin, PretrainedModelMixin

__all__ = ["UNetConfig", "ConditionalUNet1D", "PATIENT_FEATURES", "sinusoidal_time_table"]

PATIENT_FEATURES = ("sex_is_male", "age", "heart_rate")


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    block_out_channels: tuple[int, ...] = (8, 16, 32, 64, 128, 256)  # one down block each; the up path mirrors it
    kernel_size: int = 7
    num_heads: int = 8  # self-attention heads in down/up blocks; hidden width is 2 x the block's input channels
    bottleneck_kernel_size: int = 3
    bottleneck_num_heads: int = 4
    bottleneck_attention_dim: int = 32
    text_embed_dim: int = 1536  # OpenAI text-embedding-ada-002
    time_embed_dim: int = 64
    time_hidden_dim: int = 128
    num_train_timesteps: int = 1000
    latent_length: int = 128
    # Patient features enter as (value - mean) / std; the published model takes them raw.
    patient_feature_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    patient_feature_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    patient_missing_indicators: bool = False  # published: False (age, sex and HR must be known)
    null_condition: bool = False  # True when trained with condition dropout: enables classifier-free guidance

    @property
    def condition_dim(self) -> int:
        n = len(PATIENT_FEATURES)
        return self.text_embed_dim + (2 * n if self.patient_missing_indicators else n)


def sinusoidal_time_table(num_timesteps: int, dim: int) -> torch.Tensor:
    """Row t = [sin(s f), cos(s f)] with s = t + 1 and f_i = exp(-10 i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * (-10.0 / (half - 1)))
    steps = torch.arange(1, num_timesteps + 1, dtype=torch.float64)[:, None]
    return torch.cat([torch.sin(steps * freqs), torch.cos(steps * freqs)], dim=1).float()


def _compose(*maps: nn.Linear | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the one affine map equal to applying ``maps`` (linear layers or (weight, bias)) in order."""
    pairs = [(m.weight, m.bias) if isinstance(m, nn.Linear) else m for m in maps]
    weight, bias = pairs[0]
    for w, b in pairs[1:]:
        weight, bias = w @ weight, w @ bias + b
    return weight, bias


def _pointwise(conv: nn.Conv1d, rows: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to ``(B, L, C_in)`` rows as one matrix product: ``(B, L, C_out)``.

    PyTorch runs 1x1 convolutions of batches under 16 on one CPU thread as a loop of per-sample products,
    4-7x slower than this at the UNet's short lengths: 4-6 % of a sampling step (README, Benchmarks).
    """
    return F.linear(rows, conv.weight.squeeze(-1), conv.bias)


class TimeEmbedding(nn.Module):
    """Fixed sinusoidal table → MLP → per-channel bias of width ``out_channels``."""

    def __init__(self, config: UNetConfig, out_channels: int):
        super().__init__()
        # A buffer, not a parameter: published checkpoints store it, and a loader takes it as stored.
        self.register_buffer("table", sinusoidal_time_table(config.num_train_timesteps, config.time_embed_dim))
        self.fc1 = nn.Linear(config.time_embed_dim, config.time_hidden_dim)
        self.fc2 = nn.Linear(config.time_hidden_dim, out_channels)
        self.register_buffer("fused_table", None, persistent=False)  # the MLP's output per timestep, once fused

    def fuse(self) -> None:
        self.fused_table = self.fc2(F.mish(self.fc1(self.table)))

    def unfuse(self) -> None:
        self.fused_table = None

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        if self.fused_table is not None and not self.training:
            return self.fused_table[timestep]
        return self.fc2(F.mish(self.fc1(self.table[timestep])))  # (B, out_channels)


class SelfAttention(nn.Module):
    """LayerNorm → q/k/v projections to ``hidden`` → multi-head attention → projection back, residual."""

    def __init__(self, channels: int, hidden: int, num_heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, hidden)
        self.to_k = nn.Linear(channels, hidden)
        self.to_v = nn.Linear(channels, hidden)
        self.attention = nn.MultiheadAttention(hidden, num_heads, batch_first=True)
        self.to_out = nn.Linear(hidden, channels)
        # Once fused: to_q/to_k/to_v composed with the attention's input projection (one (3h, C) map), and
        # the attention's output projection composed with to_out.
        for name in ("fused_qkv_weight", "fused_qkv_bias", "fused_out_weight", "fused_out_bias"):
            self.register_buffer(name, None, persistent=False)

    def fuse(self) -> None:
        hidden = self.attention.embed_dim
        in_weights, in_biases = self.attention.in_proj_weight.split(hidden), self.attention.in_proj_bias.split(hidden)
        parts = [_compose(projection, (w, b)) for projection, w, b in zip((self.to_q, self.to_k, self.to_v), in_weights, in_biases)]
        self.fused_qkv_weight, self.fused_qkv_bias = torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts])
        self.fused_out_weight, self.fused_out_bias = _compose(self.attention.out_proj, self.to_out)

    def unfuse(self) -> None:
        self.fused_qkv_weight = self.fused_qkv_bias = self.fused_out_weight = self.fused_out_bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, C)
        h = self.norm(x)
        if self.fused_qkv_weight is None or self.training:
            h, _ = self.attention(self.to_q(h), self.to_k(h), self.to_v(h), need_weights=False)
            return x + self.to_out(h)
        batch, length, _ = h.shape
        q, k, v = F.linear(h, self.fused_qkv_weight, self.fused_qkv_bias).view(batch, length, 3, self.attention.num_heads, -1).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, -1)  # same scale as nn.MultiheadAttention
        return x + F.linear(h, self.fused_out_weight, self.fused_out_bias)


class ConditionInjection(nn.Module):
    """The published cross-attention, computed exactly through its value path.

    condition (B, D_cond) → Linear → LayerNorm → to_v → attention's value and output projections
    → to_out: one vector (B, C) that the block adds to every position. It depends on the condition
    only, so sampling computes it once per ECG (:meth:`ConditionalUNet1D.condition_embeddings`), not
    once per step. Parameter names match the published value path.
    """

    def __init__(self, channels: int, hidden: int, condition_dim: int):
        super().__init__()
        self.value_combiner = nn.Linear(condition_dim, channels)
        self.condition_normalization = nn.LayerNorm(channels)
        self.to_v = nn.Linear(channels, hidden)
        self.value_proj = nn.Linear(hidden, hidden)  # the "v" third of the attention's in_proj
        self.out_proj = nn.Linear(hidden, hidden)  # the attention's out_proj
        self.to_out = nn.Linear(hidden, channels)
        self.register_buffer("fused_weight", None, persistent=False)  # to_v → value_proj → out_proj → to_out, once fused
        self.register_buffer("fused_bias", None, persistent=False)

    def fuse(self) -> None:
        self.fused_weight, self.fused_bias = _compose(self.to_v, self.value_proj, self.out_proj, self.to_out)

    def unfuse(self) -> None:
        self.fused_weight = self.fused_bias = None

    def forward(self, condition: torch.Tensor) -> torch.Tensor:  # (B, D_cond) -> (B, C)
        h = self.condition_normalization(self.value_combiner(condition))
        if self.fused_weight is None or self.training:
            return self.to_out(self.out_proj(self.value_proj(self.to_v(h))))
        return F.linear(h, self.fused_weight, self.fused_bias)


class ConditionalBlock(nn.Module):
    """time bias → conv → norm → Mish → 1×1 conv → self-attention → condition → LayerNorm → conv → norm → Mish, + residual."""

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int):
        super().__init__()
        mid = (in_channels + out_channels) // 2
        hidden = 2 * in_channels
        k = config.kernel_size
        self.time_embedding = TimeEmbedding(config, in_channels)
        self.conv1 = nn.Conv1d(in_channels, mid, k, padding=k // 2)
        self.norm1 = nn.GroupNorm(1, mid)
        self.conv_mid = nn.Conv1d(mid, mid, 1)
        self.self_attention = SelfAttention(mid, hidden, config.num_heads)
        self.condition = ConditionInjection(mid, hidden, config.condition_dim)
        self.attention_norm = nn.LayerNorm(mid)
        self.conv2 = nn.Conv1d(mid, out_channels, k, padding=k // 2)
        self.norm2 = nn.GroupNorm(1, out_channels)
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, condition_embedding: torch.Tensor) -> torch.Tensor:
        h = x + self.time_embedding(timestep)[:, :, None]
        h = F.mish(self.norm1(self.conv1(h))).transpose(1, 2)  # (B, L, mid)
        h = _pointwise(self.conv_mid, h)
        h = self.attention_norm(self.self_attention(h) + condition_embedding[:, None, :])
        h = h.transpose(1, 2)
        h = F.mish(self.norm2(self.conv2(h)))  # (B, out, L)
        if isinstance(self.residual, nn.Identity):
            return h + x
        return h + _pointwise(self.residual, x.transpose(1, 2)).transpose(1, 2)  # residual from the input before the time bias


class Bottleneck(nn.Module):
    def __init__(self, config: UNetConfig, channels: int):
        super().__init__()
        k = config.bottleneck_kernel_size
        hidden = config.bottleneck_attention_dim
        self.time_embedding = TimeEmbedding(config, channels)
        self.conv1 = nn.Conv1d(channels, channels, k, padding=k // 2)
        self.norm1 = nn.GroupNorm(1, channels)
        self.conv1_2 = nn.Conv1d(channels, channels, k, padding=k // 2)
        self.self_attention = SelfAttention(channels, hidden, config.bottleneck_num_heads)
        self.condition = ConditionInjection(channels, hidden, config.condition_dim)
        self.attention_norm = nn.LayerNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, k, padding=k // 2)
        self.norm2 = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, condition_embedding: torch.Tensor) -> torch.Tensor:
        h = x + self.time_embedding(timestep)[:, :, None]
        h = self.conv1_2(F.mish(self.norm1(self.conv1(h))))
        h = self.attention_norm(self.self_attention(h.transpose(1, 2)) + condition_embedding[:, None, :]).transpose(1, 2)
        h = F.mish(self.norm2(self.conv2(h)))
        return h + x


class DownBlock(nn.Module):
    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.block = ConditionalBlock(config, in_channels, out_channels)
        self.downsample = nn.Conv1d(out_channels, out_channels, 3, stride=2, padding=1)


class UpBlock(nn.Module):
    def __init__(self, config: UNetConfig, upsample_channels: int, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.ConvTranspose1d(upsample_channels, upsample_channels, 4, stride=2, padding=1)
        self.block = ConditionalBlock(config, in_channels, out_channels)


class ConditionalUNet1D(PretrainedModelMixin, FusionMixin):
    """Noise prediction ``(B, C, L)`` from noisy latents, timesteps, text embeddings and patient features."""

    config_class = UNetConfig

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        channels = config.block_out_channels
        if config.latent_length % 2 ** len(channels):
            raise ValueError(f"latent_length {config.latent_length} must be divisible by 2**{len(channels)} (one halving per down block).")
        ins = (config.in_channels,) + channels[:-1]
        self.down_blocks = nn.ModuleList(DownBlock(config, i, o) for i, o in zip(ins, channels))
        self.bottleneck = Bottleneck(config, channels[-1])
        # Up path: the first block sees only the upsampled bottleneck; the others also get the
        # matching down-block output (the deepest down block's output is not used as a skip).
        up_outs = tuple(reversed(ins))  # e.g. 128, 64, 32, 16, 8, 4
        self.up_blocks = nn.ModuleList()
        previous = channels[-1]
        for i, out_channels in enumerate(up_outs):
            skip = 0 if i == 0 else up_outs[i - 1]
            self.up_blocks.append(UpBlock(config, previous, previous + skip, out_channels))
            previous = out_channels
        k = 3
        self.conv_out = nn.Sequential(
            nn.Conv1d(config.in_channels, config.in_channels, k, padding=k // 2),
            nn.Mish(),
            nn.Conv1d(config.in_channels, config.in_channels, 1),
        )
        if config.null_condition:
            self.null_text_embedding = nn.Parameter(torch.zeros(config.text_embed_dim))

    _FUSABLE = (TimeEmbedding, SelfAttention, ConditionInjection)

    def fuse_projections(self) -> "ConditionalUNet1D":
        """Fold each chain of linear layers into one and tabulate the time embeddings, for sampling.

        The same function up to float rounding (about 1e-6 relative), with fewer and larger matrix
        products: about 1.5x faster steps at batches of 4-8 on a CPU. The fused weights stay out of the
        state dict, are used in eval mode, follow loaded weights and are dropped by ``train()``
        (:class:`~ecgaug.models.modeling_utils.FusionMixin`).
        """
        return self._set_fused(True)

    def unfuse_projections(self) -> "ConditionalUNet1D":
        """Drop the fused weights (the layers compute step by step again)."""
        return self._set_fused(False)

    def build_condition(
        self,
        text_embeds: torch.Tensor,
        patient_features: torch.Tensor,
        drop_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Condition vector ``(B, condition_dim)``.

        Args:
            text_embeds: ``(B, text_embed_dim)``.
            patient_features: ``(B, 3)``: sex_is_male (1/0), age in years, heart rate in bpm; NaN = unknown.
            drop_condition: optional ``(B,)`` bool; True replaces that row by the learned null condition.
        """
        cfg = self.config
        if text_embeds.ndim != 2 or text_embeds.shape[1] != cfg.text_embed_dim:
            raise ValueError(f"text_embeds should have shape (batch, {cfg.text_embed_dim}), but got {tuple(text_embeds.shape)}.")
        if patient_features.shape != (text_embeds.shape[0], len(PATIENT_FEATURES)):
            raise ValueError(f"patient_features should have shape ({text_embeds.shape[0]}, 3) {PATIENT_FEATURES}, but got {tuple(patient_features.shape)}.")
        mean = torch.tensor(cfg.patient_feature_mean, dtype=text_embeds.dtype, device=text_embeds.device)
        std = torch.tensor(cfg.patient_feature_std, dtype=text_embeds.dtype, device=text_embeds.device)
        patient_features = (patient_features.to(text_embeds.dtype) - mean) / std
        missing = torch.isnan(patient_features)
        if drop_condition is not None:
            if not cfg.null_condition:
                raise ValueError("This UNet was not trained with condition dropout (null_condition=False); it has no unconditional mode.")
            drop = drop_condition.to(torch.bool)
            text_embeds = torch.where(drop[:, None], self.null_text_embedding.to(text_embeds.dtype), text_embeds)
            missing = missing | drop[:, None]
        if cfg.patient_missing_indicators:
            values = torch.where(missing, torch.zeros_like(patient_features), patient_features)
            return torch.cat([text_embeds, values, missing.to(text_embeds.dtype)], dim=1)
        if missing.any():
            names = [PATIENT_FEATURES[j] for j in missing.any(0).nonzero().flatten().tolist()]
            raise ValueError(f"Patient features {names} are unknown (NaN) for some rows, but this model needs age, sex and heart rate for every ECG.")
        return torch.cat([text_embeds, patient_features], dim=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        text_embeds: torch.Tensor | None = None,
        patient_features: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        *,
        condition_embeddings: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``sample`` ``(B, in_channels, latent_length)``; returns the same shape.

        The condition is ``text_embeds`` + ``patient_features`` (+ ``drop_condition``), or, when sampling,
        ``condition_embeddings`` computed once from them by :meth:`condition_embeddings`.
        """
        batch = sample.shape[0]
        timestep = torch.as_tensor(timestep, device=sample.device).long()
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if condition_embeddings is None:
            if text_embeds is None or patient_features is None:
                raise ValueError("Pass text_embeds and patient_features, or condition_embeddings from unet.condition_embeddings(...).")
            condition_embeddings = self.condition_embeddings(text_embeds, patient_features, drop_condition, dtype=sample.dtype)
        per_block = iter(condition_embeddings)

        h = sample
        skips = []
        for down in self.down_blocks:
            h = down.block(h, timestep, next(per_block))
            skips.append(h)
            h = down.downsample(h)  # length halves: 128 -> 64 -> ... -> 2
        skips.pop()  # the deepest block's output is not a skip
        h = self.bottleneck(h, timestep, next(per_block))
        for i, up in enumerate(self.up_blocks):
            h = up.upsample(h)  # length doubles
            if i > 0:
                h = torch.cat([h, skips.pop()], dim=1)
            h = up.block(h, timestep, next(per_block))
        return self.conv_out(h)

    def condition_embeddings(self, text_embeds: torch.Tensor, patient_features: torch.Tensor, drop_condition: torch.Tensor | None = None,
                             *, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        """What each block adds for the condition, ``(B, C_block)`` per block (down blocks, bottleneck, up blocks).

        It does not depend on the noisy sample or the timestep: a sampler computes it once and passes it to
        every step as ``condition_embeddings=``. Arguments as :meth:`build_condition`.
        """
        condition = self.build_condition(text_embeds, patient_features, drop_condition)
        if dtype is not None:
            condition = condition.to(dtype)
        blocks = [down.block for down in self.down_blocks] + [self.bottleneck] + [up.block for up in self.up_blocks]
        return tuple(block.condition(condition) for block in blocks)


