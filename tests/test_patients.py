import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecgaug.augment.patients import PatientInfo, PatientSampler, heart_rate_constraint, parse_override

CLASSES = ["NORM", "MI", "SBRAD", "STACH"]
# record: NORM x3 (one without age), MI x2 (one without sex), SBRAD x2, STACH x1, MI+SBRAD x1
TARGETS = np.array(
    [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0]]
)
AGE = np.array([30.0, 40.0, np.nan, 60.0, 65.0, 70.0, 75.0, 25.0, 80.0])
SEX = np.array(["M", "F", "M", "F", None, "M", "F", "M", "F"], dtype=object)
HEART_RATE = np.array([70.0, 80.0, 75.0, 62.0, 90.0, 50.0, 55.0, 120.0, 48.0])


def sampler(**kwargs):
    kwargs.setdefault("age_jitter", 0.0)
    kwargs.setdefault("heart_rate_jitter", 0.0)
    return PatientSampler(CLASSES, TARGETS, AGE, SEX, HEART_RATE, **kwargs)


def draws(patients, labels, n=200, report="", seed=0):
    rng = np.random.default_rng(seed)
    return [patients.sample(labels, rng=rng, report=report) for _ in range(n)]


def test_draws_are_joint_real_records_of_the_class():
    real = {(AGE[i], SEX[i], HEART_RATE[i]) for i in range(len(AGE))}
    for labels, expected in ((["NORM"], {0, 1}), (["MI"], {3, 8})):
        got = {(p.age, p.sex, p.heart_rate) for p in draws(sampler(), labels)}
        assert got <= real
        assert got == {(AGE[i], SEX[i], HEART_RATE[i]) for i in expected}  # never record 2 (age NaN) or 4 (sex None)


def test_label_sets_prefer_records_with_all_labels():
    assert {p.age for p in draws(sampler(), ["MI", "SBRAD"])} == {80.0}


def test_jitter_is_small_and_keeps_sex():
    got = draws(sampler(age_jitter=2.0, heart_rate_jitter=2.0), ["NORM"], n=400)
    assert {p.sex for p in got} == {"M", "F"}
    assert 1.0 < np.std([p.age - (30.0 if p.sex == "M" else 40.0) for p in got]) < 3.0


@pytest.mark.parametrize("labels, report, check", [
    (["SBRAD"], "", lambda hr: hr < 60),
    (["NORM"], "Sinus Bradycardia, otherwise normal", lambda hr: hr < 60),
    (["STACH"], "", lambda hr: hr > 100),
])  # fmt: skip
def test_heart_rate_follows_the_rhythm_even_with_large_jitter(labels, report, check):
    patients = sampler(heart_rate_jitter=30.0)
    if labels == ["NORM"]:  # no NORM record is bradycardic: the report's constraint cannot be met
        with pytest.raises(ValueError, match="heart rate < 60 bpm"):
            patients.sample(labels, rng=np.random.default_rng(0), report=report)
        return
    assert all(check(p.heart_rate) for p in draws(patients, labels, report=report))


def test_constraint_from_labels_and_report():
    assert heart_rate_constraint(["NORM"], "normal ECG") is None
    assert heart_rate_constraint(["SBRAD"]).high == 60
    assert heart_rate_constraint(["MI"], "sinus tachycardia").low == 100
    with pytest.raises(ValueError, match="both bradycardia and tachycardia"):
        heart_rate_constraint(["SBRAD", "STACH"])


def test_overrides_fixed_and_ranges():
    patients = sampler(age_override=(20, 30), sex_override="F", heart_rate_override="40:80")
    got = draws(patients, ["SBRAD"])
    assert all(20 <= p.age <= 30 and p.sex == "F" and 40 <= p.heart_rate < 60 for p in got)
    assert draws(sampler(age_override=55), ["NORM"], n=1)[0].age == 55.0
    # with every field overridden, even a class without usable records works
    fixed = PatientSampler(CLASSES, TARGETS, age_override=50, sex_override="M", heart_rate_override=70)
    assert fixed.sample(["NORM"], rng=np.random.default_rng(0)) == PatientInfo(50.0, "M", 70.0)


def test_override_contradicting_the_rhythm_is_refused():
    with pytest.raises(ValueError, match="contradicts"):
        sampler(heart_rate_override=70).sample(["SBRAD"], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not intersect"):
        sampler(heart_rate_override=(70, 90)).sample(["SBRAD"], rng=np.random.default_rng(0))


def test_missing_values_are_never_invented():
    no_age = PatientSampler(CLASSES, TARGETS, age=None, sex=SEX, heart_rate=HEART_RATE)
    with pytest.raises(ValueError, match="age_override"):
        no_age.sample(["NORM"], rng=np.random.default_rng(0))
    all_nan = np.where(TARGETS[:, 3] > 0, np.nan, AGE)
    with pytest.raises(ValueError, match="No real record of class 'STACH'"):
        PatientSampler(CLASSES, TARGETS, all_nan, SEX, HEART_RATE).sample(["STACH"], rng=np.random.default_rng(0))


def test_reproducible_with_the_same_rng():
    assert draws(sampler(age_jitter=2.0), ["NORM"], seed=5) == draws(sampler(age_jitter=2.0), ["NORM"], seed=5)


def test_from_dataset_reads_metadata_and_heart_rates():
    dataset = SimpleNamespace(
        classes=CLASSES,
        targets=TARGETS,
        metadata=pd.DataFrame({"age": AGE, "sex": SEX, "ecg_id": np.arange(len(AGE))}),
        heart_rates=lambda: HEART_RATE,
    )
    patients = PatientSampler.from_dataset(dataset, age_jitter=0.0, heart_rate_jitter=0.0)
    assert {p.age for p in draws(patients, ["SBRAD"])} == {70.0, 75.0, 80.0}
    with pytest.raises(TypeError, match="no `heart_rates`"):
        PatientSampler.from_dataset(SimpleNamespace(classes=CLASSES, targets=TARGETS, metadata=None))


def test_input_validation():
    with pytest.raises(ValueError, match="sex should hold 'M', 'F'"):
        PatientSampler(CLASSES, TARGETS, AGE, np.array(["male"] * 9, dtype=object), HEART_RATE)
    with pytest.raises(ValueError, match=r"age should have shape \(9,\)"):
        PatientSampler(CLASSES, TARGETS, AGE[:3], SEX, HEART_RATE)
    with pytest.raises(ValueError, match="'low:high'"):
        parse_override("old", "age")
    assert parse_override("50:60", "age") == (50.0, 60.0) and parse_override(" 7", "age") == 7.0
    assert math.isinf(heart_rate_constraint(["SBRAD"]).low)
