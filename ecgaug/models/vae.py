"""The DiffuSETS ECG variational autoencoder (1-D, 12 leads ↔ 4 × 128 latent).

Rebuilt from the facts in DiffuSETS' published model description (Lai et al., Patterns 2025);
the layout follows Stable Diffusion's autoencoder in one dimension: down blocks of residual
blocks, a mid block with one self-attention layer, and a mirrored decoder. Published weights
are converted by :mod:`ecgaug.models.convert`.

Shapes (published configuration): ECG ``(B, 12, 1024)`` → latent ``(B, 4, 128)`` → ECG.
Leads are in the model's (MIMIC-IV-ECG) order; see :mod:`ecgaug.signal`.

With ``derive_limb_leads=True`` the networks see only the eight independent leads (I, II, V1–V6):
``encode`` takes 12-lead ECGs and drops III, aVR, aVL and aVF, and ``decode`` returns 12 leads
with those four computed exactly from I and II (Einthoven's and Goldberger's relations), as
every real ECG satisfies them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ecgaug.models.modeling_utils import FusionMixin, PretrainedModelMixin
from ecgaug.signal import INDEPENDENT_LEADS, MODEL_LEADS, derive_limb_leads

__all__ = ["VAEConfig", "ECGVAE", "LatentDistribution"]


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 12
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # one down block each; all but the last halve the length
    layers_per_block: int = 2  # residual blocks per encoder block (the decoder uses one more, as in Stable Diffusion)
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215  # latent = (z - shift_factor) * scaling_factor: unit-scale latents for the UNet
    shift_factor: tuple[float, ...] | None = None  # per latent channel; None (published) = no shift
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    num_samples: int = 1024  # ECG length the model was built for (10 s at 102.4 Hz)
    derive_limb_leads: bool = False  # True: the networks see I, II, V1-V6 (in_channels 8); III, aVR, aVL, aVF are derived

    @property
    def latent_length(self) -> int:
        return self.num_samples // 2 ** (len(self.block_out_channels) - 1)


class Conv1d(nn.Conv1d):
    """A ``nn.Conv1d`` that also takes one-row images ``(B, C, 1, L)``, as a ``1 × k`` 2-D convolution.

    The decoder runs in that layout, channels-last, on CPUs: oneDNN's channels-last 2-D kernels are
    8-11 % faster there than its 1-D ones on the published-size decoder, in float32 and bfloat16
    (measured interleaved; README, Benchmarks). Same parameters and state dict as ``nn.Conv1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, stride=(1, self.stride[0]), padding=(0, self.padding[0]))


