"""Evaluation data: held-out checks and PTB-XL records as generation conditions with their labels.

:func:`load_test_conditions` draws test-fold records (the conditions of the fidelity figures);
:func:`load_balanced_conditions` draws training-fold records balanced per superclass (the
conditions of the TSTR classifier). Both go through :func:`ecgaug.data.conditions.record_condition`,
the one record-to-condition function training uses too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ecgaug.data.conditions import record_condition
from ecgaug.data.folds import check_folds  # re-exported: the evaluation's modules import it from here
from ecgaug.data.ptbxl import PTBXL, compute_labels, load_scp_statements
from ecgaug.settings import check_positive_int

__all__ = ["RHYTHM_CLASSES", "SAMPLING_RATE", "SUPERCLASSES", "TestConditions", "check_folds", "check_held_out",
           "load_balanced_conditions", "load_test_conditions"]

SAMPLING_RATE = 100  # PTB-XL's 100 Hz records: 1000 samples per 10 s
SUPERCLASSES = ("CD", "HYP", "MI", "NORM", "STTC")
RHYTHM_CLASSES = ("AFIB", "SBRAD", "SR", "STACH")  # sinus rhythm, its slow and fast forms, and atrial fibrillation
SINUS_RHYTHMS = ("SR", "SBRAD", "STACH")


@dataclass
class TestConditions:
    """PTB-XL records used as generation conditions (one row each), with their real ECGs and labels.

    Attributes:
        ecg_ids: PTB-XL ``ecg_id`` of each record.
        reports: templated report of each record's ``scp_codes``.
        age: ``(N,)`` float64 years, NaN when unknown.
        sex: ``'M'``, ``'F'`` or ``None`` per record.
        heart_rate: ``(N,)`` float64 bpm measured on the record (finite).
        signals: ``(N, 12, 1000)`` float32 mV, the real ECGs, PTB-XL lead order at 100 Hz.
        labels: ``(N, len(classes))`` float32 multi-hot diagnostic superclasses (rows may be all zero).
        classes: superclass names, the columns of ``labels``.
        rhythm_labels: ``(N, len(RHYTHM_CLASSES))`` float32 multi-hot rhythm statements.
    """

    ecg_ids: list[int]
    reports: list[str]
    age: np.ndarray
    sex: list
    heart_rate: np.ndarray
    signals: torch.Tensor
    labels: np.ndarray
    classes: list[str]
    rhythm_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ecg_ids)

    def subset(self, rows) -> "TestConditions":
        """The conditions at ``rows`` (an int ``k`` means the first ``k``)."""
        rows = np.arange(rows) if isinstance(rows, (int, np.integer)) else np.asarray(rows)
        return TestConditions([self.ecg_ids[i] for i in rows], [self.reports[i] for i in rows], self.age[rows],
                              [self.sex[i] for i in rows], self.heart_rate[rows], self.signals[torch.as_tensor(rows, dtype=torch.long)],
                              self.labels[rows], self.classes, self.rhythm_labels[rows])

    @classmethod
    def concatenate(cls, parts: Sequence["TestConditions"]) -> "TestConditions":
        """The rows of ``parts`` one after another (e.g. several seeded draws of one fold, pooled)."""
        if len({tuple(part.classes) for part in parts}) != 1:
            raise ValueError(f"conditions to concatenate should have the same classes, but got {[part.classes for part in parts]}")
        return cls([i for part in parts for i in part.ecg_ids], [r for part in parts for r in part.reports],
                   np.concatenate([part.age for part in parts]), [s for part in parts for s in part.sex],
                   np.concatenate([part.heart_rate for part in parts]), torch.cat([part.signals for part in parts]),
                   np.concatenate([part.labels for part in parts]), parts[0].classes,
                   np.concatenate([part.rhythm_labels for part in parts]))


def check_held_out(info: dict, test_folds: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``info`` (``model_index.json``) shows the model never saw ``test_folds``.

    Checks ``info["training"]["folds"]`` (the UNet's folds) and, when recorded,
    ``info["training"]["vae"]["folds"]``.
    """
    test_folds = check_folds(test_folds, "test_folds")
    training = info.get("training")
    if not isinstance(training, dict) or "folds" not in training:
        raise ValueError(
            f"The model's model_index.json has no training['folds'], so it cannot be checked that test folds {list(test_folds)} "
            "were held out. Evaluate a model trained with `ecgaug train unet`, which records its folds."
        )
    stages = {"UNet": training["folds"]}
    if isinstance(training.get("vae"), dict) and "folds" in training["vae"]:
        stages["VAE"] = training["vae"]["folds"]
    for stage, folds in stages.items():
        seen = sorted(set(test_folds) & {int(fold) for fold in folds})
        if seen:
            raise ValueError(
                f"test_folds should be folds the model was not trained on, but the {stage} was trained on folds {list(folds)}, "
                f"which include {seen}. Pass --test_folds outside them (e.g. 9 or 10)."
            )


