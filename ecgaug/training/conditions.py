"""Training data for DiffuSETS: 12-lead ECGs with their report, age, sex and heart rate.

Any source becomes a :class:`ConditionedECGs` (in-memory tensors, model format: 12 leads in
the model's order, 1024 samples). :func:`from_ptbxl` builds one from PTB-XL with
:func:`ecgaug.data.conditions.record_condition`: reports templated from each record's SCP codes
(the templating the augmentation plugin uses), age and sex from the database, heart rate measured
from the signal (:mod:`ecgaug.data.heart_rate`, cached). Unknown
values stay NaN; the UNet learns an explicit "unknown" for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgaug.data.conditions import record_condition
from ecgaug.pipeline import patient_features
from ecgaug.signal import MODEL_NUM_SAMPLES, convert_ecg

__all__ = ["ConditionedECGs", "from_ptbxl", "from_dataset"]


@dataclass
class ConditionedECGs:
    signals: torch.Tensor  # (N, 12, 1024) float32 mV, model lead order
    reports: list[list[str]]  # per record, one or more phrasings of its report
    patient: torch.Tensor  # (N, 3) float32: sex_is_male, age, heart rate; NaN = unknown
    record_ids: list

    def __len__(self) -> int:
        return len(self.signals)


def from_ptbxl(
    root,
    folds: Iterable[int],
    *,
    sampling_rate: int = 100,
    num_report_variants: int = 3,
    seed: int = 0,
    heart_rate: bool = True,
    show_progress: bool = True,
) -> ConditionedECGs:
    """PTB-XL records of ``folds`` (every record with at least one SCP code) as training data.

    ``num_report_variants`` phrasings per record (the first is the templater's canonical one, the
    others random) teach the model that differently worded reports mean the same thing.
    ``heart_rate=False`` skips measuring heart rates (NaN), for the VAE stage, which needs none.
    """
    from ecgaug.data.ptbxl import PTBXL
    from ecgaug.text.reports import ReportTemplater

    dataset = PTBXL(root, folds=tuple(folds), sampling_rate=sampling_rate, task="all")
    templater = ReportTemplater.from_ptbxl(root)
    rng = np.random.default_rng(seed)
    heart_rates = dataset.heart_rates() if heart_rate else np.full(len(dataset), np.nan)
    conditions = [record_condition(record, rate, templater, num_report_variants=num_report_variants, rng=rng)
                  for (_, record), rate in zip(dataset.metadata.iterrows(), heart_rates)]
    reports = [list(c.reports) for c in conditions]
    patient = patient_features([c.sex for c in conditions], [c.age for c in conditions], [c.heart_rate for c in conditions])
    raw = torch.stack([dataset[i][0] for i in tqdm(range(len(dataset)), desc="loading ECGs", disable=not show_progress)])
    signals = torch.cat([convert_ecg(chunk, source_leads="ptbxl", target_leads="model", num_samples=MODEL_NUM_SAMPLES)
                         for chunk in raw.split(1024)])
    return ConditionedECGs(signals, reports, patient, dataset.metadata["ecg_id"].tolist())


def from_dataset(dataset, *, lead_order: str | Sequence[str], show_progress: bool = True) -> ConditionedECGs:
    """Any dataset whose items are dicts with ``signal`` ``(12, L)`` (10 s), ``report``, ``age``, ``sex``, ``heart_rate``."""
    signals, reports, sexes, ages, heart_rates = [], [], [], [], []
    for i in tqdm(range(len(dataset)), desc="loading ECGs", disable=not show_progress):
        item = dataset[i]
        missing = {"signal", "report", "age", "sex", "heart_rate"} - set(item)
        if missing:
            raise KeyError(f"Training items need keys signal, report, age, sex, heart_rate; item {i} lacks {sorted(missing)}.")
        signals.append(convert_ecg(torch.as_tensor(item["signal"], dtype=torch.float32), source_leads=lead_order,
                                   target_leads="model", num_samples=MODEL_NUM_SAMPLES))
        report = item["report"]
        reports.append([report] if isinstance(report, str) else list(report))
        sexes.append(item["sex"])
        ages.append(item["age"])
        heart_rates.append(item["heart_rate"])
    patient = patient_features(sexes, ages, heart_rates)
    return ConditionedECGs(torch.stack(signals).nan_to_num(0.0), reports, patient, list(range(len(signals))))
