"""The generation plan: how many synthetic ECGs each class needs, and exactly which ones.

A :class:`GenerationPlan` is a deterministic table of *jobs*, one row per synthetic ECG::

    index  labels      report                         age   sex  heart_rate  seed
    0      MI|STTC     "inferior myocardial infarc…"  67.3  M    81.2        5120…
    1      HYP         "left ventricular hypertro…"   58.9  F    70.4        9331…

Everything that decides the ECG is fixed up front (the per-ECG diffusion ``seed`` comes from
``(plan seed, index)``), so a resumed build, or a build split across ``torchrun`` ranks,
produces exactly the same records as one uninterrupted run.

Counting is multi-label aware: a real record with several positive labels counts for each,
and a synthetic job with several labels (drawn from a real record's label set, see
``co_occurrence``) fills the deficit of each of them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .patients import PatientSampler

__all__ = [
    "GenerationPlan",
    "PlanConfig",
    "ReportSource",
    "job_seed",
    "label_counts",
    "make_plan",
    "synthetic_counts",
    "to_multi_hot",
]

PLAN_FORMAT = "ecgaug-plan/1"
LABEL_SEPARATOR = "|"
JOB_COLUMNS = ("index", "labels", "report", "age", "sex", "heart_rate", "seed")


class ReportSource(Protocol):
    """Anything that writes a report for a class, e.g. ``ecgaug.text.reports.ReportTemplater``."""

    def report_for_class(self, label: str, *, rng: np.random.Generator, co_occurring: Sequence[str] | None = None) -> str:
        ...


@dataclass
class PlanConfig:
    """How many synthetic ECGs each class gets.

    Args:
        strategy: ``"balance"``: top every class up to the largest class's count.
            ``"target"``: top every class up to ``target_count``.
            ``"ratio"``: top every class up to ``ratio`` x the largest class's count.
            A class already at or above its goal gets no synthetic ECGs.
        target_count: Goal per class for ``strategy="target"``.
        ratio: Fraction (> 0) of the largest class for ``strategy="ratio"``.
        co_occurrence: ``"real"``: a job for class ``c`` copies the label set of a random real record
            of ``c``, restricted to classes that still need ECGs, so label combinations stay realistic.
            ``"none"``: every job has exactly one label (use this for single-label data sets).
        classes: Only these classes get synthetic ECGs (``None``: all).
        seed: Seed of the whole plan: label sets, reports, patients and per-ECG diffusion seeds.
    """

    strategy: Literal["balance", "target", "ratio"] = "balance"
    target_count: int | None = None
    ratio: float | None = None
    co_occurrence: Literal["real", "none"] = "real"
    classes: Sequence[str] | None = None
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in ("balance", "target", "ratio"):
            raise ValueError(f"strategy should be one of 'balance', 'target', 'ratio', but got {self.strategy!r}")
        if self.strategy == "target" and (self.target_count is None or self.target_count < 0):
            raise ValueError(f"strategy='target' needs target_count >= 0, but got target_count={self.target_count}")
        if self.strategy == "ratio" and (self.ratio is None or not self.ratio > 0):
            raise ValueError(f"strategy='ratio' needs ratio > 0, but got ratio={self.ratio}")
        if self.strategy != "target" and self.target_count is not None:
            raise ValueError(f"target_count is only used with strategy='target', but strategy={self.strategy!r}")
        if self.strategy != "ratio" and self.ratio is not None:
            raise ValueError(f"ratio is only used with strategy='ratio', but strategy={self.strategy!r}")
        if self.co_occurrence not in ("real", "none"):
            raise ValueError(f"co_occurrence should be 'real' or 'none', but got {self.co_occurrence!r}")
        if self.classes is not None:
            self.classes = list(self.classes)


def to_multi_hot(targets, num_classes: int) -> np.ndarray:
    """``(N, C)`` bool labels from multi-hot ``(N, C)`` targets or ``(N,)`` integer class indices."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"1-D targets should be integer class indices, but got dtype {targets.dtype}")
        if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
            raise ValueError(f"class indices should lie in [0, {num_classes}), but got [{targets.min()}, {targets.max()}]")
        multi_hot = np.zeros((len(targets), num_classes), dtype=bool)
        multi_hot[np.arange(len(targets)), targets] = True
        return multi_hot
    if targets.ndim != 2 or targets.shape[1] != num_classes:
        raise ValueError(f"targets should have shape (N, {num_classes}) or (N,), but got {targets.shape}")
    return targets > 0


