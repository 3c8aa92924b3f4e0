"""Patient information (age, sex, heart rate) for synthetic ECGs, drawn from the real records of a class.

DiffuSETS conditions each ECG on a report and on the patient's age, sex and heart rate. To keep
synthetic records plausible, :class:`PatientSampler` draws the three values *jointly* from one
real record of the requested class (so correlations such as "older patients with MI" survive),
adds a small Gaussian jitter, and never invents a value the real data does not have: a record
whose age, sex or heart rate is unknown is simply not a candidate. A user may override any field
with a fixed value or a ``(low, high)`` range.

Heart rate must agree with the rhythm: a report or label set that says bradycardia gets a rate
below 60 bpm, one that says tachycardia a rate above 100 bpm (:func:`heart_rate_constraint`).
Drawn values stay within what the pipeline accepts (age 0–120 years, heart rate 20–300 bpm):
a jittered (or outlying real) value beyond those bounds is clamped to them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..settings import AGE_RANGE, HEART_RATE_RANGE  # the pipeline's valid ranges

__all__ = [
    "BRADYCARDIA_CODES",
    "TACHYCARDIA_CODES",
    "HeartRateConstraint",
    "PatientInfo",
    "PatientSampler",
    "heart_rate_constraint",
    "parse_override",
]

# PTB-XL rhythm statements that fix the heart rate's range.
BRADYCARDIA_CODES = frozenset({"SBRAD"})
TACHYCARDIA_CODES = frozenset({"STACH", "SVTAC", "PSVT"})
BRADYCARDIA_BELOW_BPM = 60.0
TACHYCARDIA_ABOVE_BPM = 100.0

Override = Union[float, str, tuple, None]


@dataclass(frozen=True)
class HeartRateConstraint:
    """An open interval ``low < heart_rate < high`` (bpm) that a rhythm label or report requires."""

    low: float = -math.inf
    high: float = math.inf
    reason: str = ""

    def allows(self, heart_rate: float) -> bool:
        return self.low < heart_rate < self.high

    def __str__(self) -> str:
        bounds = f"< {self.high:g} bpm" if math.isinf(self.low) else f"> {self.low:g} bpm"
        return f"heart rate {bounds} ({self.reason})"


def heart_rate_constraint(labels: Sequence[str], report: str = "") -> HeartRateConstraint | None:
    """The heart-rate range required by a label set and its report, or ``None`` if unconstrained.

    Bradycardia comes from a label in :data:`BRADYCARDIA_CODES` or "bradycard" in the report
    (``< 60 bpm``); tachycardia from :data:`TACHYCARDIA_CODES` or "tachycard" (``> 100 bpm``).

    Raises:
        ValueError: if the labels/report ask for both bradycardia and tachycardia.
    """
    text = report.lower()
    brady = [label for label in labels if label in BRADYCARDIA_CODES] + (["'bradycard...' in report"] if "bradycard" in text else [])
    tachy = [label for label in labels if label in TACHYCARDIA_CODES] + (["'tachycard...' in report"] if "tachycard" in text else [])
    if brady and tachy:
        raise ValueError(
            f"Labels {list(labels)} with report {report!r} ask for both bradycardia and tachycardia; "
            "a synthetic ECG needs one consistent heart rate. Remove one of them from the plan."
        )
    if brady:
        return HeartRateConstraint(high=BRADYCARDIA_BELOW_BPM, reason="bradycardia: " + ", ".join(brady))
    if tachy:
        return HeartRateConstraint(low=TACHYCARDIA_ABOVE_BPM, reason="tachycardia: " + ", ".join(tachy))
    return None


@dataclass(frozen=True)
class PatientInfo:
    """The patient of one synthetic ECG: age (years), sex (``'M'``/``'F'``), heart rate (bpm)."""

    age: float
    sex: str
    heart_rate: float


def parse_override(value: Override, name: str) -> float | tuple[float, float] | None:
    """Normalise an override: ``None``, a number, a ``(low, high)`` pair, or a ``"low:high"`` string."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"{name} override should be a number or 'low:high', but got {value!r}") from None
        value = numbers[0] if len(numbers) == 1 else tuple(numbers)
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not value[0] <= value[1]:
            raise ValueError(f"{name} override range should be (low, high) with low <= high, but got {value!r}")
        return float(value[0]), float(value[1])
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} override should be a number, but got NaN")
    return value


