import math

import numpy as np
import pytest
import wfdb

from ecgaug.data.heart_rate import (
    detect_beats,
    heart_rates,
    measure_heart_rate,
    measure_heart_rates,
    rates_from_beats,
    rr_cv,
    rr_cv_from_beats,
)
from ptbxl_fixture import PROFILES, load_fixture_truth, make_ptbxl

SECONDS = 10


def beat_train(beat_times, fs=100, num_leads=12, seed=0):
    """ECG-like ``(num_leads, SECONDS * fs)`` mV: Q-R-S and T waves at ``beat_times`` (s), wander, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(SECONDS * fs) / fs
    beats = np.asarray(beat_times)[:, None]

    def waves(offset, width, amplitude):
        return amplitude * np.exp(-0.5 * ((t - beats - offset) / width) ** 2).sum(axis=0)

    qrs = waves(-0.02, 0.008, -0.15) + waves(0.0, 0.012, 1.0) + waves(0.025, 0.01, -0.3)
    t_wave = waves(0.28, 0.045, 0.3)
    gains = rng.uniform(0.3, 1.5, num_leads) * rng.choice([-1, 1], num_leads)
    wander = 0.1 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi, (num_leads, 1)))
    return (gains[:, None] * (qrs + t_wave) + wander + rng.normal(0, 0.02, (num_leads, len(t)))).astype(np.float32)


def regular(rate_bpm, start=0.4):
    return np.arange(start, SECONDS, 60.0 / rate_bpm)


def irregular(seed, mean_rr=0.8):
    rr = np.random.default_rng(seed).uniform(0.5 * mean_rr, 1.5 * mean_rr, 40)
    times = 0.4 + np.concatenate([[0.0], np.cumsum(rr)])
    return times[times < SECONDS]


@pytest.mark.parametrize("fs", [100, 500])
@pytest.mark.parametrize("rate", [40.0, 60.0, 75.0, 110.0, 137.0, 160.0])
def test_regular_rates_are_measured_between_samples(rate, fs):
    signals = np.stack([beat_train(regular(rate), fs, seed=seed) for seed in range(3)])
    # at 100 Hz and 160 bpm one sample of RR is 4.3 bpm: whole-sample beats would miss by up to 2 bpm
    np.testing.assert_allclose(heart_rates(signals, fs), rate, atol=0.3)
    np.testing.assert_array_less(rr_cv(signals, fs), 0.01)


def test_beats_sit_on_the_qrs_complexes():
    times = regular(72.0)
    beats = detect_beats(beat_train(times)[None], 100)[0]
    true = times * 100
    # every reported beat is a true one; beats in the first 0.3 s and the last one are left out
    distance = np.abs(beats[:, None] - true[None, :]).min(axis=1)
    assert (distance <= 2).all(), (beats, true)
    assert len(beats) >= len(true) - 2


def test_irregular_rhythm_has_high_rr_cv_and_median_rate():
    times = [irregular(seed) for seed in range(4)]
    signals = np.stack([beat_train(t, seed=seed) for seed, t in enumerate(times)])
    cvs = rr_cv(signals, 100)
    assert (cvs > 0.15).all(), cvs
    true_rates = np.array([60.0 / np.median(np.diff(t)) for t in times])
    # a dropped edge beat moves the median RR of an irregular train a little
    np.testing.assert_allclose(heart_rates(signals, 100), true_rates, rtol=0.12)


def test_from_beats_match_the_signal_functions():
    signals = np.stack([beat_train(regular(65.0)), beat_train(irregular(1), seed=1)])
    beats = detect_beats(signals, 100)
    np.testing.assert_array_equal(rates_from_beats(beats, 100), heart_rates(signals, 100))
    np.testing.assert_array_equal(rr_cv_from_beats(beats, 100), rr_cv(signals, 100))


def test_batch_rows_are_independent():
    signals = np.stack([beat_train(regular(rate), seed=i) for i, rate in enumerate([50.0, 90.0, 140.0])])
    signals[1] *= 20.0  # a much larger ECG in the batch changes nothing for the others
    batch = detect_beats(signals, 100)
    for signal, beats in zip(signals, batch):
        np.testing.assert_array_equal(detect_beats(signal[None], 100)[0], beats)


def test_flat_nan_and_too_short_signals_are_nan():
    flat = np.zeros((2, 12, 1000), dtype=np.float32)
    flat[1] = np.nan
    assert [len(b) for b in detect_beats(flat, 100)] == [0, 0]
    assert np.isnan(heart_rates(flat, 100)).all() and np.isnan(rr_cv(flat, 100)).all()
    two_beats = beat_train([4.0, 5.0])[None]
    assert np.isnan(heart_rates(two_beats, 100)).all() and np.isnan(rr_cv(two_beats, 100)).all()


def test_noise_without_qrs_complexes_has_no_beats():
    noise = np.random.default_rng(0).normal(0, 0.2, (3, 12, 1000)).astype(np.float32)
    assert [len(b) for b in detect_beats(noise, 100)] == [0, 0, 0]
    assert np.isnan(heart_rates(noise, 100)).all()


def test_flat_and_loud_noisy_leads_do_not_hide_the_rhythm():
    signal = beat_train(regular(80.0))
    signal[:3] = 0.0  # leads off
    signal[3] = np.random.default_rng(0).normal(0, 5.0, signal.shape[1])  # 5 mV of noise
    assert abs(measure_heart_rate(signal, 100) - 80.0) < 2.0


def test_single_ecg_and_single_lead():
    signal = beat_train(regular(70.0))
    assert abs(measure_heart_rate(signal, 100) - 70.0) < 2.0
    assert abs(measure_heart_rate(signal[1], 100) - 70.0) < 2.0


def test_chunks_and_threads_give_the_same_rates():
    signals = np.stack([beat_train(regular(rate), seed=i) for i, rate in enumerate(np.linspace(45, 150, 7))])
    expected = heart_rates(signals, 100)
    np.testing.assert_array_equal(measure_heart_rates(signals, 100, chunk_size=2, progress=False), expected)
    np.testing.assert_array_equal(measure_heart_rates(signals, 100, chunk_size=3, num_workers=2, progress=False), expected)
    assert measure_heart_rates(signals[:0], 100, progress=False).shape == (0,)


def test_measure_heart_rates_progress_bar(capsys):
    signals = beat_train(regular(60.0))[None]
    measure_heart_rates(signals, 100, progress=False)
    assert "Heart rates" not in capsys.readouterr().err
    measure_heart_rates(signals, 100, progress=True)
    assert "Heart rates" in capsys.readouterr().err


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"signals should have shape \(num_ecgs, num_leads, num_samples\)"):
        detect_beats(np.zeros((12, 1000)), 100)
    with pytest.raises(ValueError, match="sampling_rate should be above 40 Hz"):
        heart_rates(np.zeros((1, 12, 1000)), 30)
    with pytest.raises(ValueError, match="signal should have shape"):
        measure_heart_rate(np.zeros((1, 12, 100)), 100)
    with pytest.raises(ValueError, match="num_workers should be a non-negative integer"):
        measure_heart_rates(np.zeros((1, 12, 1000)), 100, num_workers=-1)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl_hr"), num_records=len(PROFILES), sampling_rates=(100, 500))


def read(root, ecg_id, fs):
    folder, suffix = ("records100", "lr") if fs == 100 else ("records500", "hr")
    signal, _ = wfdb.rdsamp(str(root / folder / "00000" / f"{ecg_id:05d}_{suffix}"))
    return signal.T.astype(np.float32)  # (12, L)


@pytest.mark.parametrize("fs", [100, 500])
def test_rates_match_fixture_truth(fixture_root, fs):
    truth = load_fixture_truth(fixture_root)
    signals = np.stack([read(fixture_root, ecg_id, fs) for ecg_id in truth.index])
    for rate, (ecg_id, row) in zip(heart_rates(signals, fs), truth.iterrows()):
        # irregular AFIB beats: the median RR moves by a missed or extra beat
        tolerance = 8.0 if row.rhythm == "AFIB" else 2.0
        assert abs(rate - row.heart_rate) < tolerance, (ecg_id, row.rhythm, rate, row.heart_rate)
    cvs = dict(zip(truth.rhythm, rr_cv(signals, fs)))
    assert cvs["AFIB"] > 0.1 > cvs["SR"]
    assert not math.isnan(cvs["3AVB"])
