"""Multi-label evaluation: macro AUC, per-class AUC/AUPRC, and bootstrap confidence intervals.

Scores are computed with scikit-learn. The bootstrap follows the PTB-XL benchmark
(helme/ecg_ptbxl_benchmarking, ``code/utils/utils.py``): records are resampled with replacement and a
resample is redrawn when some class has no positive record in it (here also when it has no negative
one), because AUC is undefined for such a class. :func:`paired_bootstrap_diff` evaluates two models on
the *same* resamples, which is what decides whether one is better than the other on a shared test set.

All functions take ``y_true`` of shape ``(num_records, num_classes)`` with values in {0, 1} and
``y_score`` of the same shape (probabilities or logits; only the order matters for AUC).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm.auto import tqdm

__all__ = [
    "macro_auc",
    "per_class_metrics",
    "bootstrap_indices",
    "bootstrap_ci",
    "paired_bootstrap_diff",
    "BootstrapResult",
]

MetricFn = Callable[[np.ndarray, np.ndarray], float]


class BootstrapResult(NamedTuple):
    """A point estimate on all records and the ``(alpha/2, 1 - alpha/2)`` percentile interval."""

    point: float
    low: float
    high: float


def _check_inputs(y_true, y_score, name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2:
        raise ValueError(f"y_true should have shape (num_records, num_classes), but got shape {y_true.shape}.")
    if y_score.shape != y_true.shape:
        raise ValueError(f"{name} should have the shape of y_true {y_true.shape}, but got {y_score.shape}.")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true should contain only 0 and 1 (multi-hot targets).")
    if not np.isfinite(y_score).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return y_true.astype(np.int64), y_score


def _check_both_labels(y_true: np.ndarray) -> None:
    positives = y_true.sum(axis=0)
    degenerate = np.flatnonzero((positives == 0) | (positives == len(y_true)))
    if degenerate.size:
        raise ValueError(
            f"AUC is undefined for classes {degenerate.tolist()}: each class needs at least one positive and one "
            f"negative record, but their positive counts are {positives[degenerate].tolist()} of {len(y_true)}. "
            "Evaluate on a larger split or drop those classes."
        )


def macro_auc(y_true, y_score) -> float:
    """Unweighted mean over classes of the ROC AUC (the PTB-XL benchmark's main metric).

    Raises ValueError when some class has only positives or only negatives.
    """
    y_true, y_score = _check_inputs(y_true, y_score)
    _check_both_labels(y_true)
    return float(roc_auc_score(y_true, y_score, average="macro"))


def per_class_metrics(y_true, y_score, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class with ``auc``, ``auprc`` (average precision), ``prevalence`` and ``num_positive``.

    Returns:
        DataFrame indexed by class name (index name ``"class"``), in the order of ``classes``.
    """
    y_true, y_score = _check_inputs(y_true, y_score)
    if len(classes) != y_true.shape[1]:
        raise ValueError(f"classes should name the {y_true.shape[1]} columns of y_true, but got {len(classes)} names.")
    _check_both_labels(y_true)
    frame = pd.DataFrame(
        {
            "auc": roc_auc_score(y_true, y_score, average=None),
            "auprc": average_precision_score(y_true, y_score, average=None),
            "prevalence": y_true.mean(axis=0),
            "num_positive": y_true.sum(axis=0),
        },
        index=pd.Index(list(classes), name="class"),
    )
    return frame


def bootstrap_indices(y_true, n_bootstrap: int = 1000, seed: int = 0) -> np.ndarray:
    """Record indices of ``n_bootstrap`` resamples in which every class has a positive and a negative.

    Resamples with a degenerate class are redrawn (as the PTB-XL benchmark does), so the result always
    has ``n_bootstrap`` rows. Save it to report which resamples produced an interval.

    Returns:
        int64 array ``(n_bootstrap, num_records)``.
    """
    y_true = np.asarray(y_true)
    if not (isinstance(n_bootstrap, int) and n_bootstrap > 0):
        raise ValueError(f"n_bootstrap should be a positive integer, but got {n_bootstrap!r}.")
    _check_both_labels(y_true)
    num_records = len(y_true)
    rng = np.random.default_rng(seed)
    accepted: list[np.ndarray] = []
    max_draws = 100 * n_bootstrap
    for _ in range(max_draws):
        ids = rng.integers(0, num_records, size=num_records)
        positives = y_true[ids].sum(axis=0)
        if ((positives > 0) & (positives < num_records)).all():
            accepted.append(ids)
            if len(accepted) == n_bootstrap:
                return np.stack(accepted)
    raise RuntimeError(
        f"Only {len(accepted)} of {max_draws} bootstrap resamples had a positive and a negative record for every "
        "class; some class is too rare in y_true for a bootstrap."
    )


def _bootstrap_interval(
    y_true: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_bootstrap: int,
    alpha: float,
    seed: int,
    progress: bool,
    desc: str,
) -> tuple[float, float]:
    """``(alpha/2, 1 - alpha/2)`` percentiles of ``statistic(ids)`` over the resamples of :func:`bootstrap_indices`."""
    indices = bootstrap_indices(y_true, n_bootstrap, seed)
    values = np.array([statistic(ids) for ids in tqdm(indices, desc=desc, disable=not progress)])
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha should be in (0, 1), e.g. 0.05 for a 95% interval, but got {alpha}.")


def bootstrap_ci(
    y_true,
    y_score,
    metric_fn: MetricFn = macro_auc,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of ``metric_fn`` over records.

    Args:
        y_true, y_score: ``(num_records, num_classes)`` targets and scores.
        metric_fn: ``metric_fn(y_true, y_score) -> float``, e.g. :func:`macro_auc`.
        n_bootstrap: number of valid resamples (see :func:`bootstrap_indices`).
        alpha: 0.05 gives the 2.5 % and 97.5 % percentiles.
        seed: seed of the resampling.
        progress: show a tqdm bar.

    Returns:
        ``(point, low, high)``: the metric on all records and the interval bounds.
    """
    _check_alpha(alpha)
    y_true, y_score = _check_inputs(y_true, y_score)
    point = float(metric_fn(y_true, y_score))
    low, high = _bootstrap_interval(
        y_true, lambda ids: metric_fn(y_true[ids], y_score[ids]), n_bootstrap, alpha, seed, progress, desc="bootstrap"
    )
    return BootstrapResult(point, low, high)


def paired_bootstrap_diff(
    y_true,
    score_a,
    score_b,
    metric_fn: MetricFn = macro_auc,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> BootstrapResult:
    """Bootstrap interval of ``metric_fn(score_a) - metric_fn(score_b)`` on the same test records.

    Both models are scored on identical resamples, so the interval reflects only how differently they
    rank the same records. An interval that excludes 0 means model A differs from B at level ``alpha``
    (e.g. A = trained with augmentation, B = real data only: ``low > 0`` means augmentation helped).

    Returns:
        ``(diff, low, high)``: the difference on all records and the interval bounds.
    """
    _check_alpha(alpha)
    y_true, score_a = _check_inputs(y_true, score_a, name="score_a")
    _, score_b = _check_inputs(y_true, score_b, name="score_b")
    diff = float(metric_fn(y_true, score_a) - metric_fn(y_true, score_b))
    low, high = _bootstrap_interval(
        y_true,
        lambda ids: metric_fn(y_true[ids], score_a[ids]) - metric_fn(y_true[ids], score_b[ids]),
        n_bootstrap,
        alpha,
        seed,
        progress,
        desc="paired bootstrap",
    )
    return BootstrapResult(diff, low, high)
