"""Scarcity regimes: seeded patient subsets of the training folds, and the rare-class cut.

Subsets are drawn by *patient* (a kept patient brings all of its records), so no patient is
split between what the classifier sees and what it does not. For one seed the patients are put
in one random order and a fraction ``f`` keeps the first ``ceil(f x num_patients)`` of them, so
the subsets of one seed are nested (5 % inside 10 % inside 25 %) and curves over fractions
compare like with like.

The rare-class regime then removes, from its subset, all but ``k`` positive records of each
rare class (records positive for several rare classes count for each; records are visited in
a seeded random order and kept while every rare class they carry is still below ``k``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import Regime

__all__ = ["Subset", "keep_k_positives", "make_subset", "patient_subset", "rarest_classes"]

# Independent random streams of one seed.
_PATIENT_STREAM, _RARE_STREAM = 0, 1


@dataclass
class Subset:
    """Rows of a data set chosen for one ``(regime, seed)``.

    Attributes:
        rows: ``(n,)`` sorted int64 row indices into the training data set.
        ecg_ids: ``(n,)`` the rows' PTB-XL ``ecg_id`` (saved, so a subset can be checked later).
        num_patients: Patients kept.
        positives: Positive records per class, ``{class: count}``.
    """

    rows: np.ndarray
    ecg_ids: np.ndarray
    num_patients: int
    positives: dict[str, int]

    def to_dict(self) -> dict:
        return {"rows": self.rows.tolist(), "ecg_ids": self.ecg_ids.tolist(), "num_patients": self.num_patients, "positives": self.positives}


def rarest_classes(targets: np.ndarray, classes: list[str], num_classes: int) -> list[str]:
    """The ``num_classes`` classes with the fewest positive records (ties broken by name)."""
    if not 1 <= num_classes < len(classes):
        raise ValueError(f"num_rare_classes should be in [1, {len(classes) - 1}] for {len(classes)} classes, but got {num_classes}")
    counts = (np.asarray(targets) > 0).sum(axis=0)
    order = sorted(range(len(classes)), key=lambda c: (counts[c], classes[c]))
    return [classes[c] for c in order[:num_classes]]


def patient_subset(patient_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted rows of the first ``ceil(fraction x P)`` patients of a seeded order of the ``P`` patients."""
    patient_ids = np.asarray(patient_ids)
    patients = np.unique(patient_ids)
    order = np.random.default_rng([seed, _PATIENT_STREAM]).permutation(patients)
    kept = order[: max(1, math.ceil(fraction * len(patients)))]
    return np.flatnonzero(np.isin(patient_ids, kept))


def keep_k_positives(targets: np.ndarray, rows: np.ndarray, rare_columns: list[int], k: int, seed: int) -> np.ndarray:
    """``rows`` without all but ``k`` positive records of each class in ``rare_columns`` (see the module docstring)."""
    positive = np.asarray(targets)[rows][:, rare_columns] > 0
    carriers = np.flatnonzero(positive.any(axis=1))
    kept_count = np.zeros(len(rare_columns), dtype=np.int64)
    drop = np.zeros(len(rows), dtype=bool)
    for position in np.random.default_rng([seed, _RARE_STREAM]).permutation(carriers):
        carried = positive[position]
        if (kept_count[carried] < k).all():
            kept_count[carried] += 1
        else:
            drop[position] = True
    return rows[~drop]


def make_subset(regime: Regime, seed: int, *, targets: np.ndarray, patient_ids: np.ndarray, ecg_ids: np.ndarray,
                classes: list[str], rare_classes: list[str]) -> Subset:  # fmt: skip
    """The training rows of ``regime`` for ``seed``.

    Raises:
        ValueError: if some class has no positive record in the subset (the cell could not learn or
            weight it); the message names the regime, seed and class.
    """
    rows = patient_subset(patient_ids, regime.fraction, seed)
    if regime.is_rare:
        rows = keep_k_positives(targets, rows, [classes.index(name) for name in rare_classes], regime.rare_k, seed)
    counts = (np.asarray(targets)[rows] > 0).sum(axis=0)
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise ValueError(
            f"Regime {regime.name!r} with seed {seed} keeps {len(rows)} training records and no positive record of {empty}; "
            "use a larger fraction (or fewer classes, --classes)."
        )
    return Subset(
        rows=rows.astype(np.int64),
        ecg_ids=np.asarray(ecg_ids)[rows].astype(np.int64),
        num_patients=int(len(np.unique(np.asarray(patient_ids)[rows]))),
        positives=dict(zip(classes, counts.astype(int).tolist())),
    )
