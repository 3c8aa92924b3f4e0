"""Whether a sampler setting keeps DDPM-1000's fidelity: paired differences against DDPM's own run-to-run noise.

Every run generates one ECG per condition; runs with the same seed stream start from the same
noise. Per run, :func:`per_condition_values` keeps what each fidelity metric needs per condition,
so that the metrics can be recomputed on bootstrap resamples of the conditions
(:func:`fidelity_metrics`). :func:`compare_runs` then gives each run's paired difference to the
reference (DDPM-1000) with a 95 % CI, and says whether it lies within the noise floor: the
larger end of the CI of the difference between two DDPM-1000 runs from different noise.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from . import metrics
from .classifiers import classify
from .conditions import RHYTHM_CLASSES, SAMPLING_RATE, SINUS_RHYTHMS, TestConditions

__all__ = ["FIDELITY_METRICS", "compare_runs", "fidelity_metrics", "per_condition_values"]

FIDELITY_METRICS = ("superclass_auc", "rhythm_auc", "hr_mae_bpm", "sinus_rr_cv", "afib_rr_cv")


def per_condition_values(ecgs: np.ndarray, conditions: TestConditions, superclass_model, rhythm_model) -> dict[str, np.ndarray]:
    """Classifier scores, heart rate, its error against the condition and RR-interval CV of each generated ECG ``(N, 12, 1000)``."""
    hr, cv = metrics.measure_rhythm(ecgs, SAMPLING_RATE)
    tensor = torch.as_tensor(ecgs)
    return {"superclass_scores": classify(superclass_model, tensor), "rhythm_scores": classify(rhythm_model, tensor),
            "heart_rate": hr, "hr_error": np.abs(hr - conditions.heart_rate), "rr_cv": cv}


def fidelity_metrics(values: Mapping[str, np.ndarray], conditions: TestConditions, rows: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`FIDELITY_METRICS` on the conditions at ``rows`` (NaN where undefined, e.g. no AF condition)."""
    rhythm = conditions.rhythm_labels[rows]
    sinus = rhythm[:, [RHYTHM_CLASSES.index(name) for name in SINUS_RHYTHMS]].any(axis=1)
    afib = rhythm[:, RHYTHM_CLASSES.index("AFIB")] == 1
    cv = values["rr_cv"][rows]

    def median_cv(mask: np.ndarray) -> float:
        finite = cv[mask & np.isfinite(cv)]
        return float(np.median(finite)) if len(finite) else float("nan")

    errors = values["hr_error"][rows]
    return {
        "superclass_auc": metrics.macro_auc(values["superclass_scores"][rows], conditions.labels[rows]),
        "rhythm_auc": metrics.macro_auc(values["rhythm_scores"][rows], rhythm),
        "hr_mae_bpm": float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan"),
        "sinus_rr_cv": median_cv(sinus),
        "afib_rr_cv": median_cv(afib),
    }


def _paired(values, conditions: TestConditions, resamples: list[np.ndarray], reference_point: dict, reference_draws: list[dict]) -> dict[str, dict]:
    """Per metric: this run minus the reference, on all conditions and (for the CI) on each resample of them."""
    mine = fidelity_metrics(values, conditions, np.arange(len(conditions)))
    draws = {name: [] for name in FIDELITY_METRICS}
    for rows, theirs in zip(resamples, reference_draws):
        a = fidelity_metrics(values, conditions, rows)
        for name in FIDELITY_METRICS:
            draws[name].append(a[name] - theirs[name])
    out = {}
    for name in FIDELITY_METRICS:
        d = np.asarray(draws[name])
        d = d[np.isfinite(d)]
        difference = mine[name] - reference_point[name]
        out[name] = {"value": metrics._none_if_nan(mine[name]), "difference": metrics._none_if_nan(difference),
                     "ci": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if len(d) >= len(resamples) // 2 else [None, None]}
    return out


def compare_runs(values_by_run: Mapping[str, Mapping[str, np.ndarray]], conditions: TestConditions, *, reference: str, noise_floor: str,
                 num_resamples: int = 500, seed: int = 0) -> dict:
    """Each run against ``reference``, on the same conditions, with ``noise_floor`` (the reference reseeded) as the bound.

    Returns:
        ``noise_bound``: per metric, the larger end of the |CI| of ``noise_floor`` - ``reference`` (None if undefined);
        ``runs``: per run and metric, ``value``, paired ``difference`` to the reference and its ``ci``, and
        ``within_noise`` (``|difference| <= noise_bound``; None where undefined).
    """
    for name in (reference, noise_floor):
        if name not in values_by_run:
            raise ValueError(f"compare_runs needs a run named {name!r}, but got runs {sorted(values_by_run)}")
    # One set of resamples, and the reference's metrics on each computed once, for every run: the differences are paired.
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(conditions), len(conditions)) for _ in range(num_resamples)]
    reference_values = values_by_run[reference]
    reference_point = fidelity_metrics(reference_values, conditions, np.arange(len(conditions)))
    reference_draws = [fidelity_metrics(reference_values, conditions, rows) for rows in resamples]
    compared = {name: _paired(values, conditions, resamples, reference_point, reference_draws) for name, values in values_by_run.items()}
    noise = compared[noise_floor]
    bound = {m: max(abs(x) for x in noise[m]["ci"]) if None not in noise[m]["ci"] else None for m in FIDELITY_METRICS}

    def within(entry: dict, metric: str) -> bool | None:
        if bound[metric] is None or entry["difference"] is None:
            return None
        return bool(abs(entry["difference"]) <= bound[metric])

    runs = {name: {"metrics": entry, "within_noise": {m: within(entry[m], m) for m in FIDELITY_METRICS}} for name, entry in compared.items()}
    return {"reference": reference, "noise_floor": noise_floor, "num_conditions": len(conditions), "noise_bound": bound, "runs": runs}
