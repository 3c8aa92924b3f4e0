"""Classic (non-generative) ECG augmentations as torch transforms, the baseline for synthetic augmentation.

Why own code: no light, maintained torch library covers this for ECGs. torch_ecg has such transforms
but is a large dependency for five one-line operations; audiomentations works on numpy mono audio.
Each transform here is a few lines of tensor arithmetic.

Every transform is an ``nn.Module`` whose ``forward(x, generator=None)`` takes one record
``(leads, num_samples)`` (use it as a Dataset ``transform``) or a batch ``(..., leads, num_samples)``,
in mV, and draws independent random parameters per record. Randomness comes from ``generator`` (a
``torch.Generator`` on the device of ``x``) when given; otherwise from torch's global RNG, which
DataLoader seeds differently in each worker (a generator stored in the transform would be copied into
every worker and repeat the same augmentations there).

Default magnitudes of :class:`ClassicECGAugment` stay within what real recordings show: white noise
0.02 mV (PTB-XL's own noise floor is roughly 0.01-0.05 mV), baseline wander from respiration and
movement at 0.05-0.5 Hz up to about 0.2 mV, gain changes of ±20 % (electrode contact, body habitus),
and time shifts up to 0.5 s (the recording window starts at an arbitrary point of the cardiac cycle).
Powerline interference is off by default: 100 Hz records cannot represent 50/60 Hz.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["GaussianNoise", "BaselineWander", "AmplitudeScale", "TimeShift", "PowerlineNoise", "ClassicECGAugment"]


def _check_signal(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ECG augmentations expect a torch.Tensor (..., leads, num_samples), but got {type(x).__name__}; convert with torch.as_tensor first.")
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x should be a floating-point tensor (..., leads, num_samples), but got dtype {x.dtype} and shape {tuple(x.shape)}.")


def _uniform(shape, low: float, high: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform samples in ``[low, high)`` with the dtype and device of ``like``."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _check_below_nyquist(frequency: float, sampling_rate: float, name: str) -> None:
    if frequency >= sampling_rate / 2:
        raise ValueError(
            f"{name}={frequency} Hz should be below the Nyquist frequency sampling_rate / 2 = {sampling_rate / 2} Hz."
        )


class GaussianNoise(nn.Module):
    """Add white Gaussian noise with standard deviation ``std`` mV."""

    def __init__(self, std: float = 0.02):
        super().__init__()
        if std < 0:
            raise ValueError(f"std should be non-negative (mV), but got {std}.")
        self.std = std

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        return x + self.std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class BaselineWander(nn.Module):
    """Add low-frequency sinusoids, the respiration and movement drift of the baseline.

    Each record gets ``num_components`` sinusoids with frequencies drawn from ``frequency_range`` and
    random phases, shared by all leads (one physical source), and an amplitude per lead and component
    drawn from ``[-max_amplitude, max_amplitude]`` mV (different projection onto each lead).

    Args:
        sampling_rate: of the signals, in Hz.
        max_amplitude: peak amplitude of each component, in mV.
        frequency_range: ``(low, high)`` in Hz.
        num_components: number of sinusoids summed.
    """

    def __init__(self, sampling_rate: float, max_amplitude: float = 0.1, frequency_range: tuple[float, float] = (0.05, 0.5), num_components: int = 2):
        super().__init__()
        low, high = frequency_range
        if not 0 < low <= high:
            raise ValueError(f"frequency_range should satisfy 0 < low <= high, but got {frequency_range}.")
        _check_below_nyquist(high, sampling_rate, "frequency_range[1]")
        if max_amplitude < 0 or num_components < 1:
            raise ValueError(f"max_amplitude should be >= 0 and num_components >= 1, but got {max_amplitude} and {num_components}.")
        self.sampling_rate = sampling_rate
        self.max_amplitude = max_amplitude
        self.frequency_range = (float(low), float(high))
        self.num_components = num_components

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        *batch_shape, num_leads, num_samples = x.shape
        k = self.num_components
        frequency = _uniform((*batch_shape, 1, k, 1), *self.frequency_range, x, generator)
        phase = _uniform((*batch_shape, 1, k, 1), 0.0, 2 * math.pi, x, generator)
        amplitude = _uniform((*batch_shape, num_leads, k, 1), -self.max_amplitude, self.max_amplitude, x, generator)
        time = torch.arange(num_samples, device=x.device, dtype=x.dtype) / self.sampling_rate
        wander = (amplitude * torch.sin(2 * math.pi * frequency * time + phase)).sum(dim=-2)
        return x + wander

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, max_amplitude={self.max_amplitude}, frequency_range={self.frequency_range}, num_components={self.num_components}"


class AmplitudeScale(nn.Module):
    """Multiply by a factor drawn from ``scale_range``, one per record (``per_lead=False``) or per lead."""

    def __init__(self, scale_range: tuple[float, float] = (0.8, 1.2), per_lead: bool = False):
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range should satisfy 0 < low <= high, but got {scale_range}.")
        self.scale_range = (float(low), float(high))
        self.per_lead = per_lead

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        *batch_shape, num_leads, _ = x.shape
        scale = _uniform((*batch_shape, num_leads if self.per_lead else 1, 1), *self.scale_range, x, generator)
        return x * scale

    def extra_repr(self) -> str:
        return f"scale_range={self.scale_range}, per_lead={self.per_lead}"


class TimeShift(nn.Module):
    """Shift each record in time by a whole number of samples drawn from ``[-max_shift, max_shift]``.

    A positive shift delays the signal. ``mode="roll"`` wraps the samples that leave the window around to
    the other end; ``mode="zero"`` fills the vacated samples with 0 mV.
    """

    def __init__(self, max_shift: int, mode: Literal["roll", "zero"] = "roll"):
        super().__init__()
        if not (isinstance(max_shift, int) and max_shift >= 0):
            raise ValueError(f"max_shift should be a non-negative integer number of samples, but got {max_shift!r}.")
        if mode not in ("roll", "zero"):
            raise ValueError(f"mode should be 'roll' or 'zero', but got {mode!r}.")
        self.max_shift = max_shift
        self.mode = mode

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        *batch_shape, _, num_samples = x.shape
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (*batch_shape, 1, 1), generator=generator, device=x.device)
        source = torch.arange(num_samples, device=x.device) - shift  # output sample t reads input sample t - shift
        if self.mode == "roll":
            return x.gather(-1, (source % num_samples).expand(x.shape))
        inside = (source >= 0) & (source < num_samples)
        shifted = x.gather(-1, source.clamp(0, num_samples - 1).expand(x.shape))
        return shifted * inside

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, mode={self.mode!r}"


class PowerlineNoise(nn.Module):
    """Add mains interference: a sinusoid at ``frequency`` Hz with a random phase per record and an
    amplitude per lead drawn from ``[0, max_amplitude]`` mV. ``frequency`` must be below the Nyquist
    frequency, so this needs signals sampled above 100 Hz (120 Hz for 60 Hz mains)."""

    def __init__(self, sampling_rate: float, max_amplitude: float = 0.05, frequency: float = 50.0):
        super().__init__()
        _check_below_nyquist(frequency, sampling_rate, "frequency")
        if max_amplitude < 0:
            raise ValueError(f"max_amplitude should be non-negative (mV), but got {max_amplitude}.")
        self.sampling_rate = sampling_rate
        self.max_amplitude = max_amplitude
        self.frequency = frequency

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        *batch_shape, num_leads, num_samples = x.shape
        phase = _uniform((*batch_shape, 1, 1), 0.0, 2 * math.pi, x, generator)
        amplitude = _uniform((*batch_shape, num_leads, 1), 0.0, self.max_amplitude, x, generator)
        time = torch.arange(num_samples, device=x.device, dtype=x.dtype) / self.sampling_rate
        return x + amplitude * torch.sin(2 * math.pi * self.frequency * time + phase)

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, max_amplitude={self.max_amplitude}, frequency={self.frequency}"


class ClassicECGAugment(nn.Module):
    """Random time shift, amplitude scaling, baseline wander, powerline noise and white noise, in that order.

    Each enabled transform is applied to each record independently with probability ``p``. Disable a
    transform by setting its magnitude to 0 (``noise_std``, ``wander_amplitude``, ``max_shift_seconds``,
    ``powerline_amplitude``) or ``scale_range=None``.

    Args:
        sampling_rate: of the signals, in Hz (100 or 500 for PTB-XL).
        p: probability of applying each transform to a record.
        noise_std: white noise standard deviation, mV.
        wander_amplitude: peak amplitude of each of two baseline-wander sinusoids, mV.
        wander_frequency_range: baseline-wander frequencies, Hz.
        scale_range: range of the gain factor; ``None`` disables scaling.
        per_lead_scale: draw one gain per lead instead of one per record.
        max_shift_seconds: largest time shift, seconds (rounded to samples).
        shift_mode: ``"roll"`` or ``"zero"``, see :class:`TimeShift`.
        powerline_amplitude: largest mains amplitude, mV; 0 (default) disables it.
        powerline_frequency: mains frequency, Hz (50 or 60).

    Example:
        >>> augment = ClassicECGAugment(sampling_rate=100)
        >>> x = torch.zeros(12, 1000)
        >>> augment(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([12, 1000])
    """

    def __init__(
        self,
        sampling_rate: float,
        p: float = 0.5,
        noise_std: float = 0.02,
        wander_amplitude: float = 0.1,
        wander_frequency_range: tuple[float, float] = (0.05, 0.5),
        scale_range: tuple[float, float] | None = (0.8, 1.2),
        per_lead_scale: bool = False,
        max_shift_seconds: float = 0.5,
        shift_mode: Literal["roll", "zero"] = "roll",
        powerline_amplitude: float = 0.0,
        powerline_frequency: float = 50.0,
    ):
        super().__init__()
        if sampling_rate <= 0:
            raise ValueError(f"sampling_rate should be positive (Hz), but got {sampling_rate}.")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p should be a probability in [0, 1], but got {p}.")
        self.sampling_rate = sampling_rate
        self.p = p
        transforms: dict[str, nn.Module] = {}
        max_shift = round(max_shift_seconds * sampling_rate)
        if max_shift > 0:
            transforms["time_shift"] = TimeShift(max_shift, mode=shift_mode)
        if scale_range is not None:
            transforms["amplitude_scale"] = AmplitudeScale(scale_range, per_lead=per_lead_scale)
        if wander_amplitude > 0:
            transforms["baseline_wander"] = BaselineWander(sampling_rate, wander_amplitude, wander_frequency_range)
        if powerline_amplitude > 0:
            transforms["powerline_noise"] = PowerlineNoise(sampling_rate, powerline_amplitude, powerline_frequency)
        if noise_std > 0:
            transforms["gaussian_noise"] = GaussianNoise(noise_std)
        self.transforms = nn.ModuleDict(transforms)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(..., leads, num_samples)`` → augmented tensor of the same shape and dtype."""
        _check_signal(x)
        batch_shape = x.shape[:-2]
        for transform in self.transforms.values():
            apply = torch.rand(batch_shape, generator=generator, device=x.device) < self.p
            x = torch.where(apply[..., None, None], transform(x, generator=generator), x)
        return x

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, p={self.p}"
