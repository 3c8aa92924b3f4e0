import json

import numpy as np
import pandas as pd
import pytest
from fake_generator import CLASSES, FakeTemplater, real_labels, small_plan

from ecgaug.augment.patients import PatientSampler
from ecgaug.augment.plan import (
    GenerationPlan,
    PlanConfig,
    job_seed,
    label_counts,
    make_plan,
    primary_labels,
    select_from_pool,
    synthetic_counts,
)


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
        ({"strategy": "per_class"}, "per_class >= 1"),
        ({"strategy": "per_class", "per_class": 0}, "per_class >= 1"),
        ({"per_class": 3}, "only used with strategy='per_class'"),
        ({"report_codes": "rare"}, "report_codes should be"),
    ],
)
def test_plan_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlanConfig(**kwargs)


def test_unknown_plan_classes_are_refused():
    with pytest.raises(ValueError, match="subset of"):
        synthetic_counts(np.array([1, 2, 3, 4]), PlanConfig(classes=["AFIB"]), CLASSES)


def test_synthetic_draw_balances_up_to_the_cap_and_the_pool():
    classes = 3
    primary = np.repeat(np.arange(classes), 10)  # 10 pool ECGs per class, single-label
    pool_targets = np.eye(classes)[primary]
    real = np.array([100, 20, 4])
    chosen, summary = select_from_pool(pool_targets, primary, real, synthetic_per_real=2.0, allowed=np.ones(classes, bool), seed=0)
    # class 1 wants min(80, 40) = 40 but the pool has 10; class 2 wants min(96, 8) = 8.
    assert summary["wanted"] == [0, 40, 8] and summary["selected"] == [0, 10, 8] and summary["shortfall"] == [0, 30, 0]
    assert len(set(chosen)) == len(chosen) == 18
    only_rare, summary = select_from_pool(pool_targets, primary, real, synthetic_per_real=2.0, allowed=np.array([False, False, True]), seed=0)
    assert summary["selected"] == [0, 0, 8] and set(primary[only_rare]) == {2}
    other_seed, _ = select_from_pool(pool_targets, primary, real, synthetic_per_real=2.0, allowed=np.ones(classes, bool), seed=1)
    assert not np.array_equal(np.sort(chosen), np.sort(other_seed))


def _sampler():
    targets, patients = real_labels()
    return targets, PatientSampler(CLASSES, targets, **patients)


def test_per_class_pool_has_per_class_jobs_per_primary_label_copying_real_label_sets():
    targets, sampler = _sampler()
    plan = make_plan(targets, CLASSES, reports=FakeTemplater(), patients=sampler,
                     config=PlanConfig(strategy="per_class", per_class=6, seed=2))  # fmt: skip
    primary = primary_labels(plan)
    np.testing.assert_array_equal(np.bincount(primary, minlength=len(CLASSES)), [6] * len(CLASSES))
    real_sets = {tuple(np.flatnonzero(row)) for row in targets}
    assert {tuple(sorted(np.flatnonzero(row))) for row in plan.targets} <= real_sets  # copied, never invented
    assert plan.info["config"]["strategy"] == "per_class" and "needed_counts" not in plan.info
    only = make_plan(targets, CLASSES, reports=FakeTemplater(), patients=sampler,
                     config=PlanConfig(strategy="per_class", per_class=2, classes=["SBRAD"], co_occurrence="none"))  # fmt: skip
    assert only.jobs["labels"].tolist() == ["SBRAD", "SBRAD"]
    with pytest.raises(ValueError, match="synthetic_counts|pool"):
        synthetic_counts(np.array([1, 2, 3, 4]), PlanConfig(strategy="per_class", per_class=1), CLASSES)


def test_per_class_pool_refuses_a_class_without_real_records():
    targets, sampler = _sampler()
    targets = targets.copy()
    targets[:, 3] = 0
    sampler = PatientSampler(CLASSES, targets, **real_labels()[1])
    with pytest.raises(ValueError, match="Class 'SBRAD' has no positive real record"):
        make_plan(targets, CLASSES, reports=FakeTemplater(), patients=sampler, config=PlanConfig(strategy="per_class", per_class=1))


