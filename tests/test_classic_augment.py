from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from classifiers.augment import (
    AmplitudeScale,
    BaselineWander,
    ClassicECGAugment,
    GaussianNoise,
    PowerlineNoise,
    TimeShift,
)

FS = 100
LENGTH = 1000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ecg_like(batch_shape=(), seed=0) -> torch.Tensor:
    """A smooth test signal with distinct leads: sinusoids at 1-3 Hz plus a lead offset."""
    time = torch.arange(LENGTH) / FS
    leads = torch.arange(12)[:, None]
    x = torch.sin(2 * np.pi * (1 + leads / 6) * time) + 0.1 * leads
    noise = 0.01 * torch.randn(*batch_shape, 12, LENGTH, generator=_gen(seed))
    return (x + noise).float()


TRANSFORMS = {
    "noise": GaussianNoise(0.05),
    "wander": BaselineWander(FS),
    "scale": AmplitudeScale(per_lead=True),
    "shift_roll": TimeShift(50, mode="roll"),
    "shift_zero": TimeShift(50, mode="zero"),
    "powerline": PowerlineNoise(500),
    "classic": ClassicECGAugment(FS, p=1.0),
}


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("batch_shape", [(), (4,)])
def test_shape_dtype_and_reproducibility(name, batch_shape):
    transform = TRANSFORMS[name]
    x = _ecg_like(batch_shape)
    out = transform(x, generator=_gen(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(transform(x, generator=_gen(0)), out, rtol=0, atol=0)
    assert not torch.equal(transform(x, generator=_gen(1)), out)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_records_in_a_batch_get_independent_draws(name):
    x = _ecg_like().expand(8, 12, LENGTH).contiguous()
    out = TRANSFORMS[name](x, generator=_gen(0))
    assert not all(torch.equal(out[0], out[i]) for i in range(1, 8))


def test_uses_global_rng_without_generator():
    torch.manual_seed(3)
    first = TRANSFORMS["classic"](_ecg_like())
    torch.manual_seed(3)
    torch.testing.assert_close(TRANSFORMS["classic"](_ecg_like()), first, rtol=0, atol=0)


def test_gaussian_noise_std():
    x = torch.zeros(16, 12, LENGTH)
    noise = GaussianNoise(std=0.05)(x, generator=_gen(0))
    assert noise.std().item() == pytest.approx(0.05, rel=0.02)
    assert noise.mean().abs().item() < 0.002


def test_baseline_wander_is_low_frequency_and_bounded():
    wander = BaselineWander(FS, max_amplitude=0.1, frequency_range=(0.05, 0.5), num_components=2)
    added = wander(torch.zeros(16, 12, LENGTH), generator=_gen(0))
    assert added.abs().max().item() <= 0.2 + 1e-6
    assert added.abs().max().item() > 0.05
    power = torch.fft.rfft(added.double(), dim=-1).abs().square()
    frequencies = torch.fft.rfftfreq(LENGTH, d=1 / FS)
    assert power[..., frequencies < 1.0].sum() / power.sum() > 0.98


def test_baseline_wander_rejects_frequency_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        BaselineWander(sampling_rate=0.5)


def test_amplitude_scale_range_and_global_factor():
    x = _ecg_like((32,))
    out = AmplitudeScale((0.8, 1.2), per_lead=False)(x, generator=_gen(0))
    ratio = out / x
    assert ((ratio > 0.8 - 1e-5) & (ratio < 1.2 + 1e-5)).all()
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))  # one factor per record
    per_lead = AmplitudeScale((0.8, 1.2), per_lead=True)(x, generator=_gen(0)) / x
    assert not torch.allclose(per_lead[:, 0, 0], per_lead[:, 1, 0])


@pytest.mark.parametrize("mode", ["roll", "zero"])
def test_time_shift_moves_whole_record(mode):
    x = _ecg_like((6,))
    out = TimeShift(30, mode=mode)(x, generator=_gen(0))
    shifts = []
    for record_in, record_out in zip(x, out):
        for shift in range(-30, 31):
            expected = torch.roll(record_in, shift, dims=-1)
            if mode == "zero":
                if shift > 0:
                    expected[:, :shift] = 0
                elif shift < 0:
                    expected[:, shift:] = 0
            if torch.equal(expected, record_out):
                shifts.append(shift)
                break
        else:
            pytest.fail("a record is not a shifted copy of its input")
    assert len(set(shifts)) > 1


def test_powerline_noise_frequency_and_nyquist_check():
    added = PowerlineNoise(500, max_amplitude=0.05, frequency=50.0)(torch.zeros(2, 12, 5000), generator=_gen(0))
    spectrum = torch.fft.rfft(added.double(), dim=-1).abs().sum(dim=(0, 1))
    assert torch.fft.rfftfreq(5000, d=1 / 500)[spectrum.argmax()].item() == pytest.approx(50.0)
    with pytest.raises(ValueError, match="Nyquist"):
        PowerlineNoise(100, frequency=50.0)


def test_classic_augment_probability_and_components():
    x = _ecg_like((4,))
    torch.testing.assert_close(ClassicECGAugment(FS, p=0.0)(x, generator=_gen(0)), x, rtol=0, atol=0)
    augment = ClassicECGAugment(FS, noise_std=0, wander_amplitude=0, scale_range=None, max_shift_seconds=0)
    assert len(augment.transforms) == 0
    assert list(ClassicECGAugment(FS).transforms) == ["time_shift", "amplitude_scale", "baseline_wander", "gaussian_noise"]
    # With p = 0.5 some records of a large batch stay untouched by noise-only augmentation, others change.
    noise_only = ClassicECGAugment(FS, p=0.5, wander_amplitude=0, scale_range=None, max_shift_seconds=0)
    changed = (noise_only(_ecg_like((64,)), generator=_gen(0)) != _ecg_like((64,))).flatten(1).any(dim=1)
    assert 10 < changed.sum().item() < 54


