"""compare_runs: paired differences to the reference, judged against the reference's own run-to-run noise."""
import numpy as np
import pytest
import torch

from ecgaug.evaluation.conditions import RHYTHM_CLASSES, SUPERCLASSES
from ecgaug.evaluation.conditions import TestConditions as Conditions  # not collected as a test class
from ecgaug.evaluation.samplers import FIDELITY_METRICS, compare_runs, fidelity_metrics


def _conditions(n: int = 200, seed: int = 0) -> Conditions:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(SUPERCLASSES))) < 0.3).astype(np.float32)
    rhythm = np.zeros((n, len(RHYTHM_CLASSES)), dtype=np.float32)
    rhythm[np.arange(n), rng.integers(0, len(RHYTHM_CLASSES), n)] = 1  # AFIB, SBRAD, SR or STACH
    return Conditions(list(range(n)), ["report"] * n, np.full(n, 60.0), ["M"] * n, rng.uniform(50, 100, n),
                          torch.zeros(n, 12, 1000), labels, list(SUPERCLASSES), rhythm)


def _run(conditions: Conditions, seed: int, *, signal: float = 2.0, hr_error: float = 3.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    afib = conditions.rhythm_labels[:, RHYTHM_CLASSES.index("AFIB")] == 1
    return {"superclass_scores": conditions.labels * signal + rng.normal(size=conditions.labels.shape),
            "rhythm_scores": conditions.rhythm_labels * signal + rng.normal(size=conditions.rhythm_labels.shape),
            "hr_error": np.abs(rng.normal(0, hr_error, len(conditions))),
            "rr_cv": np.where(afib, 0.2, 0.03) + rng.uniform(0, 0.01, len(conditions))}


def test_a_run_like_the_reference_is_within_noise_and_a_worse_one_is_not():
    conditions = _conditions()
    runs = {"ddpm": _run(conditions, 0), "ddpm_reseeded": _run(conditions, 1), "similar": _run(conditions, 2),
            "blurry": _run(conditions, 3, signal=0.3, hr_error=12.0)}
    result = compare_runs(runs, conditions, reference="ddpm", noise_floor="ddpm_reseeded", num_resamples=100)
    assert result["num_conditions"] == 200 and set(result["noise_bound"]) == set(FIDELITY_METRICS)
    assert all(d["difference"] == 0.0 for d in result["runs"]["ddpm"]["metrics"].values())
    assert result["runs"]["blurry"]["within_noise"]["superclass_auc"] is False
    assert result["runs"]["blurry"]["within_noise"]["hr_mae_bpm"] is False
    assert result["runs"]["similar"]["within_noise"]["superclass_auc"] is True
    low, high = result["runs"]["blurry"]["metrics"]["superclass_auc"]["ci"]
    assert low <= result["runs"]["blurry"]["metrics"]["superclass_auc"]["difference"] <= high < 0


def test_metrics_without_conditions_of_a_rhythm_are_undefined_not_invented():
    conditions = _conditions(n=40)
    conditions.rhythm_labels[:] = 0
    conditions.rhythm_labels[:, RHYTHM_CLASSES.index("SR")] = 1  # no AF condition
    values = fidelity_metrics(_run(conditions, 0), conditions, np.arange(40))
    assert np.isnan(values["afib_rr_cv"]) and np.isfinite(values["sinus_rr_cv"])
    result = compare_runs({"a": _run(conditions, 0), "b": _run(conditions, 1)}, conditions, reference="a", noise_floor="b", num_resamples=20)
    assert result["noise_bound"]["afib_rr_cv"] is None and result["runs"]["b"]["within_noise"]["afib_rr_cv"] is None


def test_the_reference_and_noise_floor_must_be_runs():
    conditions = _conditions(n=20)
    with pytest.raises(ValueError, match="'ddpm'"):
        compare_runs({"x": _run(conditions, 0)}, conditions, reference="ddpm", noise_floor="x")


def test_sweep_candidates_parse_and_bad_ones_name_the_format():
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from sampler_quality import Candidate

    candidate = Candidate.parse("unipc:12:bf16")
    assert (candidate.scheduler, candidate.steps, candidate.bf16_decoding, candidate.seed_stream) == ("unipc", 12, True, 0)
    assert Candidate.parse("ddpm:1000:reseeded").seed_stream == 1
    for bad in ("unipc", "unipc:ten", "unipc:12:fp8"):
        with pytest.raises(argparse.ArgumentTypeError, match="scheduler:steps"):
            Candidate.parse(bad)


def test_pooled_draws_keep_every_row_in_order_and_refuse_other_classes():
    first, second = _conditions(5, seed=0), _conditions(3, seed=1)
    pooled = Conditions.concatenate([first, second])
    assert len(pooled) == 8 and pooled.ecg_ids == first.ecg_ids + second.ecg_ids
    np.testing.assert_array_equal(pooled.heart_rate, np.concatenate([first.heart_rate, second.heart_rate]))
    np.testing.assert_array_equal(pooled.rhythm_labels[5:], second.rhythm_labels)
    assert pooled.signals.shape == (8, 12, 1000) and pooled.sex == first.sex + second.sex
    other = Conditions(**{**vars(second), "classes": ["NORM"], "labels": second.labels[:, :1]})
    with pytest.raises(ValueError, match="same classes"):
        Conditions.concatenate([first, other])