class CodeTemplater(FakeTemplater):
    """Classes with member codes: MI is IMI or PMI; reports name the picked code."""

    MEMBERS = {"NORM": ["NORM"], "MI": ["IMI", "PMI"], "STTC": ["NDT"], "SBRAD": ["SBRAD"]}

    def label_statistics(self, scp_codes, label):
        from ecgaug.text.reports import LabelStatistics

        counts = dict.fromkeys(self.MEMBERS[label], 0)
        for codes in scp_codes:
            for code in codes:
                if code in counts:
                    counts[code] += 1
        return LabelStatistics(num_records=sum(counts.values()), code_counts=counts, co_occurring={})

    def report_for_class(self, label, *, rng, code_counts=None, co_occurring=None):
        members = self.MEMBERS[label]
        weights = None if code_counts is None else np.array([code_counts.get(m, 0) for m in members], float)
        code = members[rng.choice(len(members), p=None if weights is None else weights / weights.sum())]
        return f"{code} (variant {int(rng.integers(1000))})"


def test_frequency_report_codes_follow_the_real_code_mix():
    targets, sampler = _sampler()
    scp_codes = [{("IMI" if i % 2 else "NORM"): 100.0} if row[1] == 0 else {"IMI": 100.0} for i, row in enumerate(targets)]
    for i in np.flatnonzero(targets[:, 1])[:1]:
        scp_codes[i] = {"PMI": 100.0}  # 1 of 10 MI records is posterior
    def mi_codes(report_codes):
        config = PlanConfig(strategy="per_class", per_class=200, classes=["MI"], co_occurrence="none", report_codes=report_codes)
        plan = make_plan(targets, CLASSES, reports=CodeTemplater(), patients=sampler, config=config, scp_codes=scp_codes)
        return plan.jobs["report"].str.split(" ").str[0].value_counts().to_dict()
    frequency, uniform = mi_codes("frequency"), mi_codes("uniform")
    assert frequency.get("PMI", 0) < 45 and uniform["PMI"] > 70  # about 20 (10 %) against about 100 (50 %)
    with pytest.raises(ValueError, match="needs scp_codes"):
        make_plan(targets, CLASSES, reports=CodeTemplater(), patients=sampler, config=PlanConfig(report_codes="frequency"))


def test_job_record_is_the_one_serializer_of_plan_rows(tmp_path):
    from ecgaug.augment.cache import MANIFEST_COLUMNS
    from ecgaug.augment.plan import JOB_COLUMNS, job_record

    plan = small_plan()
    lines = plan.to_jsonl().splitlines()[1:]
    assert [json.loads(line) for line in lines] == plan.job_records() == [job_record(r) for r in plan.jobs.to_dict("records")]
    assert list(plan.job_records()[0]) == list(JOB_COLUMNS) == MANIFEST_COLUMNS[: len(JOB_COLUMNS)]


def test_jittered_values_stay_in_the_pipelines_valid_ranges():
    # Real values at the edges: jitter pushes about half the draws beyond 0-120 years and 20-300 bpm.
    sampler = PatientSampler(["A"], np.ones((4, 1)), age=np.array([0.5, 119.5, 0.5, 119.5]), sex=["F", "M", "F", "M"],
                             heart_rate=np.array([20.5, 299.5, 20.5, 299.5]), age_jitter=5.0, heart_rate_jitter=5.0)  # fmt: skip
    rng = np.random.default_rng(0)
    draws = [sampler.sample(["A"], rng=rng) for _ in range(200)]
    ages, rates = np.array([d.age for d in draws]), np.array([d.heart_rate for d in draws])
    assert ages.min() == 0.0 and ages.max() == 120.0 and rates.min() == 20.0 and rates.max() == 300.0
