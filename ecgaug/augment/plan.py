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

Two kinds of plans share one job loop (:func:`make_plan`):

* a *deficit* plan (``strategy="balance" | "target" | "ratio"``) tops every class up to a goal;
* a *pool* (``strategy="per_class"``) holds ``per_class`` jobs per class, each copying the label
  set of a random real record of the class; :func:`select_from_pool` then takes from it what a
  training subset needs (several subsets, e.g. of a data-scarcity experiment, share one cache).

``report_codes="frequency"`` picks each class's member code with its frequency in the real
records (:class:`FrequencyWeightedReports`), so a class's reports follow its real mix of codes.

``seed_ecgs=True`` plans *real-guided* generation (SDEdit / img2img): each job also records
``seed_index``, the index (in the wrapped data set) of the real record whose label set it copies,
and the builder starts that job's diffusion from the record's signal, noised part-way
(``GenerationSettings.strength`` < 1). The plan records which data set the seeds index
(``info["seed_source"]``: split, folds, number of records and a hash of their ids, see
:func:`seed_source`), so a build against other records, or a seed from a held-out split, is refused.
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
    "FrequencyWeightedReports",
    "GenerationPlan",
    "PlanConfig",
    "ReportSource",
    "job_record",
    "job_seed",
    "label_counts",
    "make_plan",
    "primary_labels",
    "seed_source",
    "select_from_pool",
    "synthetic_counts",
    "to_multi_hot",
]

PLAN_FORMAT = "ecgaug-plan/1"
LABEL_SEPARATOR = "|"
JOB_COLUMNS = ("index", "labels", "report", "age", "sex", "heart_rate", "seed")
SEED_COLUMN = "seed_index"  # only in plans with seed ECGs (PlanConfig.seed_ecgs), after JOB_COLUMNS
HELD_OUT_SPLITS = ("val", "test", "all")  # named PTB-XL splits whose records must never seed training ECGs


class ReportSource(Protocol):
    """Anything that writes a report for a class, e.g. ``ecgaug.text.reports.ReportTemplater``."""

    def report_for_class(self, label: str, *, rng: np.random.Generator, co_occurring: Sequence[str] | None = None) -> str:
        ...


STRATEGIES = ("balance", "target", "ratio", "per_class")


