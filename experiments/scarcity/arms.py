"""What each arm trains on: the training dataset, sampler and loss weighting of one cell.

Every arm of a ``(regime, seed)`` starts from the same real records. An epoch always has as many
draws as the cell has real records, so arms differ in *what* they see, not in how much training
they get:

* ``shuffle`` arms see each real record once per epoch;
* ``balanced`` arms draw with :class:`ecgaug.augment.ClassBalancedSampler` (classes equally likely;
  with synthetic ECGs, at most ``synthetic_cap`` of each batch synthetic).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from classifiers.augment import ClassicECGAugment
from classifiers.train import pos_weight_from_targets
from ecgaug.augment import AugmentedDataset, ClassBalancedSampler

from .config import Arm

__all__ = ["SignalTransform", "TrainingData", "training_data"]


class SignalTransform(Dataset):
    """``dataset`` with ``transform`` applied to the signal of each ``(signal, target)`` item.

    Args:
        dataset: Map-style dataset of ``(signal (12, num_samples), target)`` items.
        transform: Called on each signal, e.g. :class:`classifiers.augment.ClassicECGAugment`.
    """

    def __init__(self, dataset: Dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        signal, target = self.dataset[index]
        return self.transform(signal), target


@dataclass
class TrainingData:
    """One cell's training set.

    Attributes:
        dataset: Items ``(signal (12, num_samples) float32, target (C,) float32)``.
        sampler: ``None`` (shuffle) or a :class:`ClassBalancedSampler`.
        pos_weight: ``(C,)`` BCE ``pos_weight`` or ``None``.
        num_real, num_synthetic: Records of each kind in ``dataset``.
    """

    dataset: Dataset
    sampler: ClassBalancedSampler | None
    pos_weight: torch.Tensor | None
    num_real: int
    num_synthetic: int


def training_data(arm: Arm, *, train: Dataset, train_targets: np.ndarray, rows: np.ndarray, batch_size: int, seed: int,
                  sampling_rate: float, augmented: AugmentedDataset | None = None, augmented_targets: np.ndarray | None = None,
                  synthetic_indices: np.ndarray | None = None) -> TrainingData:  # fmt: skip
    """Build the training set of ``arm`` on the real ``rows`` of ``train``.

    Args:
        arm: The arm.
        train: The training folds (every row of them); ``train_targets`` are its ``(N, C)`` targets.
        rows: The cell's real rows of ``train``.
        batch_size: The loader's batch size (for the sampler's per-batch synthetic cap).
        seed: Seed of the sampler's draws (epoch ``e`` draws with ``seed + e``).
        sampling_rate: Of the signals, for the classic augmentation.
        augmented: ``AugmentedDataset(train, pool)`` for synthetic arms, with its ``targets``
            (``augmented_targets``) and the cell's chosen pool indices (``synthetic_indices``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    pos_weight = pos_weight_from_targets(train_targets[rows]) if arm.pos_weight else None
    if arm.synthetic:
        if augmented is None or augmented_targets is None or synthetic_indices is None:
            raise ValueError(f"Arm {arm.name!r} is synthetic and needs augmented, augmented_targets and synthetic_indices")
        indices = np.concatenate([rows, augmented.num_real + np.asarray(synthetic_indices, dtype=np.int64)])
        dataset: Dataset = Subset(augmented, indices.tolist())
        sampler = ClassBalancedSampler(augmented_targets[indices], num_samples=len(rows), synthetic_mask=indices >= augmented.num_real,
                                       max_synthetic_fraction=arm.synthetic_cap, batch_size=batch_size, seed=seed)  # fmt: skip
        num_synthetic = len(synthetic_indices)
    else:
        dataset = Subset(train, rows.tolist())
        sampler = ClassBalancedSampler(train_targets[rows], num_samples=len(rows), seed=seed) if arm.sampler == "balanced" else None
        num_synthetic = 0
    if arm.classic:
        dataset = SignalTransform(dataset, ClassicECGAugment(sampling_rate=sampling_rate))
    return TrainingData(dataset=dataset, sampler=sampler, pos_weight=pos_weight, num_real=len(rows), num_synthetic=num_synthetic)
