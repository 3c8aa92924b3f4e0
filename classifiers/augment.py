"""Classic (non-generative) ECG augmentations as torch transforms, the baseline for synthetic augmentation.

Built on ``ecg-augmentations`` (PyPI, MIT, torch >= 2.0 and numpy only; :mod:`ecg_augmentations`).
From it we take:

* :class:`ecg_augmentations.Transform`, the base of each transform below: per-record application
  probability ``p``, ``(T,)`` / ``(leads, T)`` / ``(batch, leads, T)`` inputs, randomness from a
  ``torch.Generator`` (on any device) or torch's global RNG, and the library's sampling helpers;
* :class:`ecg_augmentations.TimeShift`, behind our :class:`TimeShift` (shift in samples).

We keep our own code where the library's transform is not the one the classic arm uses:

* :class:`GaussianNoise` and :class:`PowerlineNoise`: the library sets white and mains noise by an SNR in
  dB relative to each lead's own power, with no absolute mode. Ours are in mV: electrode and mains noise
  do not scale with the lead's amplitude (a flat lead would get no noise at all from the library).
* :class:`BaselineWander`: the library has a mV mode (``relative=False``) but draws an independent phase
  per lead. Ours models each component as one physical source (respiration, movement): a phase shared by
  all leads and a signed amplitude per lead.
* :class:`AmplitudeScale`: the library draws the gain log-uniformly; ours is uniform on ``scale_range``
  (mean 1.0 for (0.8, 1.2), as the classic arm has always used; log-uniform would give 0.987).

One difference comes with the library's time shift: it draws a continuous shift and rounds it, so the two
extreme shifts ``±max_shift`` are half as likely as the others (a uniform draw over the integers before).

Every transform is an ``nn.Module`` whose ``forward(x, generator=None)`` takes one record
``(leads, num_samples)`` (use it as a Dataset ``transform``) or a batch ``(..., leads, num_samples)``,
a float torch tensor in mV, and draws independent random parameters per record. Randomness comes from
``generator`` when given; otherwise from torch's global RNG, which DataLoader seeds differently in each
worker (a generator stored in the transform would be copied into every worker and repeat the same
augmentations there). A seed reproduces results for one ``ecg-augmentations`` release series (setup.cfg
pins ``~=1.0.1``), since the library's draw order decides the random streams.

Default magnitudes of :class:`ClassicECGAugment` stay within what real recordings show: white noise
0.02 mV (PTB-XL's own noise floor is roughly 0.01-0.05 mV), baseline wander from respiration and
movement at 0.05-0.5 Hz up to about 0.2 mV, gain changes of ±20 % (electrode contact, body habitus),
and time shifts up to 0.5 s (the recording window starts at an arbitrary point of the cardiac cycle).
Powerline interference is off by default: 100 Hz records cannot represent 50/60 Hz.

The library's other transforms (crops, time and lead masks, filters, muscle noise, VCG rotation, ...)
can be used directly from :mod:`ecg_augmentations`; the classic arm does not use them.
"""
from __future__ import annotations

import math
from typing import Literal

import ecg_augmentations as ea
import torch
from ecg_augmentations.base import randn, uniform
from torch import nn

__all__ = ["GaussianNoise", "BaselineWander", "AmplitudeScale", "TimeShift", "PowerlineNoise", "ClassicECGAugment"]