class PatientSampler:
    """Draws (age, sex, heart rate) for a label set from the real records of that class.

    Args:
        classes: Class names, in the order of the columns of ``targets``.
        targets: ``(num_records, num_classes)`` multi-hot labels of the real records.
        age: ``(num_records,)`` ages in years, NaN when unknown; ``None`` if the data set has none.
        sex: ``(num_records,)`` ``'M'``/``'F'``, ``None``/NaN when unknown; ``None`` if the data set has none.
        heart_rate: ``(num_records,)`` bpm, NaN when unknown; ``None`` if the data set has none.
        age_override: A fixed age, or a ``(low, high)`` range drawn uniformly, used instead of the data.
        sex_override: ``'M'`` or ``'F'`` for every synthetic ECG.
        heart_rate_override: A fixed heart rate, or a ``(low, high)`` range drawn uniformly (intersected
            with the rhythm's range, see :func:`heart_rate_constraint`).
        age_jitter: Standard deviation (years) of the Gaussian noise added to a real age.
        heart_rate_jitter: Standard deviation (bpm) of the Gaussian noise added to a real heart rate;
            a jittered rate that leaves the rhythm's range is replaced by the real one.

    Candidates for a label set are the real records positive for *all* its labels, or, if none has
    the needed values, those positive for its first (primary) label. A field without override is
    taken only from records where it is known; if no candidate has it, :meth:`sample` raises and
    names the override that would fix it.

    Example:
        >>> sampler = PatientSampler(["NORM", "SBRAD"], np.array([[1, 0], [0, 1]]),
        ...                          age=np.array([50.0, 70.0]), sex=np.array(["M", "F"]),
        ...                          heart_rate=np.array([72.0, 51.0]), age_jitter=0.0, heart_rate_jitter=0.0)
        >>> sampler.sample(["SBRAD"], rng=np.random.default_rng(0))
        PatientInfo(age=70.0, sex='F', heart_rate=51.0)
    """

    def __init__(
        self,
        classes: Sequence[str],
        targets,
        age=None,
        sex=None,
        heart_rate=None,
        *,
        age_override: Override = None,
        sex_override: str | None = None,
        heart_rate_override: Override = None,
        age_jitter: float = 2.0,
        heart_rate_jitter: float = 2.0,
    ):
        self.classes = list(classes)
        targets = np.asarray(targets)
        if targets.ndim != 2 or targets.shape[1] != len(self.classes):
            raise ValueError(f"targets should have shape (num_records, {len(self.classes)}), but got {targets.shape}")
        self.targets = targets > 0
        num_records = len(targets)
        self.age = self._column(age, "age", num_records, float)
        self.sex = self._sex_column(sex, num_records)
        self.heart_rate = self._column(heart_rate, "heart_rate", num_records, float)
        self.age_override = parse_override(age_override, "age")
        self.heart_rate_override = parse_override(heart_rate_override, "heart_rate")
        if sex_override is not None and sex_override not in ("M", "F"):
            raise ValueError(f"sex_override should be 'M' or 'F', but got {sex_override!r}")
        self.sex_override = sex_override
        if age_jitter < 0 or heart_rate_jitter < 0:
            raise ValueError(f"jitters should be >= 0, but got age_jitter={age_jitter}, heart_rate_jitter={heart_rate_jitter}")
        self.age_jitter = float(age_jitter)
        self.heart_rate_jitter = float(heart_rate_jitter)
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        self._candidates: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> "PatientSampler":
        """Build from a PTB-XL-like dataset: ``classes``, ``targets``, ``metadata[['age', 'sex']]``, ``heart_rates()``."""
        for attribute in ("classes", "targets", "metadata", "heart_rates"):
            if not hasattr(dataset, attribute):
                raise TypeError(
                    f"PatientSampler.from_dataset needs a dataset with `classes`, `targets`, `metadata` and "
                    f"`heart_rates()` (like ecgaug.data.ptbxl.PTBXL), but {type(dataset).__name__} has no `{attribute}`; "
                    "construct PatientSampler(classes, targets, age, sex, heart_rate) directly instead."
                )
        metadata = dataset.metadata
        return cls(
            dataset.classes,
            np.asarray(dataset.targets),
            age=metadata["age"].to_numpy(dtype=float),
            sex=metadata["sex"].to_numpy(dtype=object),
            heart_rate=np.asarray(dataset.heart_rates(), dtype=float),
            **kwargs,
        )

    @staticmethod
    def _column(values, name: str, num_records: int, dtype) -> np.ndarray | None:
        if values is None:
            return None
        values = np.asarray(values, dtype=dtype)
        if values.shape != (num_records,):
            raise ValueError(f"{name} should have shape ({num_records},), but got {values.shape}")
        return values

    @staticmethod
    def _sex_column(values, num_records: int) -> np.ndarray | None:
        if values is None:
            return None
        values = np.asarray(values, dtype=object)
        if values.shape != (num_records,):
            raise ValueError(f"sex should have shape ({num_records},), but got {values.shape}")
        known = np.array([value in ("M", "F") for value in values])
        unknown = {value for value in values[~known] if not (value is None or (isinstance(value, float) and math.isnan(value)))}
        if unknown:
            raise ValueError(f"sex should hold 'M', 'F' or None/NaN, but got {sorted(map(repr, unknown))}")
        values = values.copy()
        values[~known] = None
        return values

    def _known(self, field: str) -> np.ndarray:
        values = getattr(self, field)
        if values is None:
            return np.zeros(len(self.targets), dtype=bool)
        if field == "sex":
            return values != None  # noqa: E711 -- elementwise on an object array
        return ~np.isnan(values)

    def _candidate_records(self, labels: tuple[str, ...], constraint: HeartRateConstraint | None) -> np.ndarray:
        key = (labels, constraint)
        if key in self._candidates:
            return self._candidates[key]
        needed = np.ones(len(self.targets), dtype=bool)
        missing_fields = []
        for field, override in (("age", self.age_override), ("sex", self.sex_override), ("heart_rate", self.heart_rate_override)):
            if override is None:
                needed &= self._known(field)
                missing_fields.append(field)
        if constraint is not None and self.heart_rate_override is None:
            needed &= np.array([constraint.allows(rate) for rate in self.heart_rate])
        columns = [self._class_index[label] for label in labels]
        all_labels = self.targets[:, columns].all(axis=1) & needed
        candidates = np.flatnonzero(all_labels)
        if len(candidates) == 0:
            candidates = np.flatnonzero(self.targets[:, columns[0]] & needed)
        if len(candidates) == 0:
            wanted = ", ".join(missing_fields) + (f" and a {constraint}" if constraint is not None and self.heart_rate_override is None else "")
            overrides = ", ".join(f"{field}_override" for field in missing_fields)
            raise ValueError(
                f"No real record of class {labels[0]!r} has a known {wanted}, so patient information for "
                f"labels {list(labels)} cannot be drawn without inventing it. Pass {overrides} "
                "(a fixed value or a (low, high) range) to PatientSampler (or --age/--sex/--heart_rate to `ecgaug cache build`)."
            )
        self._candidates[key] = candidates
        return candidates

    def sample(self, labels: Sequence[str], *, rng: np.random.Generator, report: str = "") -> PatientInfo:
        """Draw the patient of one synthetic ECG with label set ``labels`` (primary label first)."""
        labels = tuple(labels)
        unknown = [label for label in labels if label not in self._class_index]
        if not labels or unknown:
            raise ValueError(f"labels should be a non-empty list of classes from {self.classes}, but got {list(labels)}")
        constraint = heart_rate_constraint(labels, report)
        record = None
        if self.age_override is None or self.sex_override is None or self.heart_rate_override is None:
            candidates = self._candidate_records(labels, constraint)
            record = int(candidates[rng.integers(len(candidates))])

        if self.age_override is None:
            age = min(max(float(self.age[record] + rng.normal(0.0, self.age_jitter)), AGE_RANGE[0]), AGE_RANGE[1])
        else:
            age = self._from_override(self.age_override, rng)
        sex = self.sex_override if self.sex_override is not None else str(self.sex[record])
        if self.heart_rate_override is None:
            real = float(self.heart_rate[record])
            heart_rate = real + float(rng.normal(0.0, self.heart_rate_jitter))
            if heart_rate <= 0 or (constraint is not None and not constraint.allows(heart_rate)):
                heart_rate = real
            heart_rate = min(max(heart_rate, HEART_RATE_RANGE[0]), HEART_RATE_RANGE[1])
        else:
            heart_rate = self._heart_rate_from_override(constraint, rng)
        return PatientInfo(age=age, sex=sex, heart_rate=heart_rate)

    @staticmethod
    def _from_override(override, rng: np.random.Generator) -> float:
        if isinstance(override, tuple):
            return float(rng.uniform(*override))
        return float(override)

    def _heart_rate_from_override(self, constraint: HeartRateConstraint | None, rng: np.random.Generator) -> float:
        override = self.heart_rate_override
        if constraint is None:
            return self._from_override(override, rng)
        if not isinstance(override, tuple):
            if not constraint.allows(override):
                raise ValueError(f"heart_rate override {override:g} bpm contradicts the required {constraint}.")
            return float(override)
        low, high = max(override[0], constraint.low), min(override[1], constraint.high)
        if not low < high:
            raise ValueError(f"heart_rate override range {override} does not intersect the required {constraint}.")
        # Uniform on the open interval: redraw the (measure-zero) excluded endpoints.
        while True:
            value = float(rng.uniform(low, high))
            if constraint.allows(value):
                return value

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_records={len(self.targets)}, classes={self.classes}, "
            f"age_override={self.age_override}, sex_override={self.sex_override!r}, "
            f"heart_rate_override={self.heart_rate_override}, age_jitter={self.age_jitter}, "
            f"heart_rate_jitter={self.heart_rate_jitter})"
        )