@dataclass
class PlanConfig:
    """How many synthetic ECGs each class gets, and how their reports are written.

    Args:
        strategy: ``"balance"``: top every class up to the largest class's count.
            ``"target"``: top every class up to ``target_count``.
            ``"ratio"``: top every class up to ``ratio`` x the largest class's count.
            A class already at or above its goal gets no synthetic ECGs.
            ``"per_class"``: a pool of ``per_class`` jobs whose primary (first) label is each class,
            whatever the real counts; take a subset's share with :func:`select_from_pool`.
        target_count: Goal per class for ``strategy="target"``.
        ratio: Fraction (> 0) of the largest class for ``strategy="ratio"``.
        per_class: Jobs per class for ``strategy="per_class"``.
        co_occurrence: ``"real"``: a job for class ``c`` copies the label set of a random real record
            of ``c`` (deficit strategies: restricted to classes that still need ECGs), so label
            combinations stay realistic. ``"none"``: every job has exactly one label (single-label data).
        classes: Only these classes get synthetic ECGs (``None``: all).
        report_codes: ``"uniform"``: each class's member codes (e.g. the SCP statements of a
            superclass) are picked uniformly. ``"frequency"``: with their frequency in the real
            records (needs ``scp_codes`` in :func:`make_plan`), so rare codes stay rare.
        seed: Seed of the whole plan: label sets, reports, patients and per-ECG diffusion seeds.
        seed_ecgs: Real-guided generation: each job records ``seed_index``, the real record whose label
            set it copies (with ``co_occurrence="none"``, or a deficit strategy that drops labels of
            classes already at their goal, a record of the job's primary class whose labels may be more),
            and is generated from that record's signal (``strength`` < 1 in the build settings).
            :func:`make_plan` then needs ``seed_source``.
    """

    strategy: Literal["balance", "target", "ratio", "per_class"] = "balance"
    target_count: int | None = None
    ratio: float | None = None
    per_class: int | None = None
    co_occurrence: Literal["real", "none"] = "real"
    classes: Sequence[str] | None = None
    report_codes: Literal["uniform", "frequency"] = "uniform"
    seed: int = 0
    seed_ecgs: bool = False

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy should be one of {', '.join(map(repr, STRATEGIES))}, but got {self.strategy!r}")
        if self.strategy == "target" and (self.target_count is None or self.target_count < 0):
            raise ValueError(f"strategy='target' needs target_count >= 0, but got target_count={self.target_count}")
        if self.strategy == "ratio" and (self.ratio is None or not self.ratio > 0):
            raise ValueError(f"strategy='ratio' needs ratio > 0, but got ratio={self.ratio}")
        if self.strategy == "per_class" and (self.per_class is None or isinstance(self.per_class, bool) or self.per_class < 1):
            raise ValueError(f"strategy='per_class' needs per_class >= 1, but got per_class={self.per_class}")
        for name, strategy in (("target_count", "target"), ("ratio", "ratio"), ("per_class", "per_class")):
            if self.strategy != strategy and getattr(self, name) is not None:
                raise ValueError(f"{name} is only used with strategy={strategy!r}, but strategy={self.strategy!r}")
        if self.co_occurrence not in ("real", "none"):
            raise ValueError(f"co_occurrence should be 'real' or 'none', but got {self.co_occurrence!r}")
        if self.report_codes not in ("uniform", "frequency"):
            raise ValueError(f"report_codes should be 'uniform' or 'frequency', but got {self.report_codes!r}")
        if not isinstance(self.seed_ecgs, bool):
            raise TypeError(f"seed_ecgs should be True or False, but got {self.seed_ecgs!r}")
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
    if config.strategy == "per_class":
        raise ValueError("strategy='per_class' plans a pool, not a deficit; use make_plan, then select_from_pool")
    if config.strategy == "balance":
        goal = int(real_counts.max(initial=0))
    elif config.strategy == "target":
        goal = int(config.target_count)
    else:
        goal = int(np.ceil(config.ratio * real_counts.max(initial=0)))
    needed = np.clip(goal - real_counts, 0, None)
    needed[~_allowed_classes(config, classes)] = 0
    return needed


def _allowed_classes(config: PlanConfig, classes: Sequence[str]) -> np.ndarray:
    """``(C,)`` bool: the classes ``config`` lets get synthetic ECGs."""
    if config.classes is None:
        return np.ones(len(classes), dtype=bool)
    unknown = set(config.classes) - set(classes)
    if unknown:
        raise ValueError(f"PlanConfig.classes should be a subset of {list(classes)}, but has {sorted(unknown)}")
    return np.array([name in config.classes for name in classes], dtype=bool)