def _check_signal(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ECG augmentations expect a torch.Tensor (..., leads, num_samples), but got {type(x).__name__}; convert with torch.as_tensor first.")
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x should be a floating-point tensor (..., leads, num_samples), but got dtype {x.dtype} and shape {tuple(x.shape)}.")


def _check_below_nyquist(frequency: float, sampling_rate: float, name: str) -> None:
    if frequency >= sampling_rate / 2:
        raise ValueError(
            f"{name}={frequency} Hz should be below the Nyquist frequency sampling_rate / 2 = {sampling_rate / 2} Hz."
        )


class _ECGInput:
    """Mixin before an :class:`ecg_augmentations.Transform`: checks the input is a float torch tensor
    ``(..., leads, num_samples)`` and flattens any batch dimensions into the library's one."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_signal(x)
        out = super().forward(x.reshape(math.prod(x.shape[:-2]), *x.shape[-2:]), generator=generator)
        return out.reshape(x.shape)


class GaussianNoise(_ECGInput, ea.Transform):
    """Add white Gaussian noise with standard deviation ``std`` mV, independent per lead."""

    def __init__(self, std: float = 0.02, p: float = 1.0):
        super().__init__(p)
        if std < 0:
            raise ValueError(f"std should be non-negative (mV), but got {std}.")
        self.std = std

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + self.std * randn(x.shape, x, generator)

    def extra_repr(self) -> str:
        return f"std={self.std}, p={self.p}"


class BaselineWander(_ECGInput, ea.Transform):
    """Add low-frequency sinusoids, the respiration and movement drift of the baseline.

    Each record gets ``num_components`` sinusoids with frequencies drawn from ``frequency_range`` and
    random phases, shared by all leads (one physical source), and an amplitude per lead and component
    drawn from ``[-max_amplitude, max_amplitude]`` mV (different projection onto each lead).

    Args:
        sampling_rate: of the signals, in Hz.
        max_amplitude: peak amplitude of each component, in mV.
        frequency_range: ``(low, high)`` in Hz.
        num_components: number of sinusoids summed.
        p: probability of applying it to a record.
    """

    def __init__(self, sampling_rate: float, max_amplitude: float = 0.1, frequency_range: tuple[float, float] = (0.05, 0.5),
                 num_components: int = 2, p: float = 1.0):
        super().__init__(p)
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

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, num_leads, num_samples = x.shape
        k = self.num_components
        frequency = uniform(self.frequency_range, (batch, 1, k, 1), x, generator)
        phase = uniform((0.0, 2 * math.pi), (batch, 1, k, 1), x, generator)
        amplitude = uniform((-self.max_amplitude, self.max_amplitude), (batch, num_leads, k, 1), x, generator)
        time = torch.arange(num_samples, device=x.device, dtype=x.dtype) / self.sampling_rate
        return x + (amplitude * torch.sin(2 * math.pi * frequency * time + phase)).sum(dim=-2)

    def extra_repr(self) -> str:
        return (f"sampling_rate={self.sampling_rate}, max_amplitude={self.max_amplitude}, "
                f"frequency_range={self.frequency_range}, num_components={self.num_components}, p={self.p}")


class AmplitudeScale(_ECGInput, ea.Transform):
    """Multiply by a factor drawn uniformly from ``scale_range``, one per record (``per_lead=False``) or per lead."""

    def __init__(self, scale_range: tuple[float, float] = (0.8, 1.2), per_lead: bool = False, p: float = 1.0):
        super().__init__(p)
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range should satisfy 0 < low <= high, but got {scale_range}.")
        self.scale_range = (float(low), float(high))
        self.per_lead = per_lead

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, num_leads, _ = x.shape
        return x * uniform(self.scale_range, (batch, num_leads if self.per_lead else 1, 1), x, generator)

    def extra_repr(self) -> str:
        return f"scale_range={self.scale_range}, per_lead={self.per_lead}, p={self.p}"


class TimeShift(_ECGInput, ea.TimeShift):
    """Shift each record in time by a whole number of samples in ``[-max_shift, max_shift]``
    (:class:`ecg_augmentations.TimeShift` with the shift in samples; the extremes are half as likely).

    A positive shift delays the signal. ``mode="roll"`` wraps the samples that leave the window around to
    the other end; ``mode="zero"`` fills the vacated samples with 0 mV.
    """

    def __init__(self, max_shift: int, mode: Literal["roll", "zero"] = "roll", p: float = 1.0):
        if not (isinstance(max_shift, int) and max_shift >= 0):
            raise ValueError(f"max_shift should be a non-negative integer number of samples, but got {max_shift!r}.")
        if mode not in ("roll", "zero"):
            raise ValueError(f"mode should be 'roll' or 'zero', but got {mode!r}.")
        super().__init__(fs=1.0, shift=(-max_shift, max_shift), circular=mode == "roll", p=p)
        self.max_shift = max_shift
        self.mode = mode

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, mode={self.mode!r}, p={self.p}"


class PowerlineNoise(_ECGInput, ea.Transform):
    """Add mains interference: a sinusoid at ``frequency`` Hz with a random phase per record and an
    amplitude per lead drawn from ``[0, max_amplitude]`` mV. ``frequency`` must be below the Nyquist
    frequency, so this needs signals sampled above 100 Hz (120 Hz for 60 Hz mains)."""

    def __init__(self, sampling_rate: float, max_amplitude: float = 0.05, frequency: float = 50.0, p: float = 1.0):
        super().__init__(p)
        _check_below_nyquist(frequency, sampling_rate, "frequency")
        if max_amplitude < 0:
            raise ValueError(f"max_amplitude should be non-negative (mV), but got {max_amplitude}.")
        self.sampling_rate = sampling_rate
        self.max_amplitude = max_amplitude
        self.frequency = frequency

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, num_leads, num_samples = x.shape
        phase = uniform((0.0, 2 * math.pi), (batch, 1, 1), x, generator)
        amplitude = uniform((0.0, self.max_amplitude), (batch, num_leads, 1), x, generator)
        time = torch.arange(num_samples, device=x.device, dtype=x.dtype) / self.sampling_rate
        return x + amplitude * torch.sin(2 * math.pi * self.frequency * time + phase)

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, max_amplitude={self.max_amplitude}, frequency={self.frequency}, p={self.p}"


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
            transforms["time_shift"] = TimeShift(max_shift, mode=shift_mode, p=p)
        if scale_range is not None:
            transforms["amplitude_scale"] = AmplitudeScale(scale_range, per_lead=per_lead_scale, p=p)
        if wander_amplitude > 0:
            transforms["baseline_wander"] = BaselineWander(sampling_rate, wander_amplitude, wander_frequency_range, p=p)
        if powerline_amplitude > 0:
            transforms["powerline_noise"] = PowerlineNoise(sampling_rate, powerline_amplitude, powerline_frequency, p=p)
        if noise_std > 0:
            transforms["gaussian_noise"] = GaussianNoise(noise_std, p=p)
        self.transforms = nn.ModuleDict(transforms)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(..., leads, num_samples)`` → augmented tensor of the same shape and dtype."""
        _check_signal(x)
        for transform in self.transforms.values():
            x = transform(x, generator=generator)
        return x

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, p={self.p}"
