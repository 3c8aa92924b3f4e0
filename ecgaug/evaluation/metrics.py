"""Fidelity metrics of generated ECGs, each a pure function of arrays, with bootstrap 95 % CIs.

Every CI is a percentile bootstrap over conditions (or test records): resample the rows with
replacement, recompute the statistic, take the 2.5 and 97.5 percentiles. Missing values are
``None``, never invented.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from ecgaug.data.heart_rate import detect_beats, rates_from_beats, rr_cv_from_beats
from ecgaug.signal import PTBXL_LEADS, limb_lead_residual

__all__ = ["RECOGNITION_THRESHOLD", "bootstrap_ci", "class_recognition", "heart_rate_metrics", "lead_consistency", "macro_auc",
           "measure_rhythm", "reconstruction_metrics", "rhythm_regularity", "run_to_run"]

RECOGNITION_THRESHOLD = 0.5
NUM_RESAMPLES = 1000


def _none_if_nan(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def bootstrap_ci(statistic: Callable[[np.ndarray], float], num_rows: int, *, num_resamples: int = NUM_RESAMPLES,
                 seed: int = 0) -> list[float | None]:
    """``[low, high]`` percentile 95 % CI of ``statistic(rows)`` over resampled row indices.

    Resamples on which the statistic is undefined (NaN, e.g. an AUC without positives) are skipped.
    """
    if num_rows == 0:
        return [None, None]
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, num_rows, num_rows)) for _ in range(num_resamples)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < num_resamples // 2:
        return [None, None]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis; NaN where either side is flat."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a ** 2).sum(axis=-1) * (b ** 2).sum(axis=-1))
    flat = denominator < 1e-12
    return np.where(flat, np.nan, (a * b).sum(axis=-1) / np.where(flat, 1.0, denominator))


def reconstruction_metrics(real: np.ndarray, reconstructed: np.ndarray, *, leads: Sequence[str] = PTBXL_LEADS, seed: int = 0) -> dict:
    """Per-lead RMSE (mV) and Pearson r of ``reconstructed`` against ``real`` ``(N, 12, L)``, averaged over records.

    ``overall``: mean RMSE over records of the RMSE over all leads, mean Pearson r over records and
    leads (with a CI), and the lowest per-lead mean r. A lead flat in a record has no correlation
    there and is left out of its mean (``num_flat_leads`` counts them).
    """
    real, reconstructed = np.asarray(real, dtype=np.float64), np.asarray(reconstructed, dtype=np.float64)
    if real.shape != reconstructed.shape or real.ndim != 3 or real.shape[1] != len(leads):
        raise ValueError(f"real and reconstructed should both be (N, {len(leads)}, L), but got {real.shape} and {reconstructed.shape}.")
    error = reconstructed - real
    rmse = np.sqrt((error ** 2).mean(axis=-1))  # (N, leads)
    pearson = _pearson_rows(real, reconstructed)  # (N, leads)
    per_lead_r = {lead: _none_if_nan(np.nanmean(pearson[:, i])) if np.isfinite(pearson[:, i]).any() else None for i, lead in enumerate(leads)}
    record_r = np.nanmean(np.where(np.isfinite(pearson), pearson, np.nan), axis=1) if np.isfinite(pearson).any() else np.full(len(real), np.nan)
    known = [value for value in per_lead_r.values() if value is not None]
    return {
        "num_records": len(real),
        "leads": list(leads),
        "rmse_mv": {lead: float(rmse[:, i].mean()) for i, lead in enumerate(leads)},
        "pearson": per_lead_r,
        "overall": {
            "rmse_mv": float(np.sqrt((error ** 2).mean(axis=(1, 2))).mean()),
            "pearson": _none_if_nan(np.nanmean(pearson)) if np.isfinite(pearson).any() else None,
            "pearson_ci": bootstrap_ci(lambda rows: np.nanmean(record_r[rows]), len(real), seed=seed),
            "pearson_min_lead": min(known) if known else None,
        },
        "num_flat_leads": int((~np.isfinite(pearson)).sum()),
    }


def measure_rhythm(ecgs: np.ndarray, sampling_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Heart rate (bpm) and RR-interval coefficient of variation of each ECG ``(N, leads, L)`` in mV; NaN where unmeasurable."""
    beats = detect_beats(np.asarray(ecgs, dtype=np.float32), sampling_rate)
    return rates_from_beats(beats, sampling_rate), rr_cv_from_beats(beats, sampling_rate)


def heart_rate_metrics(condition_hr: np.ndarray, generated_hr: np.ndarray, *, seed: int = 0) -> dict:
    """Errors of generated heart rates against the conditioning ones (bpm).

    Only ECGs whose heart rate is measurable count towards the errors; ``fraction_measurable``
    says how many that is. ``mean_error_bpm`` is the signed bias (generated minus condition).
    """
    condition_hr, generated_hr = np.asarray(condition_hr, dtype=np.float64), np.asarray(generated_hr, dtype=np.float64)
    if condition_hr.shape != generated_hr.shape or condition_hr.ndim != 1:
        raise ValueError(f"condition_hr and generated_hr should be 1-D of equal length, but got {condition_hr.shape} and {generated_hr.shape}.")
    measurable = np.isfinite(generated_hr) & np.isfinite(condition_hr)
    error = generated_hr[measurable] - condition_hr[measurable]
    correlated = measurable.sum() >= 3 and np.std(generated_hr[measurable]) > 0 and np.std(condition_hr[measurable]) > 0
    return {
        "num_conditions": len(condition_hr),
        "num_measurable": int(measurable.sum()),
        "fraction_measurable": float(measurable.mean()) if len(condition_hr) else None,
        "mae_bpm": float(np.abs(error).mean()) if error.size else None,
        "mae_ci": bootstrap_ci(lambda rows: np.abs(error[rows]).mean(), len(error), seed=seed),
        "median_ae_bpm": float(np.median(np.abs(error))) if error.size else None,
        "mean_error_bpm": float(error.mean()) if error.size else None,
        "pearson_r": float(np.corrcoef(condition_hr[measurable], generated_hr[measurable])[0, 1]) if correlated else None,
    }


