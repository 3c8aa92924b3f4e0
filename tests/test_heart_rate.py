import math

import numpy as np
import pytest
import wfdb

from ecgaug.data.heart_rate import measure_heart_rate, measure_heart_rates
from ecgaug.signal import reorder_leads
from ptbxl_fixture import PROFILES, load_fixture_truth, make_ptbxl

NUM_RECORDS = len(PROFILES)  # one record of every rhythm profile


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl_hr"), num_records=NUM_RECORDS, sampling_rates=(100, 500))


def read(root, ecg_id, fs):
    folder, suffix = ("records100", "lr") if fs == 100 else ("records500", "hr")
    signal, _ = wfdb.rdsamp(str(root / folder / "00000" / f"{ecg_id:05d}_{suffix}"))
    return signal.T.astype(np.float32)  # (12, L)


@pytest.mark.parametrize("fs", [100, 500])
def test_rates_match_fixture_truth(fixture_root, fs):
    truth = load_fixture_truth(fixture_root)
    for ecg_id, row in truth.iterrows():
        rate = measure_heart_rate(read(fixture_root, ecg_id, fs), fs)
        # irregular AFIB beats: the median RR moves by a missed or extra beat
        tolerance = 8.0 if row.rhythm == "AFIB" else 2.0
        assert abs(rate - row.heart_rate) < tolerance, (ecg_id, row.rhythm, rate, row.heart_rate)


def test_rates_span_rhythms(fixture_root):
    truth = load_fixture_truth(fixture_root)
    rates = {row.rhythm: measure_heart_rate(read(fixture_root, ecg_id, 100), 100) for ecg_id, row in truth.iterrows()}
    assert rates["STACH"] > 100 > rates["SR"] > 60 > rates["SBRAD"] > rates["3AVB"]


def test_single_lead_and_lead_order(fixture_root):
    signal = read(fixture_root, 1, 100)
    expected = load_fixture_truth(fixture_root).heart_rate[1]
    assert abs(measure_heart_rate(signal[1], 100) - expected) < 2.0
    mimic = reorder_leads(signal, "ptbxl", "mimic", dim=0)
    assert measure_heart_rate(mimic, 100, lead_order="mimic") == measure_heart_rate(signal, 100)


def test_flat_and_short_signals_are_nan():
    assert math.isnan(measure_heart_rate(np.zeros((12, 1000), dtype=np.float32), 100))
    assert math.isnan(measure_heart_rate(np.full(1000, np.nan), 100))
    # two beats give one RR interval: not enough
    t = np.arange(1000) / 100
    two_beats = np.exp(-0.5 * ((t[:, None] - np.array([2.0, 3.0])) / 0.01) ** 2).sum(axis=1)
    assert math.isnan(measure_heart_rate(two_beats, 100))


def test_nan_when_too_few_leads_measurable(fixture_root):
    signal = read(fixture_root, 1, 100)
    signal[[1, 6]] = 0.0  # II and V1 flat: only V5 is left of the default leads
    assert math.isnan(measure_heart_rate(signal, 100))
    assert not math.isnan(measure_heart_rate(signal, 100, min_leads=1))


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"signal should have shape \(12, num_samples\)"):
        measure_heart_rate(np.zeros((3, 100)), 100)
    with pytest.raises(ValueError, match="leads should be a non-empty subset"):
        measure_heart_rate(np.zeros((12, 100)), 100, leads=("X",))
    with pytest.raises(ValueError, match="fs should be a positive sampling rate"):
        measure_heart_rate(np.zeros(100), 0)


def test_batch_matches_single_and_workers(fixture_root):
    signals = np.stack([read(fixture_root, ecg_id, 100) for ecg_id in range(1, 6)])
    expected = [measure_heart_rate(x, 100) for x in signals]
    np.testing.assert_array_equal(measure_heart_rates(signals, 100, chunk_size=2, progress=False), expected)
    np.testing.assert_array_equal(measure_heart_rates(signals, 100, chunk_size=2, num_workers=1, progress=False), expected)
