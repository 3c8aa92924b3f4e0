import numpy as np
import pandas as pd
import pytest
from fake_generator import CLASSES, FakeTemplater, real_labels, small_plan

from ecgaug.augment.patients import PatientSampler
from ecgaug.augment.plan import GenerationPlan, PlanConfig, job_seed, label_counts, make_plan, synthetic_counts


def test_label_counts_multi_label_counts_each_positive():
    targets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(label_counts(targets, 3), [1, 2, 0])
    np.testing.assert_array_equal(label_counts(np.array([2, 2, 0]), 3), [1, 0, 2])


@pytest.mark.parametrize(
    "config, expected",
    [
        (PlanConfig(), [0, 20, 10, 25]),
        (PlanConfig(strategy="target", target_count=12), [0, 2, 0, 7]),
        (PlanConfig(strategy="ratio", ratio=0.5), [0, 5, 0, 10]),
        (PlanConfig(classes=["SBRAD"]), [0, 0, 0, 25]),
    ],
)
def test_synthetic_counts(config, expected):
    np.testing.assert_array_equal(synthetic_counts(np.array([30, 10, 20, 5]), config, CLASSES), expected)


def test_balance_reaches_the_largest_class_exactly_with_co_occurring_labels():
    targets, _ = real_labels()
    plan = small_plan()
    total = targets.sum(axis=0) + plan.targets.sum(axis=0)
    np.testing.assert_array_equal(total, [targets.sum(axis=0).max()] * len(CLASSES))
    assert any("|" in labels for labels in plan.jobs["labels"]), "MI jobs should copy MI+STTC label sets"


def test_single_label_plan_has_one_label_per_job_and_balances():
    targets = np.array([0] * 12 + [1] * 4 + [2] * 2 + [3] * 6)
    age = np.full(len(targets), 50.0)
    sampler = PatientSampler(CLASSES, np.eye(4)[targets], age=age, sex=["F"] * len(targets), heart_rate=np.where(targets == 3, 50.0, 70.0))
    plan = make_plan(targets, CLASSES, reports=FakeTemplater(), patients=sampler, config=PlanConfig(co_occurrence="none"))
    assert all("|" not in labels for labels in plan.jobs["labels"])
    assert plan.counts() == {"NORM": 0, "MI": 8, "STTC": 10, "SBRAD": 6}


def test_plan_rows_are_consistent():
    plan = small_plan()
    jobs = plan.jobs
    np.testing.assert_array_equal(jobs["index"], np.arange(len(plan)))
    assert jobs["seed"].is_unique
    assert all(jobs["seed"] == [job_seed(0, i) for i in range(len(plan))])
    sbrad = jobs["labels"].str.contains("SBRAD")
    assert sbrad.any() and (jobs.loc[sbrad, "heart_rate"] < 60).all()
    assert jobs["report"].map(lambda r: r.split(" (variant")[0]).tolist() == [
        ", ".join(FakeTemplater.DESCRIPTIONS[label] for label in labels.split("|")) for labels in jobs["labels"]
    ]


def test_plan_is_deterministic_and_seeded():
    assert small_plan(seed=3).fingerprint() == small_plan(seed=3).fingerprint()
    assert small_plan(seed=3).fingerprint() != small_plan(seed=4).fingerprint()


def test_save_load_round_trip_is_exact(tmp_path):
    plan = small_plan()
    plan.save(tmp_path / "plan.jsonl")
    loaded = GenerationPlan.load(tmp_path / "plan.jsonl")
    pd.testing.assert_frame_equal(loaded.jobs, plan.jobs)
    assert loaded.classes == plan.classes and loaded.fingerprint() == plan.fingerprint()
    assert loaded.info["needed_counts"] == plan.info["needed_counts"]


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"format": "something-else"}\n')
    with pytest.raises(ValueError, match="ecgaug plan"):
        GenerationPlan.load(tmp_path / "x.jsonl")
    with pytest.raises(FileNotFoundError, match="No plan file"):
        GenerationPlan.load(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "most"}, "strategy should be one of"),
        ({"strategy": "target"}, "target_count >= 0"),
        ({"strategy": "ratio", "ratio": 0}, "ratio > 0"),
        ({"ratio": 0.5}, "only used with strategy='ratio'"),
        ({"co_occurrence": "some"}, "co_occurrence should be"),
    ],
)
def test_plan_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlanConfig(**kwargs)


def test_unknown_plan_classes_are_refused():
    with pytest.raises(ValueError, match="subset of"):
        synthetic_counts(np.array([1, 2, 3, 4]), PlanConfig(classes=["AFIB"]), CLASSES)
