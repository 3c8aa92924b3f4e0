"""The one way a PTB-XL record becomes a generation condition: report, age, sex, heart rate.

Training (:mod:`ecgaug.training.conditions`), the fidelity evaluation (:mod:`ecgaug.evaluation`)
and the model-card figure all call :func:`record_condition`, so a model is measured on exactly
the kind of condition it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["Condition", "record_condition"]


@dataclass(frozen=True)
class Condition:
    """What DiffuSETS is conditioned on. ``reports[0]`` is the templater's canonical phrasing."""

    reports: tuple[str, ...]
    age: float  # years, NaN when unknown
    sex: str | None  # 'M', 'F' or None
    heart_rate: float  # bpm, NaN when unknown

    @property
    def report(self) -> str:
        return self.reports[0]


def record_condition(record: Mapping, heart_rate: float, templater, *, num_report_variants: int = 1,
                     rng: np.random.Generator | None = None) -> Condition:
    """The condition of one PTB-XL ``record`` (a row of :attr:`ecgaug.data.PTBXL.metadata`).

    Args:
        record: has ``scp_codes`` (dict code -> likelihood), ``age`` and ``sex``.
        heart_rate: measured on the record's signal (:mod:`ecgaug.data.heart_rate`).
        templater: :class:`ecgaug.text.reports.ReportTemplater`.
        num_report_variants: the canonical report, then ``num_report_variants - 1`` random phrasings
            drawn with ``rng`` (they teach a model that differently worded reports mean the same).
    """
    if num_report_variants < 1:
        raise ValueError(f"num_report_variants should be at least 1, but got {num_report_variants}.")
    if num_report_variants > 1 and rng is None:
        raise ValueError("Random report phrasings need rng=np.random.default_rng(seed).")
    codes = record["scp_codes"]
    reports = (templater.report(codes),) + tuple(templater.report(codes, rng=rng) for _ in range(num_report_variants - 1))
    age = record["age"]
    sex = record["sex"]
    return Condition(reports=reports, age=float(age) if age is not None else float("nan"),
                     sex=sex if sex in ("M", "F") else None, heart_rate=float(heart_rate))
