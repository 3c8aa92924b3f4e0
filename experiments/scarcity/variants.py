"""The ways of using synthetic ECGs beyond "add them": real-guided synthesis, a filter, soft labels,
synthetic pretraining and a reduced loss weight. Each arm that uses one works on its own cell's
real records only, so no arm sees more labelled data than ``real``:

* **teacher** (``filtered``, ``soft``): the ``real`` arm's classifier of the same ``(regime, seed)``
  (trained on that cell's real records only, its ``best.pt``). ``filtered`` keeps a pool ECG when
  every conditioning label scores at least its class's threshold, chosen on the validation
  records (:func:`youden_thresholds`: the teacher's score maximising sensitivity + specificity);
  ``soft`` trains on the teacher's scores as the synthetic ECGs' targets.
* **guided**: a small real-guided cache per ``(regime, seed)`` (:func:`plan_guided`): seed ECGs are
  the cell's own real records of each rare class, generated with ``strength`` < 1 (img2img).
* **pretrain**: :func:`pretrain_epochs` epochs on the cell's synthetic draw alone, then the usual
  epochs on its real records.
* **synthetic_weight** < 1: :class:`FlagSynthetic` marks synthetic items with a 13th constant
  channel and :class:`WeightedLogits` strips it and scales the gradient of their logits by the
  weight, which is exactly a per-item loss weight of the (mean) BCE, without changing the training
  loop; validation and test inputs have no flag, so they are unaffected.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torch import nn
from torch.utils.data import Dataset, Subset

from ecgaug.augment import PatientSampler, PlanConfig, make_plan
from ecgaug.augment.plan import GenerationPlan, seed_source

__all__ = ["FlagSynthetic", "WeightedLogits", "guided_per_class", "plan_guided", "pretrain_epochs", "youden_thresholds"]


def youden_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """``(C,)`` per-class score thresholds maximising Youden's J (sensitivity + specificity - 1) on ``(N, C)`` data.

    A class without a positive or a negative gets threshold 0 (nothing is filtered for it).
    """
    y_true, y_score = np.asarray(y_true) > 0, np.asarray(y_score, dtype=np.float64)
    thresholds = np.zeros(y_true.shape[1])
    for c in range(y_true.shape[1]):
        if y_true[:, c].all() or not y_true[:, c].any():
            continue
        fpr, tpr, cut = roc_curve(y_true[:, c], y_score[:, c])
        best = int(np.argmax(tpr - fpr))
        thresholds[c] = float(min(cut[best], 1.0))  # roc_curve's first cut is max + 1
    return thresholds


def pretrain_epochs(epochs: int) -> int:
    """Epochs of synthetic pretraining before the real fine-tuning: half the real schedule, at least one."""
    return max(1, epochs // 2)


def guided_per_class(real_positives: np.ndarray, rare: Sequence[int], *, synthetic_per_real: float, cap: int) -> int:
    """Jobs per rare class of a cell's guided plan: enough for the class the synthetic draw tops up most."""
    want = max((math.floor(synthetic_per_real * int(real_positives[c])) for c in rare), default=0)
    return int(max(1, min(cap, want)))


def plan_guided(train, rows: np.ndarray, classes: Sequence[str], rare_classes: Sequence[str], *, per_class: int, reports,
                held_out_folds: Sequence[int], seed: int) -> tuple[GenerationPlan, Dataset]:  # fmt: skip
    """A real-guided plan over one cell's real records: ``per_class`` jobs per rare class, each seeded by
    (and copying the labels of) a real record of the cell that carries the class.

    Args:
        train: The training folds (a ``PTBXL``); ``rows`` the cell's records of it.
        reports: The report templater (``ReportTemplater.from_ptbxl``); codes weighted by the cell's records.
        held_out_folds: Validation and test folds: a seed from them is refused.

    Returns:
        ``(plan, seeds)``: the plan and the data set its ``seed_index`` values index (``Subset(train, rows)``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    seeds = Subset(train, rows.tolist())
    targets = train.targets[rows]
    metadata = train.metadata.iloc[rows]
    patients = PatientSampler(list(classes), targets, age=metadata["age"].to_numpy(dtype=float), sex=metadata["sex"].to_numpy(dtype=object),
                              heart_rate=train.heart_rates()[rows])  # fmt: skip
    config = PlanConfig(strategy="per_class", per_class=per_class, classes=list(rare_classes), report_codes="frequency", seed=seed,
                        seed_ecgs=True)  # fmt: skip
    plan = make_plan(targets, list(classes), reports=reports, patients=patients, config=config, scp_codes=metadata["scp_codes"].tolist(),
                     seed_source=seed_source(seeds, held_out_folds=held_out_folds))  # fmt: skip
    return plan, seeds


class FlagSynthetic(Dataset):
    """``dataset`` items with a 13th signal channel: 1 for synthetic items (``synthetic_mask``), 0 for real ones."""

    def __init__(self, dataset: Dataset, synthetic_mask: np.ndarray):
        if len(synthetic_mask) != len(dataset):
            raise ValueError(f"synthetic_mask should have one entry per item ({len(dataset)}), but has {len(synthetic_mask)}")
        self.dataset, self.synthetic_mask = dataset, np.asarray(synthetic_mask, dtype=bool)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        signal, target = self.dataset[index]
        flag = torch.full((1, signal.shape[-1]), float(self.synthetic_mask[index]), dtype=signal.dtype)
        return torch.cat([signal, flag]), target


class WeightedLogits(nn.Module):
    """``model`` whose logits of flagged (synthetic) inputs pass ``weight`` x their gradient back.

    Inputs with 13 channels carry :class:`FlagSynthetic`'s flag; 12-channel inputs (validation, test)
    pass through unchanged. The forward value is never changed, only the gradient.
    """

    def __init__(self, model: nn.Module, weight: float):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight should be in [0, 1], but got {weight}")
        self.model, self.weight = model, float(weight)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        if signal.shape[1] != 13:
            return self.model(signal)
        flag = signal[:, 12, 0].to(torch.float32)
        logits = self.model(signal[:, :12])
        scale = (1.0 - flag * (1.0 - self.weight)).to(logits.dtype)[:, None]
        return logits.detach() + scale * (logits - logits.detach())
