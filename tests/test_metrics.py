from __future__ import annotations

import numpy as np
import pytest

from classifiers.metrics import bootstrap_ci, bootstrap_indices, macro_auc, paired_bootstrap_diff, per_class_metrics

# Class 0: positives score 0.9 and 0.3, negatives 0.1 and 0.4 → 3 of 4 pairs ordered, AUC 0.75.
# Class 1: perfectly separated, AUC 1.
Y_TRUE = np.array([[0, 0], [1, 1], [0, 0], [1, 1]])
Y_SCORE = np.array([[0.1, 0.1], [0.9, 0.8], [0.4, 0.2], [0.3, 0.7]])


def _noisy_scores(num_records=400, num_classes=3, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((num_records, num_classes)) < 0.3).astype(int)
    return y_true, rng.normal(size=y_true.shape) + signal * y_true


def test_macro_auc_hand_computed():
    assert macro_auc(Y_TRUE, Y_SCORE) == pytest.approx((0.75 + 1.0) / 2)


def test_macro_auc_rejects_class_without_negatives():
    y_true = Y_TRUE.copy()
    y_true[:, 1] = 1
    with pytest.raises(ValueError, match=r"undefined for classes \[1\]"):
        macro_auc(y_true, Y_SCORE)


def test_macro_auc_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape of y_true"):
        macro_auc(Y_TRUE, Y_SCORE[:, :1])


def test_per_class_metrics():
    frame = per_class_metrics(Y_TRUE, Y_SCORE, classes=["MI", "NORM"])
    assert list(frame.index) == ["MI", "NORM"]
    assert frame.loc["MI", "auc"] == pytest.approx(0.75)
    # Class 0 ranking by score: 0.9 (pos), 0.4 (neg), 0.3 (pos), 0.1 (neg) → AP = (1/1 + 2/3) / 2.
    assert frame.loc["MI", "auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert frame.loc["NORM", "auprc"] == pytest.approx(1.0)
    assert frame["prevalence"].tolist() == [0.5, 0.5]
    assert frame["num_positive"].tolist() == [2, 2]


def test_bootstrap_indices_skip_degenerate_resamples():
    y_true = np.zeros((30, 2), dtype=int)
    y_true[:15, 0] = 1
    y_true[0, 1] = 1  # one positive in 30: many resamples miss it
    ids = bootstrap_indices(y_true, n_bootstrap=50, seed=0)
    assert ids.shape == (50, 30)
    positives = y_true[ids].sum(axis=1)
    assert (positives > 0).all() and (positives < 30).all()


def test_bootstrap_indices_are_seeded():
    y_true, _ = _noisy_scores()
    np.testing.assert_array_equal(bootstrap_indices(y_true, 20, seed=0), bootstrap_indices(y_true, 20, seed=0))
    assert not np.array_equal(bootstrap_indices(y_true, 20, seed=0), bootstrap_indices(y_true, 20, seed=1))


def test_bootstrap_ci_contains_point_and_narrows_with_alpha():
    y_true, y_score = _noisy_scores()
    point, low, high = bootstrap_ci(y_true, y_score, macro_auc, n_bootstrap=100, alpha=0.05, seed=0)
    assert point == pytest.approx(macro_auc(y_true, y_score))
    assert low < point < high
    assert 0.01 < high - low < 0.2
    _, low_50, high_50 = bootstrap_ci(y_true, y_score, macro_auc, n_bootstrap=100, alpha=0.5, seed=0)
    assert low < low_50 < high_50 < high


def test_paired_bootstrap_diff():
    y_true, better = _noisy_scores(signal=2.0, seed=0)
    rng = np.random.default_rng(1)
    worse = better + rng.normal(scale=1.5, size=better.shape)
    diff, low, high = paired_bootstrap_diff(y_true, better, worse, macro_auc, n_bootstrap=100)
    assert diff == pytest.approx(macro_auc(y_true, better) - macro_auc(y_true, worse))
    assert 0 < low < diff < high

    assert paired_bootstrap_diff(y_true, better, better, macro_auc, n_bootstrap=10) == (0.0, 0.0, 0.0)