def test_rejects_numpy_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        GaussianNoise()(np.zeros((12, LENGTH), dtype=np.float32))


# ----- built on ecg-augmentations: its Transform base and TimeShift, our transforms in physical units -----


@pytest.mark.parametrize("sampling_rate", [100, 500])
def test_classic_augment_on_ptbxl_records(sampling_rate):
    """(12, L) float32 mV records at both PTB-XL rates, and (..., 12, L) batches of any depth."""
    x = torch.randn(12, 10 * sampling_rate, generator=_gen(5))
    augment = ClassicECGAugment(sampling_rate, p=1.0)
    out = augment(x, generator=_gen(0))
    assert out.shape == (12, 10 * sampling_rate) and out.dtype == torch.float32
    torch.testing.assert_close(augment(x, generator=_gen(0)), out, rtol=0, atol=0)
    assert augment.transforms["time_shift"].max_shift == sampling_rate // 2  # 0.5 s
    batch = x.expand(2, 3, 12, 10 * sampling_rate)
    assert augment(batch, generator=_gen(0)).shape == batch.shape
    assert augment(x.double(), generator=_gen(0)).dtype == torch.float64
    assert augment(torch.zeros(0, 12, 10 * sampling_rate)).shape == (0, 12, 10 * sampling_rate)


def test_rejects_single_lead_vector_and_integer_input():
    with pytest.raises(ValueError, match="leads, num_samples"):
        GaussianNoise()(torch.zeros(LENGTH))
    with pytest.raises(ValueError, match="floating-point"):
        ClassicECGAugment(FS)(torch.zeros(12, LENGTH, dtype=torch.int64))


@pytest.mark.parametrize("transform", [GaussianNoise(0.05), BaselineWander(FS, 0.1), PowerlineNoise(500, 0.05)], ids=repr)
def test_additive_noise_is_in_mv_not_relative_to_the_signal(transform):
    """Unlike ecg-augmentations' SNR-based noise, ours adds the same mV whatever the lead's amplitude."""
    x = _ecg_like((4,))
    added_small = transform(x, generator=_gen(0)) - x
    added_large = transform(10 * x, generator=_gen(0)) - 10 * x
    torch.testing.assert_close(added_large, added_small, rtol=0, atol=1e-5)
    assert added_small.abs().max() > 0.01  # a flat lead gets noise too
    assert (transform(torch.zeros(12, LENGTH), generator=_gen(0)) != 0).all(dim=-1).all()


def test_baseline_wander_amplitude_in_mv_and_one_source_per_component():
    added = BaselineWander(FS, max_amplitude=0.3, num_components=1)(torch.zeros(256, 12, LENGTH), generator=_gen(0))
    peak = added.abs().amax(dim=-1)  # per record and lead, 10 s covers at least half a period at >= 0.05 Hz
    assert peak.max().item() <= 0.3 + 1e-6
    assert peak.max().item() > 0.29
    assert peak.mean().item() == pytest.approx(0.15, abs=0.03)  # |amplitude| uniform in [0, 0.3] mV
    # One phase for all leads: every lead is a multiple of the same sinusoid, so each record has rank 1.
    singular = torch.linalg.svdvals(added.double())
    assert (singular[:, 1] < 1e-5 * singular[:, 0]).all()


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_powerline_frequency_and_amplitude_in_mv(mains):
    added = PowerlineNoise(500, max_amplitude=0.05, frequency=mains)(torch.zeros(64, 12, 5000), generator=_gen(0))
    spectrum = torch.fft.rfft(added.double(), dim=-1).abs()
    frequencies = torch.fft.rfftfreq(5000, d=1 / 500)
    assert (frequencies[spectrum.argmax(dim=-1)] == mains).all()
    peak = added.abs().amax(dim=-1)
    assert peak.max().item() <= 0.05 + 1e-6
    assert peak.mean().item() == pytest.approx(0.025, abs=0.003)  # amplitude uniform in [0, 0.05] mV


def test_amplitude_scale_is_uniform_not_log_uniform():
    """The classic arm's gain keeps its uniform law (mean 1.0 on (0.8, 1.2); the library's log-uniform gives 0.987)."""
    gain = AmplitudeScale((0.8, 1.2))(torch.ones(20000, 1, 1), generator=_gen(0)).flatten()
    assert gain.mean().item() == pytest.approx(1.0, abs=0.003)
    assert gain.std().item() == pytest.approx(0.4 / math.sqrt(12), rel=0.03)


def test_time_shift_range_in_samples_and_seconds():
    ramp = torch.arange(500.0).expand(4000, 1, 500)
    shift = (TimeShift(20)(ramp, generator=_gen(0))[..., 100] - 100).long().flatten()
    assert shift.min().item() == -20 and shift.max().item() == 20
    assert len(shift.unique()) == 41
    # ClassicECGAugment converts seconds to samples at its sampling rate: 0.5 s = 250 samples at 500 Hz.
    augment = ClassicECGAugment(500, p=1.0, noise_std=0, wander_amplitude=0, scale_range=None, max_shift_seconds=0.1)
    shifted = augment(torch.arange(5000.0).expand(2000, 1, 5000), generator=_gen(0))[..., 1000] - 1000
    assert shifted.abs().max().item() == 50


def test_probability_gates_each_record_of_single_transforms():
    x = torch.zeros(400, 12, 100)
    changed = (GaussianNoise(0.1, p=0.3)(x, generator=_gen(0)) != 0).flatten(1).any(dim=1)
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.07)
    assert not (GaussianNoise(0.1, p=0.0)(x, generator=_gen(0)) != 0).any()