def _multi_hot(label_lists, classes: Sequence[str]) -> np.ndarray:
    labels = np.zeros((len(label_lists), len(classes)), dtype=np.float32)
    for row, names in enumerate(label_lists):
        for name in names:
            if name in classes:
                labels[row, list(classes).index(name)] = 1.0
    return labels


def _conditions(ptbxl_root, dataset: PTBXL, rows: np.ndarray, heart_rates: np.ndarray, classes: Sequence[str]) -> TestConditions:
    from ecgaug.text.reports import ReportTemplater

    templater = ReportTemplater.from_ptbxl(ptbxl_root)
    metadata = dataset.metadata.iloc[rows]
    statements = load_scp_statements(ptbxl_root)
    conditions = [record_condition(record, rate, templater) for (_, record), rate in zip(metadata.iterrows(), heart_rates[rows])]
    return TestConditions(
        ecg_ids=[int(ecg_id) for ecg_id in metadata["ecg_id"]],
        reports=[c.report for c in conditions],
        age=np.array([c.age for c in conditions], dtype=np.float64),
        sex=[c.sex for c in conditions],
        heart_rate=np.array([c.heart_rate for c in conditions], dtype=np.float64),
        signals=torch.stack([dataset[int(row)][0] for row in rows]) if len(rows) else torch.zeros(0, 12, SAMPLING_RATE * 10),
        labels=_multi_hot(compute_labels(metadata["scp_codes"], statements, "superdiagnostic"), classes),
        classes=list(classes),
        rhythm_labels=_multi_hot(compute_labels(metadata["scp_codes"], statements, "rhythm"), RHYTHM_CLASSES),
    )


def _measurable(dataset: PTBXL) -> tuple[np.ndarray, np.ndarray]:
    heart_rates = dataset.heart_rates()
    return np.flatnonzero(np.isfinite(heart_rates)), heart_rates


def load_test_conditions(ptbxl_root, test_folds: Sequence[int], num_conditions: int, *, seed: int = 0,
                         classes: Sequence[str] = SUPERCLASSES, show_progress: bool = True) -> TestConditions:
    """``num_conditions`` random test-fold records with a measurable heart rate, as conditions.

    Records are drawn in a seeded random order, so the first ``k`` conditions are a random subset too.
    Raises ``ValueError`` if the folds have fewer measurable records.
    """
    check_positive_int("num_conditions", num_conditions)
    dataset = PTBXL(ptbxl_root, folds=check_folds(test_folds, "test_folds"), sampling_rate=SAMPLING_RATE, task="all", progress=show_progress)
    measurable, heart_rates = _measurable(dataset)
    if len(measurable) < num_conditions:
        raise ValueError(
            f"num_conditions should be at most the {len(measurable)} records of folds {list(dataset.folds)} with a measurable "
            f"heart rate, but got num_conditions={num_conditions}; lower it or add test folds."
        )
    rows = measurable[np.random.default_rng(seed).permutation(len(measurable))[:num_conditions]]
    return _conditions(ptbxl_root, dataset, rows, heart_rates, classes)


def load_balanced_conditions(ptbxl_root, folds: Sequence[int], per_class: int, *, seed: int = 0,
                             classes: Sequence[str] = SUPERCLASSES, show_progress: bool = True) -> TestConditions:
    """``per_class`` records of each superclass from ``folds`` (drawn without replacement where a class
    has enough records, with replacement otherwise), so a classifier trained on them sees every class equally."""
    dataset = PTBXL(ptbxl_root, folds=check_folds(folds, "folds"), sampling_rate=SAMPLING_RATE, task="all", progress=show_progress)
    measurable, heart_rates = _measurable(dataset)
    superclasses = compute_labels(dataset.metadata["scp_codes"].iloc[measurable], load_scp_statements(ptbxl_root), "superdiagnostic")
    rng = np.random.default_rng(seed)
    rows = []
    for name in classes:
        pool = measurable[[name in labels for labels in superclasses]]
        if len(pool) == 0:
            raise ValueError(f"Folds {list(dataset.folds)} have no record of class {name!r} with a measurable heart rate.")
        rows.append(rng.choice(pool, size=per_class, replace=len(pool) < per_class))
    return _conditions(ptbxl_root, dataset, np.concatenate(rows), heart_rates, classes)