class GroupNorm(nn.GroupNorm):
    """A ``nn.GroupNorm`` with a faster path for one-row channels-last images (see :class:`Conv1d`) on CPUs.

    PyTorch's CPU kernel normalises channels-last inputs of fewer than 1024 positions group by group with
    partial vector loads: with fewer than 16 channels per group (the published decoder's 256-channel stage
    at length 512) it takes 3.1 ms where other shapes of that size take 0.25 ms (batch 8, bfloat16), 8 % of
    the decoding time (README, Benchmarks). There the statistics come from sums over the length, which are
    contiguous in that layout, and one multiply-add applies them: the same function up to float rounding
    (one-pass variance, in float32, as PyTorch's kernel computes it).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_group = self.num_channels // self.num_groups
        if (x.ndim != 4 or x.shape[-1] >= 1024 or per_group >= 16 or not self.affine or x.device.type != "cpu"
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        batch, channels, _, length = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(batch, length, channels).float()  # a view in this layout (a copy from bf16)
        count = per_group * length
        mean = rows.sum(1).view(batch, self.num_groups, per_group).sum(-1) / count
        mean_square = rows.square().sum(1).view(batch, self.num_groups, per_group).sum(-1) / count
        rstd = torch.rsqrt((mean_square - mean.square()).clamp_min(0) + self.eps)
        scale = rstd.repeat_interleave(per_group, 1) * self.weight  # (B, C)
        shift = self.bias - mean.repeat_interleave(per_group, 1) * scale
        return torch.addcmul(shift.to(x.dtype)[:, :, None, None], x, scale.to(x.dtype)[:, :, None, None])


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm_num_groups: int):
        super().__init__()
        self.norm1 = GroupNorm(norm_num_groups, in_channels)
        self.conv1 = Conv1d(in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupNorm(norm_num_groups, out_channels)
        self.conv2 = Conv1d(out_channels, out_channels, 3, padding=1)
        self.shortcut = Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.shortcut(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over the length axis with a fused q/k/v projection.

    The published block also stores a GroupNorm that its forward pass never applies; it is
    left out here (the converter drops it knowingly).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2).transpose(1, 2)  # (B, C, L) or (B, C, 1, L) -> (B, L, C)
        q, k, v = self.in_proj(h).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C), one head
        return x + self.out_proj(h).transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Halve the length: pad one sample on the right, then a stride-2 convolution without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv1d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1)))


class Upsample(nn.Module):
    """Double the length: nearest-neighbour upsampling, then a convolution.

    Once fused (:meth:`ECGVAE.fuse_upsampling`), both run as one stride-2 transposed convolution: the
    same function up to float rounding, with a third fewer multiplications and no upsampled copy.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv1d(channels, channels, 3, padding=1)
        self.register_buffer("fused_weight", None, persistent=False)  # (in, out, 4), once fused

    def fuse(self) -> None:
        # With taps (w0, w1, w2) over the doubled sequence, output 2i is w0 x[i-1] + (w1 + w2) x[i] and
        # output 2i+1 is (w0 + w1) x[i] + w2 x[i+1]: a transposed convolution with kernel (w2, w1+w2, w0+w1, w0).
        w0, w1, w2 = self.conv.weight.unbind(-1)
        self.fused_weight = torch.stack([w2, w1 + w2, w0 + w1, w0], dim=-1).transpose(0, 1).contiguous()

    def unfuse(self) -> None:
        self.fused_weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_weight is not None and not self.training:
            if x.ndim == 3:
                return F.conv_transpose1d(x, self.fused_weight, self.conv.bias, stride=2, padding=1)
            return F.conv_transpose2d(x, self.fused_weight.unsqueeze(2), self.conv.bias, stride=(1, 2), padding=(0, 1))
        scale = 2.0 if x.ndim == 3 else (1.0, 2.0)  # along the length only
        return self.conv(F.interpolate(x, scale_factor=scale, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, channels: int, norm_num_groups: int):
        super().__init__()
        self.resnet1 = ResidualBlock(channels, channels, norm_num_groups)
        self.attention = SelfAttention(channels)
        self.resnet2 = ResidualBlock(channels, channels, norm_num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet2(self.attention(self.resnet1(x)))


class CodingBlock(nn.Module):
    """Residual blocks followed by an optional resampling layer (one encoder or decoder stage)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, norm_num_groups: int, resample: type | None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResidualBlock(in_channels if i == 0 else out_channels, out_channels, norm_num_groups) for i in range(num_layers)
        )
        self.resample = resample(out_channels) if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.resample(x) if self.resample is not None else x


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = Conv1d(config.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for i, out_channels in enumerate(channels):
            in_channels = channels[max(i - 1, 0)]
            is_last = i == len(channels) - 1
            self.down_blocks.append(
                CodingBlock(in_channels, out_channels, config.layers_per_block, config.norm_num_groups, None if is_last else Downsample)
            )
        self.mid_block = MidBlock(channels[-1], config.norm_num_groups)
        self.norm_out = GroupNorm(config.norm_num_groups, channels[-1])
        self.conv_out = Conv1d(channels[-1], 2 * config.latent_channels, 3, padding=1)
        self.quant_conv = Conv1d(2 * config.latent_channels, 2 * config.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, 12, L) -> (B, C0, L)
        for block in self.down_blocks:
            h = block(h)  # length halves in all but the last block
        h = self.mid_block(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self.quant_conv(h)  # (B, 2 * latent_channels, L / 8): mean and log-variance


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = tuple(reversed(config.block_out_channels))
        self.post_quant_conv = Conv1d(config.latent_channels, config.latent_channels, 1)
        self.conv_in = Conv1d(config.latent_channels, channels[0], 3, padding=1)
        self.mid_block = MidBlock(channels[0], config.norm_num_groups)
        self.up_blocks = nn.ModuleList()
        for i, out_channels in enumerate(channels):
            in_channels = channels[max(i - 1, 0)]
            is_last = i == len(channels) - 1
            self.up_blocks.append(
                CodingBlock(in_channels, out_channels, config.layers_per_block + 1, config.norm_num_groups, None if is_last else Upsample)
            )
        self.norm_out = GroupNorm(config.norm_num_groups, channels[-1])
        self.conv_out = Conv1d(channels[-1], config.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        one_row_image = z.device.type == "cpu"  # see Conv1d
        if one_row_image:
            z = z.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        h = self.conv_in(self.post_quant_conv(z))  # (B, 4, L / 8) -> (B, C_last, L / 8)
        h = self.mid_block(h)
        for block in self.up_blocks:
            h = block(h)  # length doubles in all but the last block
        ecgs = self.conv_out(F.silu(self.norm_out(h)))  # (B, 12, L)
        return ecgs.squeeze(2).contiguous() if one_row_image else ecgs


@dataclass
class LatentDistribution:
    """Diagonal Gaussian over unscaled latents; ``sample`` and ``mode`` return normalised latents."""

    mean: torch.Tensor  # (B, latent_channels, latent_length)
    logvar: torch.Tensor
    scaling_factor: float
    shift: torch.Tensor | None = None  # (latent_channels, 1) or None

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift if self.shift is not None else z) * self.scaling_factor

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.normalise(self.mean + torch.exp(0.5 * self.logvar) * noise)

    def mode(self) -> torch.Tensor:
        return self.normalise(self.mean)

    def kl(self) -> torch.Tensor:
        """KL divergence to N(0, I), summed over latent dimensions: shape (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class ECGVAE(PretrainedModelMixin, FusionMixin):
    """Encode 12-lead ECGs ``(B, 12, L)`` in mV to latents ``(B, latent_channels, L / 8)`` and back."""

    config_class = VAEConfig
    _FUSABLE = (Upsample,)

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config or VAEConfig()
        _check_config(self.config)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.register_buffer("_independent", torch.tensor([MODEL_LEADS.index(lead) for lead in INDEPENDENT_LEADS]), persistent=False)

    def fuse_upsampling(self) -> "ECGVAE":
        """Run each decoder upsampling and its convolution as one transposed convolution, for decoding.

        The same function up to float rounding; about 4 % faster decoding of the published-size model on a
        CPU (README, Benchmarks). The fused weights stay out of the state dict, are used in eval mode, follow
        loaded weights and are dropped by ``train()`` (:class:`~ecgaug.models.modeling_utils.FusionMixin`).
        """
        return self._set_fused(True)

    def unfuse_upsampling(self) -> "ECGVAE":
        """Drop the fused weights (upsampling and convolution run one after the other again)."""
        return self._set_fused(False)

    @property
    def num_leads(self) -> int:
        """Leads of the ECGs ``encode`` takes and ``decode`` returns (12 when limb leads are derived)."""
        return 12 if self.config.derive_limb_leads else self.config.in_channels

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        self._check_length(x)
        if self.config.derive_limb_leads:
            x = x.index_select(1, self._independent)
        moments = self.encoder(x)
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(self.config.logvar_min, self.config.logvar_max)
        return LatentDistribution(mean, logvar, self.config.scaling_factor, self._shift(mean))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, latent_channels, L / 8)`` → ECG ``(B, 12, L)``."""
        z = latents / self.config.scaling_factor
        shift = self._shift(z)
        ecgs = self.decoder(z + shift if shift is not None else z)
        if not self.config.derive_limb_leads:
            return ecgs
        # in float32 even when decoding ran in bfloat16, so that the derived leads stay exact in the output
        return derive_limb_leads(ecgs.float(), source_leads=INDEPENDENT_LEADS, target_leads=MODEL_LEADS)

    def _shift(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.config.shift_factor is None:
            return None
        return torch.tensor(self.config.shift_factor, dtype=like.dtype, device=like.device)[:, None]

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, LatentDistribution]:
        """Reconstruct ``x`` through a sampled latent; returns the reconstruction and the posterior."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator, noise)), posterior

    def _check_length(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.num_leads:
            raise ValueError(f"ECGVAE expects ECGs of shape (batch, {self.num_leads}, length), but got {tuple(x.shape)}.")
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if x.shape[-1] % factor:
            raise ValueError(f"ECG length should be a multiple of {factor}, but got {x.shape[-1]}; resample to {self.config.num_samples}.")


def _check_config(config: VAEConfig) -> None:
    bad = [c for c in config.block_out_channels if c % config.norm_num_groups]
    if bad:
        raise ValueError(f"block_out_channels {bad} are not divisible by norm_num_groups={config.norm_num_groups}.")
    if config.derive_limb_leads and config.in_channels != len(INDEPENDENT_LEADS):
        raise ValueError(f"derive_limb_leads=True needs in_channels={len(INDEPENDENT_LEADS)} ({', '.join(INDEPENDENT_LEADS)}), but got {config.in_channels}.")