def run_to_run(hr_a: np.ndarray, hr_b: np.ndarray) -> dict:
    """How far two generation runs of the same conditions differ in heart rate (the noise floor)."""
    both = np.isfinite(hr_a) & np.isfinite(hr_b)
    difference = np.abs(hr_a[both] - hr_b[both])
    return {
        "num_pairs": int(both.sum()),
        "mae_bpm": float(difference.mean()) if difference.size else None,
        "median_ae_bpm": float(np.median(difference)) if difference.size else None,
    }


def rhythm_regularity(rr_cv: np.ndarray, rhythm_labels: np.ndarray, rhythm_classes: Sequence[str], *,
                      groups: dict[str, Sequence[str]], seed: int = 0) -> dict:
    """Median coefficient of variation of RR intervals per rhythm class and per group of classes.

    Args:
        rr_cv: ``(N,)`` RR-interval CV of each ECG (NaN where fewer than three beats were found).
        rhythm_labels: ``(N, len(rhythm_classes))`` multi-hot rhythm statements of the conditions.
        groups: name -> classes, e.g. ``{"sinus": ("SR", "SBRAD", "STACH"), "afib": ("AFIB",)}``.
    """
    rr_cv = np.asarray(rr_cv, dtype=np.float64)

    def summary(mask: np.ndarray) -> dict:
        values = rr_cv[mask & np.isfinite(rr_cv)]
        return {"num_conditions": int(mask.sum()), "num_measurable": len(values),
                "median_cv": float(np.median(values)) if len(values) else None,
                "median_cv_ci": bootstrap_ci(lambda rows: np.median(values[rows]), len(values), seed=seed)}

    classes = list(rhythm_classes)
    per_class = {name: summary(rhythm_labels[:, k] == 1) for k, name in enumerate(classes)}
    per_group = {name: summary(rhythm_labels[:, [classes.index(c) for c in members]].max(axis=1) == 1) for name, members in groups.items()}
    return {"per_class": per_class, "groups": per_group}


def lead_consistency(ecgs: np.ndarray, lead_order: str | Sequence[str] = "ptbxl") -> dict:
    """How far 12-lead ECGs break III = II − I, aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2.

    ``residual_mv``: mean over ECGs of the RMS residual of those four leads (0 when they are derived).
    """
    residual = np.asarray(limb_lead_residual(np.asarray(ecgs, dtype=np.float64), lead_order))
    return {"num_ecgs": len(residual), "residual_mv": float(residual.mean()) if len(residual) else None,
            "median_residual_mv": float(np.median(residual)) if len(residual) else None}


def macro_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean ROC-AUC over the columns with positives and negatives (NaN if none has both)."""
    aucs = [roc_auc_score(labels[:, k], scores[:, k]) for k in range(labels.shape[1]) if 0 < labels[:, k].sum() < len(labels)]
    return float(np.mean(aucs)) if aucs else float("nan")


def class_recognition(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], threshold: float = RECOGNITION_THRESHOLD,
                      *, seed: int = 0, num_resamples: int = 200) -> dict:
    """How well classifier ``scores`` ``(N, C)`` recognise the conditions' ``labels`` ``(N, C)``.

    Returns:
        ``per_class``: class -> ``num_conditions`` (conditions with that class), ``fraction_recognized``
        (of those, the fraction scored above ``threshold``; ``None`` without conditions) and ``auc``
        (``None`` unless the class has positive and negative conditions); ``macro_auc`` over the
        classes with an AUC, listed in ``auc_classes``, with its bootstrap CI ``macro_auc_ci``.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.shape != labels.shape or scores.shape[1:] != (len(classes),):
        raise ValueError(f"scores and labels should both have shape (N, {len(classes)}), but got {scores.shape} and {labels.shape}.")
    per_class, aucs = {}, {}
    for k, name in enumerate(classes):
        positive = labels[:, k] == 1
        auc = float(roc_auc_score(labels[:, k], scores[:, k])) if 0 < positive.sum() < len(labels) else None
        if auc is not None:
            aucs[name] = auc
        per_class[name] = {
            "num_conditions": int(positive.sum()),
            "fraction_recognized": float((scores[positive, k] > threshold).mean()) if positive.any() else None,
            "auc": auc,
        }
    columns = [list(classes).index(name) for name in aucs]
    ci = bootstrap_ci(lambda rows: macro_auc(scores[rows][:, columns], labels[rows][:, columns]), len(labels),
                      num_resamples=num_resamples, seed=seed) if aucs else [None, None]
    return {"per_class": per_class, "macro_auc": float(np.mean(list(aucs.values()))) if aucs else None, "macro_auc_ci": ci,
            "auc_classes": list(aucs)}