def label_counts(targets, num_classes: int) -> np.ndarray:
    """``(C,)`` number of records positive for each class (a multi-label record counts for each)."""
    return to_multi_hot(targets, num_classes).sum(axis=0).astype(np.int64)


def synthetic_counts(real_counts: np.ndarray, config: PlanConfig, classes: Sequence[str]) -> np.ndarray:
    """``(C,)`` synthetic ECGs each class needs to reach the goal set by ``config``."""
    real_counts = np.asarray(real_counts, dtype=np.int64)
    if config.strategy == "balance":
        goal = int(real_counts.max(initial=0))
    elif config.strategy == "target":
        goal = int(config.target_count)
    else:
        goal = int(np.ceil(config.ratio * real_counts.max(initial=0)))
    needed = np.clip(goal - real_counts, 0, None)
    if config.classes is not None:
        unknown = set(config.classes) - set(classes)
        if unknown:
            raise ValueError(f"PlanConfig.classes should be a subset of {list(classes)}, but has {sorted(unknown)}")
        needed[[name not in config.classes for name in classes]] = 0
    return needed


def job_seed(plan_seed: int, index: int) -> int:
    """The diffusion seed (63-bit, so collisions among millions of jobs are negligible) of job ``index``."""
    state = np.random.SeedSequence([int(plan_seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


class GenerationPlan:
    """A table of synthetic-ECG jobs (see the module docstring) and the classes its labels refer to.

    Args:
        jobs: DataFrame with columns ``index`` (0..N-1, in order), ``labels`` (class names joined by
            ``"|"``, primary label first), ``report``, ``age``, ``sex``, ``heart_rate``, ``seed``.
        classes: All class names of the wrapped data set, in its target order.
        info: Free-form JSON-able description (config, counts) saved with the plan.
    """

    def __init__(self, jobs: pd.DataFrame, classes: Sequence[str], info: dict | None = None):
        missing = [column for column in JOB_COLUMNS if column not in jobs.columns]
        if missing:
            raise ValueError(f"jobs should have columns {list(JOB_COLUMNS)}, but misses {missing}")
        jobs = jobs.loc[:, list(JOB_COLUMNS)].reset_index(drop=True)
        if not np.array_equal(jobs["index"].to_numpy(), np.arange(len(jobs))):
            raise ValueError("jobs['index'] should be 0, 1, ..., len(jobs) - 1 in order")
        self.jobs = jobs.astype({"index": np.int64, "age": float, "heart_rate": float, "seed": np.int64})
        self.classes = list(classes)
        self.info = dict(info or {})
        known = set(self.classes)
        for labels in set(self.jobs["labels"]):
            unknown = set(labels.split(LABEL_SEPARATOR)) - known
            if unknown:
                raise ValueError(f"job labels {labels!r} name classes {sorted(unknown)} that are not in classes {self.classes}")

    def __len__(self) -> int:
        return len(self.jobs)

    def label_sets(self) -> list[tuple[str, ...]]:
        return [tuple(labels.split(LABEL_SEPARATOR)) for labels in self.jobs["labels"]]

    @property
    def targets(self) -> np.ndarray:
        """``(N, C)`` float32 multi-hot labels of the jobs, in ``classes`` order."""
        return labels_to_multi_hot(self.jobs["labels"], self.classes)

    def counts(self) -> dict[str, int]:
        """Synthetic ECGs per class (a multi-label job counts for each of its labels)."""
        return dict(zip(self.classes, self.targets.sum(axis=0).astype(int).tolist()))

    def to_jsonl(self) -> str:
        header = {"format": PLAN_FORMAT, "classes": self.classes, "info": self.info}
        lines = [json.dumps(header)]
        for row in self.jobs.itertuples(index=False):
            lines.append(
                json.dumps(
                    {
                        "index": int(row.index),
                        "labels": row.labels,
                        "report": row.report,
                        "age": float(row.age),
                        "sex": row.sex,
                        "heart_rate": float(row.heart_rate),
                        "seed": int(row.seed),
                    },
                    allow_nan=False,
                )
            )
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        """sha256 of the classes and jobs: two plans with the same fingerprint produce the same ECGs."""
        content = json.dumps({"classes": self.classes}) + "\n" + "\n".join(self.to_jsonl().splitlines()[1:])
        return hashlib.sha256(content.encode()).hexdigest()

    def save(self, path) -> None:
        """Write the plan as JSON lines (a header line, then one line per job)."""
        Path(path).write_text(self.to_jsonl())

    @classmethod
    def load(cls, path) -> "GenerationPlan":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No plan file at {path}; write one with GenerationPlan.save or `ecgaug cache build`.")
        with open(path) as handle:
            header = json.loads(handle.readline())
            if header.get("format") != PLAN_FORMAT:
                raise ValueError(f"{path} should be an ecgaug plan (format {PLAN_FORMAT!r}), but has format {header.get('format')!r}")
            rows = [json.loads(line) for line in handle if line.strip()]
        jobs = pd.DataFrame(rows, columns=list(JOB_COLUMNS))
        return cls(jobs, header["classes"], header.get("info"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_jobs={len(self)}, classes={self.classes})"


def labels_to_multi_hot(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32 multi-hot from ``"|"``-joined label strings."""
    column = {name: i for i, name in enumerate(classes)}
    multi_hot = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, joined in enumerate(labels):
        for label in joined.split(LABEL_SEPARATOR):
            multi_hot[row, column[label]] = 1.0
    return multi_hot


def _label_sets(real: np.ndarray, needed: np.ndarray, co_occurrence: str, rng: np.random.Generator) -> list[list[int]]:
    """Greedy label sets: always serve the class with the largest remaining deficit."""
    remaining = needed.copy()
    records_of = [np.flatnonzero(real[:, c]) for c in range(real.shape[1])]
    label_sets = []
    while remaining.max(initial=0) > 0:
        primary = int(np.argmax(remaining))
        labels = [primary]
        if co_occurrence == "real" and len(records_of[primary]):
            record = records_of[primary][rng.integers(len(records_of[primary]))]
            labels += [int(c) for c in np.flatnonzero(real[record]) if c != primary and remaining[c] > 0]
        remaining[labels] -= 1
        label_sets.append(labels)
    return label_sets


def make_plan(
    targets,
    classes: Sequence[str],
    *,
    reports: ReportSource,
    patients: PatientSampler,
    config: PlanConfig | None = None,
    show_progress: bool = False,
) -> GenerationPlan:
    """Plan the synthetic ECGs that bring a data set's classes to the goal of ``config``.

    Args:
        targets: ``(N, C)`` multi-hot or ``(N,)`` integer labels of the real data set.
        classes: The ``C`` class names in target order.
        reports: Writes the report of each job (``report_for_class(primary, rng=, co_occurring=)``).
        patients: Draws each job's age, sex and heart rate (see :class:`PatientSampler`).
        config: The counting strategy and seed; defaults to ``PlanConfig()`` (balance to the largest class).
        show_progress: Show a tqdm bar while writing reports and patients.

    Returns:
        The plan; ``plan.info`` records the config and the real and synthetic counts per class.
    """
    config = config or PlanConfig()
    classes = list(classes)
    real = to_multi_hot(targets, len(classes))
    if list(patients.classes) != classes:
        raise ValueError(f"patients.classes should equal classes {classes}, but got {patients.classes}")
    real_counts = real.sum(axis=0)
    needed = synthetic_counts(real_counts, config, classes)
    rng = np.random.default_rng([config.seed, 0])
    label_sets = _label_sets(real, needed, config.co_occurrence, rng)

    rows = []
    for index, labels in enumerate(tqdm(label_sets, desc="planning", disable=not show_progress)):
        names = [classes[c] for c in labels]
        job_rng = np.random.default_rng([config.seed, 1, index])
        report = reports.report_for_class(names[0], rng=job_rng, co_occurring=names[1:] or None)
        patient = patients.sample(names, rng=job_rng, report=report)
        rows.append((index, LABEL_SEPARATOR.join(names), report, patient.age, patient.sex, patient.heart_rate, job_seed(config.seed, index)))
    jobs = pd.DataFrame(rows, columns=list(JOB_COLUMNS))
    info = {
        "config": asdict(config),
        "real_counts": dict(zip(classes, real_counts.astype(int).tolist())),
        "needed_counts": dict(zip(classes, needed.astype(int).tolist())),
    }
    return GenerationPlan(jobs, classes, info)