def job_seed(plan_seed: int, index: int) -> int:
    """The diffusion seed (63-bit, so collisions among millions of jobs are negligible) of job ``index``."""
    state = np.random.SeedSequence([int(plan_seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


class GenerationPlan:
    """A table of synthetic-ECG jobs (see the module docstring) and the classes its labels refer to.

    Args:
        jobs: DataFrame with columns ``index`` (0..N-1, in order), ``labels`` (class names joined by
            ``"|"``, primary label first), ``report``, ``age``, ``sex``, ``heart_rate``, ``seed``, and
            for real-guided plans ``seed_index`` (the seed record's index in the data set of ``info["seed_source"]``).
        classes: All class names of the wrapped data set, in its target order.
        info: Free-form JSON-able description (config, counts) saved with the plan; a plan with
            ``seed_index`` needs ``info["seed_source"]`` (:func:`seed_source`).
    """

    def __init__(self, jobs: pd.DataFrame, classes: Sequence[str], info: dict | None = None):
        missing = [column for column in JOB_COLUMNS if column not in jobs.columns]
        if missing:
            raise ValueError(f"jobs should have columns {list(JOB_COLUMNS)}, but misses {missing}")
        self.info = dict(info or {})
        columns = list(JOB_COLUMNS) + ([SEED_COLUMN] if SEED_COLUMN in jobs.columns else [])
        jobs = jobs.loc[:, columns].reset_index(drop=True)
        if not np.array_equal(jobs["index"].to_numpy(), np.arange(len(jobs))):
            raise ValueError("jobs['index'] should be 0, 1, ..., len(jobs) - 1 in order")
        kinds = {"index": np.int64, "age": float, "heart_rate": float, "seed": np.int64}
        if SEED_COLUMN in jobs.columns:
            source = self.info.get("seed_source")
            if not isinstance(source, dict) or not isinstance(source.get("num_records"), int):
                raise ValueError("a plan with seed_index should record its seed data set as info['seed_source'] (see seed_source()), "
                                 f"but has {source!r}")  # fmt: skip
            seeds = pd.to_numeric(jobs[SEED_COLUMN], errors="coerce").to_numpy(dtype=float)
            if len(seeds) and (not np.isfinite(seeds).all() or (seeds != np.round(seeds)).any() or seeds.min() < 0
                               or seeds.max() >= source["num_records"]):  # fmt: skip
                raise ValueError(f"seed_index should hold record indices in [0, {source['num_records']}) of the seed data set, "
                                 f"but ranges over [{np.nanmin(seeds):g}, {np.nanmax(seeds):g}]")  # fmt: skip
            kinds[SEED_COLUMN] = np.int64
        self.jobs = jobs.astype(kinds)
        self.classes = list(classes)
        known = set(self.classes)
        for labels in set(self.jobs["labels"]):
            unknown = set(labels.split(LABEL_SEPARATOR)) - known
            if unknown:
                raise ValueError(f"job labels {labels!r} name classes {sorted(unknown)} that are not in classes {self.classes}")

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def has_seeds(self) -> bool:
        """Whether the jobs are real-guided (each has a ``seed_index``)."""
        return SEED_COLUMN in self.jobs.columns

    @property
    def seed_source(self) -> dict | None:
        """The seed data set's description (:func:`seed_source`), or None for a plan without seed ECGs."""
        return self.info.get("seed_source") if self.has_seeds else None

    def label_sets(self) -> list[tuple[str, ...]]:
        return [tuple(labels.split(LABEL_SEPARATOR)) for labels in self.jobs["labels"]]

    @property
    def targets(self) -> np.ndarray:
        """``(N, C)`` float32 multi-hot labels of the jobs, in ``classes`` order."""
        return labels_to_multi_hot(self.jobs["labels"], self.classes)

    def counts(self) -> dict[str, int]:
        """Synthetic ECGs per class (a multi-label job counts for each of its labels)."""
        return dict(zip(self.classes, self.targets.sum(axis=0).astype(int).tolist()))

    def job_records(self, start: int = 0, stop: int | None = None) -> list[dict]:
        """Jobs ``[start, stop)`` as JSON-able dicts (:func:`job_record`), as written to ``plan.jsonl`` and shard parts."""
        return [job_record(row) for row in self.jobs.iloc[start:stop].itertuples(index=False)]

    def to_jsonl(self) -> str:
        header = {"format": PLAN_FORMAT, "classes": self.classes, "info": self.info}
        lines = [json.dumps(header)] + [json.dumps(record, allow_nan=False) for record in self.job_records()]
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        """sha256 of the classes and jobs (and the seed data set): two plans with the same fingerprint produce the same ECGs."""
        head = {"classes": self.classes}
        if self.has_seeds:
            head["seed_source"] = self.info["seed_source"]
        content = json.dumps(head) + "\n" + "\n".join(self.to_jsonl().splitlines()[1:])
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
        seeded = any(SEED_COLUMN in row for row in rows)
        if seeded and not all(SEED_COLUMN in row for row in rows):
            raise ValueError(f"{path}: some jobs have a seed_index and others not")
        jobs = pd.DataFrame(rows, columns=list(JOB_COLUMNS) + ([SEED_COLUMN] if seeded else []))
        return cls(jobs, header["classes"], header.get("info"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_jobs={len(self)}, classes={self.classes})"


def job_record(row) -> dict:
    """One job (a plan row: namedtuple, Series or dict) as a JSON-able dict with exact, round-trippable values.

    The one serializer of job rows: ``plan.jsonl``, shard parts and the manifest all use it.
    """
    get = row.get if isinstance(row, dict) else (lambda key: getattr(row, key, None))
    kinds = {"index": int, "labels": str, "report": str, "age": float, "sex": str, "heart_rate": float, "seed": int}
    record = {column: kinds[column](get(column)) for column in JOB_COLUMNS}
    if get(SEED_COLUMN) is not None:  # real-guided plans only, so other plans keep their records (and fingerprints)
        record[SEED_COLUMN] = int(get(SEED_COLUMN))
    return record


def labels_to_multi_hot(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32 multi-hot from ``"|"``-joined label strings."""
    column = {name: i for i, name in enumerate(classes)}
    multi_hot = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, joined in enumerate(labels):
        for label in joined.split(LABEL_SEPARATOR):
            multi_hot[row, column[label]] = 1.0
    return multi_hot


def _deficit_label_sets(real: np.ndarray, needed: np.ndarray, co_occurrence: str, rng: np.random.Generator,
                        seeded: bool = False) -> tuple[list[list[int]], list[int]]:  # fmt: skip
    """Greedy label sets: always serve the class with the largest remaining deficit.

    Returns the label sets and, per set, the real record drawn for it (-1 where none was drawn;
    ``seeded`` draws one for every set, so each job has a seed record of its primary class).
    """
    remaining = needed.copy()
    records_of = [np.flatnonzero(real[:, c]) for c in range(real.shape[1])]
    label_sets, records = [], []
    while remaining.max(initial=0) > 0:
        primary = int(np.argmax(remaining))
        labels = [primary]
        record = -1
        if (co_occurrence == "real" or seeded) and len(records_of[primary]):
            record = int(records_of[primary][rng.integers(len(records_of[primary]))])
            if co_occurrence == "real":
                labels += [int(c) for c in np.flatnonzero(real[record]) if c != primary and remaining[c] > 0]
        remaining[labels] -= 1
        label_sets.append(labels)
        records.append(record)
    return label_sets, records


def _pool_label_sets(real: np.ndarray, classes: Sequence[str], allowed: np.ndarray, per_class: int, co_occurrence: str,
                     rng: np.random.Generator) -> tuple[list[list[int]], list[int]]:  # fmt: skip
    """``per_class`` label sets per allowed class (class by class), each copying a random real record's labels.

    Returns the label sets and the real record drawn for each.
    """
    label_sets, chosen = [], []
    for c, name in enumerate(classes):
        if not allowed[c]:
            continue
        records = np.flatnonzero(real[:, c])
        if len(records) == 0:
            raise ValueError(f"Class {name!r} has no positive real record, so the pool cannot copy a label set for it")
        for record in rng.choice(records, size=per_class):
            others = [int(o) for o in np.flatnonzero(real[record]) if o != c] if co_occurrence == "real" else []
            label_sets.append([c] + others)
            chosen.append(int(record))
    return label_sets, chosen


class FrequencyWeightedReports:
    """``report_for_class`` of a :class:`~ecgaug.text.reports.ReportTemplater`, picking each class's member
    code with its frequency in the real records (uniform picking would write, e.g., as many rare
    posterior-MI reports as common inferior-MI ones).

    Args:
        templater: The templater (its ``task`` set to the data set's task); needs ``label_statistics``
            and ``report_for_class(..., code_counts=)``.
        scp_codes: The real records' ``scp_codes`` dicts (e.g. ``PTBXL(...).metadata["scp_codes"]``).
        classes: The class labels to prepare.

    Raises:
        ValueError: naming a class no real record carries a code of.
    """

    def __init__(self, templater, scp_codes: Sequence[dict], classes: Sequence[str]):
        self.templater = templater
        self.code_counts = {}
        for label in classes:
            statistics = templater.label_statistics(scp_codes, label)
            if statistics.num_records == 0:
                raise ValueError(f"No real record carries a code of class {label!r}, so no report can be templated for it")
            self.code_counts[label] = statistics.code_counts

    def report_for_class(self, label: str, *, rng: np.random.Generator, co_occurring: Sequence[str] | None = None) -> str:
        return self.templater.report_for_class(label, rng=rng, code_counts=self.code_counts[label], co_occurring=co_occurring)


def make_plan(
    targets,
    classes: Sequence[str],
    *,
    reports: ReportSource,
    patients: PatientSampler,
    config: PlanConfig | None = None,
    scp_codes: Sequence[dict] | None = None,
    seed_source: dict | None = None,
    show_progress: bool = False,
) -> GenerationPlan:
    """Plan the synthetic ECGs of ``config``: the deficit to a goal, or a per-class pool.

    Args:
        targets: ``(N, C)`` multi-hot or ``(N,)`` integer labels of the real data set.
        classes: The ``C`` class names in target order.
        reports: Writes the report of each job (``report_for_class(primary, rng=, co_occurring=)``), e.g. a
            :class:`~ecgaug.text.reports.ReportTemplater`.
        patients: Draws each job's age, sex and heart rate (see :class:`PatientSampler`).
        config: The counting strategy, report codes and seed; defaults to ``PlanConfig()`` (balance to the largest class).
        scp_codes: The real records' code dicts, for ``config.report_codes="frequency"``.
        seed_source: For ``config.seed_ecgs``: the description (:func:`seed_source`) of the data set whose
            records ``targets`` are, in the same order; each job's ``seed_index`` indexes it.
        show_progress: Show a tqdm bar while writing reports and patients.

    Returns:
        The plan; ``plan.info`` records the config and the real (and, for deficit strategies, needed) counts per
        class, and with seed ECGs the ``seed_source``.

    Raises:
        ValueError: if ``config.seed_ecgs`` without a ``seed_source`` of ``len(targets)`` records (or ``seed_source``
            without ``seed_ecgs``), or a class that needs seed ECGs has no real record.
    """
    config = config or PlanConfig()
    classes = list(classes)
    real = to_multi_hot(targets, len(classes))
    if list(patients.classes) != classes:
        raise ValueError(f"patients.classes should equal classes {classes}, but got {patients.classes}")
    real_counts = real.sum(axis=0)
    rng = np.random.default_rng([config.seed, 0])
    info = {"config": asdict(config), "real_counts": dict(zip(classes, real_counts.astype(int).tolist()))}
    if config.seed_ecgs:
        if not isinstance(seed_source, dict) or seed_source.get("num_records") != len(real):
            raise ValueError(f"PlanConfig(seed_ecgs=True) needs seed_source= (seed_source(dataset)) describing the {len(real)} "
                             f"records of targets, but got {seed_source!r}")  # fmt: skip
        info["seed_source"] = dict(seed_source)
    elif seed_source is not None:
        raise ValueError("seed_source is only used with PlanConfig(seed_ecgs=True)")
    if config.strategy == "per_class":
        label_sets, records = _pool_label_sets(real, classes, _allowed_classes(config, classes), config.per_class,
                                               config.co_occurrence, rng)  # fmt: skip
    else:
        needed = synthetic_counts(real_counts, config, classes)
        label_sets, records = _deficit_label_sets(real, needed, config.co_occurrence, rng, seeded=config.seed_ecgs)
        info["needed_counts"] = dict(zip(classes, needed.astype(int).tolist()))
    if config.seed_ecgs:
        unseeded = sorted({classes[labels[0]] for labels, record in zip(label_sets, records) if record < 0})
        if unseeded:
            raise ValueError(f"Classes {unseeded} need synthetic ECGs but have no real record to seed them (seed_ecgs=True)")
    if config.report_codes == "frequency":
        if scp_codes is None:
            raise ValueError("report_codes='frequency' needs scp_codes (the real records' code dicts) to count codes")
        if len(scp_codes) != len(real):
            raise ValueError(f"scp_codes should have one dict per real record ({len(real)}), but has {len(scp_codes)}")
        primaries = sorted({labels[0] for labels in label_sets})
        reports = FrequencyWeightedReports(reports, scp_codes, [classes[c] for c in primaries])

    rows = []
    for index, labels in enumerate(tqdm(label_sets, desc="planning", disable=not show_progress)):
        names = [classes[c] for c in labels]
        job_rng = np.random.default_rng([config.seed, 1, index])
        report = reports.report_for_class(names[0], rng=job_rng, co_occurring=names[1:] or None)
        patient = patients.sample(names, rng=job_rng, report=report)
        rows.append((index, LABEL_SEPARATOR.join(names), report, patient.age, patient.sex, patient.heart_rate, job_seed(config.seed, index)))
    jobs = pd.DataFrame(rows, columns=list(JOB_COLUMNS))
    if config.seed_ecgs:
        jobs[SEED_COLUMN] = np.asarray(records, dtype=np.int64)
    return GenerationPlan(jobs, classes, info)


def _record_ids(dataset) -> tuple[list, str]:
    """The ids of ``dataset``'s records in order, and what they are (PTB-XL ``ecg_id``, or a hash of each target row)."""
    base, rows = dataset, None
    if isinstance(dataset, _subset_types()):
        base, rows = dataset.dataset, [int(i) for i in dataset.indices]
    metadata = getattr(base, "metadata", None)
    if isinstance(metadata, pd.DataFrame) and "ecg_id" in metadata.columns:
        ids = metadata["ecg_id"].astype(int).tolist()
        kind = "ecg_id"
    else:
        targets = getattr(base, "targets", None)
        if targets is None:
            raise ValueError(f"the seed data set ({type(base).__name__}) should have metadata['ecg_id'] or targets, "
                             "so that a build can check it holds the planned seed records")  # fmt: skip
        ids = [hashlib.sha256(np.ascontiguousarray(row, dtype=np.float32).tobytes()).hexdigest()[:16] for row in np.asarray(targets)]
        kind = "targets"
    return (ids if rows is None else [ids[i] for i in rows]), kind


def _subset_types() -> tuple[type, ...]:
    from torch.utils.data import Subset

    return (Subset,)


def seed_source(dataset, *, held_out_folds: Sequence[int] = ()) -> dict:
    """Describe the data set whose records seed a real-guided plan (``PlanConfig(seed_ecgs=True)``).

    Args:
        dataset: The wrapped training data set (e.g. ``PTBXL(root, "train")``, or a ``torch.utils.data.Subset``
            of one); its items' signals are the seeds.
        held_out_folds: Folds no seed may come from (validation and test folds of an experiment).

    Returns:
        ``{"split", "folds", "num_records", "ids", "ids_sha256"}``: the PTB-XL split name and ``strat_fold``
        values (None where the data set has none), its size, what its record ids are (``"ecg_id"``, or
        ``"targets"``: a hash of each target row) and the sha256 of the ids in order.

    Raises:
        ValueError: if the data set is a held-out split (``"val"``, ``"test"``, or ``"all"``, which holds
            them), or has records of ``held_out_folds``: synthetic training ECGs must not be made from them.
    """
    base = dataset.dataset if isinstance(dataset, _subset_types()) else dataset
    split = getattr(base, "split", None)
    folds = getattr(base, "folds", None)
    folds = None if folds is None else sorted(int(f) for f in folds)
    if split in HELD_OUT_SPLITS:
        raise ValueError(f"seed ECGs should come from the training split, but the seed data set is split {split!r} "
                         f"(folds {folds}); its records would leak into synthetic training ECGs")  # fmt: skip
    held = sorted(set(folds or ()) & {int(f) for f in held_out_folds})
    if held:
        raise ValueError(f"seed ECGs should come from training folds only, but the seed data set has folds {folds}, "
                         f"including the held-out folds {held}")  # fmt: skip
    ids, kind = _record_ids(dataset)
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    return {"split": split, "folds": folds, "num_records": len(ids), "ids": kind, "ids_sha256": digest}


def primary_labels(plan: GenerationPlan) -> np.ndarray:
    """``(N,)`` class index (in ``plan.classes``) of each job's primary (first) label."""
    column = {name: i for i, name in enumerate(plan.classes)}
    return np.array([column[labels.split(LABEL_SEPARATOR)[0]] for labels in plan.jobs["labels"]], dtype=np.int64)


def select_from_pool(pool_targets, pool_primary, real_counts, *, synthetic_per_real: float, allowed=None,
                     seed: int = 0) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Choose a training subset's synthetic ECGs from a pool (``strategy="per_class"``).

    Class ``c`` wants ``min(max(real_counts) - real_counts[c], floor(synthetic_per_real * real_counts[c]))``
    (zero where ``allowed[c]`` is False). Greedily, the class with the largest remaining want takes its next
    pool ECG (primary label ``c``, in a seeded order); that ECG counts for each of its labels. A class whose
    pool runs out stops there (reported as ``shortfall``).

    Args:
        pool_targets: ``(P, C)`` multi-hot labels of the pool (``plan.targets`` or ``cache.targets()``).
        pool_primary: ``(P,)`` primary class index of each pool ECG (:func:`primary_labels`).
        real_counts: ``(C,)`` positive real records of the subset.
        synthetic_per_real: Cap per class, relative to its real records.
        allowed: ``(C,)`` bool, classes that may get synthetic ECGs (``None``: all).
        seed: Seed of the order in which each class's pool ECGs are taken.

    Returns:
        ``(indices, summary)``: sorted pool indices, and ``{"wanted", "selected", "shortfall"}`` per class
        (``selected`` counts every label of the chosen ECGs).
    """
    pool_targets = np.asarray(pool_targets) > 0
    pool_primary = np.asarray(pool_primary)
    real_counts = np.asarray(real_counts, dtype=np.int64)
    num_classes = len(real_counts)
    if pool_targets.ndim != 2 or pool_targets.shape[1] != num_classes or pool_primary.shape != (len(pool_targets),):
        raise ValueError(f"pool_targets should be (P, {num_classes}) and pool_primary (P,), but got "
                         f"{pool_targets.shape} and {pool_primary.shape}")  # fmt: skip
    wanted = np.minimum(real_counts.max(initial=0) - real_counts, np.floor(synthetic_per_real * real_counts).astype(np.int64))
    if allowed is not None:
        wanted[~np.asarray(allowed, dtype=bool)] = 0
    rng = np.random.default_rng([seed, 2])
    queues = [list(rng.permutation(np.flatnonzero(pool_primary == c))) for c in range(num_classes)]
    remaining = wanted.copy()
    shortfall = np.zeros(num_classes, dtype=np.int64)
    chosen = []
    while remaining.max(initial=0) > 0:
        c = int(np.argmax(remaining))
        if not queues[c]:
            shortfall[c] = remaining[c]
            remaining[c] = 0
            continue
        index = int(queues[c].pop())
        chosen.append(index)
        labels = pool_targets[index] & (remaining > 0)
        remaining[labels] -= 1
    chosen = np.array(sorted(chosen), dtype=np.int64)
    selected = pool_targets[chosen].sum(axis=0) if len(chosen) else np.zeros(num_classes, dtype=np.int64)
    summary = {"wanted": wanted.tolist(), "selected": selected.astype(int).tolist(), "shortfall": shortfall.tolist()}
    return chosen, summary
