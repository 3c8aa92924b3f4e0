"""``ClassBalancedSampler``: class-balanced draws with a cap on synthetic items, reproducible and DDP-aware.

Follows ``torch.utils.data``'s ``WeightedRandomSampler`` (weights, ``num_samples``, ``replacement``,
``generator``) and ``DistributedSampler`` (``num_replicas``, ``rank``, ``seed + epoch`` seeding,
``set_epoch``).
"""
from __future__ import annotations

import math
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler", "class_balanced_weights", "empty_classes"]


def class_balanced_weights(targets) -> np.ndarray:
    """``(N,)`` float64 weights that make every class equally likely to be drawn.

    Item ``i`` gets ``sum over its positive classes c of 1 / count(c)``, so picking an item with
    these weights is "pick a class uniformly, then one of its items uniformly" (a multi-label item
    can be reached through each of its classes). Items with no positive label form their own
    group. ``targets`` is ``(N, C)`` multi-hot or ``(N,)`` integer class indices.
    """
    targets = np.asarray(targets)
    if targets.ndim == 1:
        _, groups = np.unique(targets, return_inverse=True)
        positives = np.zeros((len(targets), groups.max(initial=-1) + 1), dtype=bool)
        positives[np.arange(len(targets)), groups] = True
    elif targets.ndim == 2:
        positives = targets > 0
        unlabelled = ~positives.any(axis=1)
        if unlabelled.any():
            positives = np.concatenate([positives, unlabelled[:, None]], axis=1)
    else:
        raise ValueError(f"targets should be (N, C) multi-hot or (N,) class indices, but got shape {targets.shape}")
    counts = positives.sum(axis=0)
    present = counts > 0
    inverse = np.zeros(len(counts))
    inverse[present] = 1.0 / counts[present]
    return positives @ inverse / present.sum()


def empty_classes(targets, num_classes: int | None = None) -> list[int]:
    """Indices of the classes no item belongs to: ``(N, C)`` multi-hot columns without a positive, or for
    ``(N,)`` class indices, the indices below ``num_classes`` that never occur."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        return np.flatnonzero(~(targets > 0).any(axis=0)).tolist()
    if num_classes is None:
        return []
    return sorted(set(range(num_classes)) - set(targets.tolist()))


class ClassBalancedSampler(Sampler[int]):
    """Draws dataset indices so that every class is equally likely, capping the share of synthetic items.

    Each epoch draws ``num_samples`` indices in total (over all replicas) with
    :func:`class_balanced_weights`. Under DistributedDataParallel every rank draws the same global
    stream (seeded with ``seed + epoch``) and keeps positions ``rank, rank + num_replicas, ...``,
    so ranks see disjoint parts of one class-balanced epoch. Call :meth:`set_epoch` before each
    epoch, as with ``DistributedSampler``.

    Args:
        targets: ``(N, C)`` multi-hot or ``(N,)`` integer labels, e.g. ``AugmentedDataset.targets``.
        num_samples: Draws per epoch over all replicas. Default: ``N``.
        replacement: Draw with replacement. Without, ``num_samples`` may not exceed the number of items.
        synthetic_mask: ``(N,)`` bool, True for synthetic items (``AugmentedDataset.synthetic_mask``).
        max_synthetic_fraction: At most ``floor(max_synthetic_fraction * batch_size)`` synthetic items in
            each batch of ``batch_size`` consecutive indices of a rank (or in the rank's whole epoch
            if ``batch_size`` is None). Excess synthetic draws are replaced by class-balanced real draws.
        batch_size: The DataLoader's batch size (per rank), for the per-batch cap.
        generator: Generator for a single process; epochs then follow the generator's state.
            With several replicas use ``seed`` (all ranks must draw the same stream).
        seed: Epoch ``e`` draws from ``torch.Generator().manual_seed(seed + e)`` (when no ``generator``).
        num_replicas, rank: Defaults from ``torch.distributed`` when initialised, else 1 and 0.
        classes: Class names, in the order of the target columns (or of the class indices); only used
            to name classes that have no items, which can never be drawn (a ``UserWarning`` says which).

    Example:
        >>> targets = np.array([[1, 0]] * 90 + [[0, 1]] * 10)
        >>> sampler = ClassBalancedSampler(targets, num_samples=1000, seed=0)
        >>> drawn = targets[list(sampler)].sum(axis=0)
        >>> bool(abs(drawn[0] - drawn[1]) < 150)
        True
    """

    def __init__(
        self,
        targets,
        *,
        num_samples: int | None = None,
        replacement: bool = True,
        synthetic_mask=None,
        max_synthetic_fraction: float | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        classes: Sequence[str] | None = None,
    ):
        targets = np.asarray(targets)
        empty = empty_classes(targets, None if classes is None else len(classes))
        if empty:
            names = [f"{classes[i]!r} (index {i})" if classes is not None and i < len(classes) else f"index {i}" for i in empty]
            warnings.warn(f"ClassBalancedSampler: {len(empty)} class(es) have no items and will never be drawn: {', '.join(names)}. "
                          "Add real or synthetic items of them, or leave them out of the targets.", UserWarning, stacklevel=2)
        weights = class_balanced_weights(targets)
        num_items = len(weights)
        if num_items == 0:
            raise ValueError("targets should hold at least one item, but got none")
        self.num_samples = num_items if num_samples is None else num_samples
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")
        if num_replicas is None or rank is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (torch.distributed.get_world_size() if distributed else 1)
            rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank should be in [0, num_replicas), but got rank={rank}, num_replicas={num_replicas}")
        if generator is not None and num_replicas > 1:
            raise ValueError("generator is for a single process; with num_replicas > 1 pass seed= so every rank draws the same stream")
        self.num_replicas, self.rank = num_replicas, rank
        self.num_samples_per_replica = math.ceil(self.num_samples / num_replicas)
        total = self.num_samples_per_replica * num_replicas
        if not replacement and total > np.count_nonzero(weights):
            raise ValueError(
                f"without replacement num_samples (rounded up to a multiple of num_replicas: {total}) should be at most "
                f"the number of items ({np.count_nonzero(weights)}); pass replacement=True or a smaller num_samples"
            )
        self.replacement = replacement
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

        self.max_synthetic_fraction = max_synthetic_fraction
        self.batch_size = batch_size
        if max_synthetic_fraction is not None:
            if not 0.0 <= max_synthetic_fraction <= 1.0:
                raise ValueError(f"max_synthetic_fraction should be in [0, 1], but got {max_synthetic_fraction}")
            if synthetic_mask is None:
                raise ValueError("max_synthetic_fraction needs synthetic_mask (e.g. AugmentedDataset.synthetic_mask)")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if synthetic_mask is not None:
            synthetic_mask = np.asarray(synthetic_mask, dtype=bool)
            if synthetic_mask.shape != (num_items,):
                raise ValueError(f"synthetic_mask should have shape ({num_items},), but got {synthetic_mask.shape}")
            self.synthetic_mask = torch.from_numpy(synthetic_mask)
            real = ~synthetic_mask
            if max_synthetic_fraction is not None and not real.any():
                raise ValueError("max_synthetic_fraction needs real items to draw, but every item is synthetic")
            real_weights = np.zeros(num_items)
            real_weights[real] = class_balanced_weights(targets[real])
            self.real_weights = torch.from_numpy(real_weights)
        else:
            self.synthetic_mask = None
        self.generator = generator
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> "ClassBalancedSampler":
        """Use ``dataset.targets`` and, if it has them (``AugmentedDataset``), ``dataset.synthetic_mask`` and ``dataset.classes``."""
        if not hasattr(dataset, "targets"):
            raise TypeError(f"{type(dataset).__name__} has no `targets`; pass them to ClassBalancedSampler(targets, ...)")
        kwargs.setdefault("synthetic_mask", getattr(dataset, "synthetic_mask", None))
        kwargs.setdefault("classes", getattr(dataset, "classes", None))
        return cls(dataset.targets, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; call before creating the iterator so each epoch (and all ranks) draw anew."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples_per_replica

    def __iter__(self) -> Iterator[int]:
        if self.generator is not None:
            generator = cap_generator = self.generator
        else:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            rank_seed = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1, dtype=np.uint64)[0]
            cap_generator = torch.Generator().manual_seed(int(rank_seed >> np.uint64(1)))
        total = self.num_samples_per_replica * self.num_replicas
        indices = torch.multinomial(self.weights, total, self.replacement, generator=generator)
        indices = indices[self.rank :: self.num_replicas].clone()
        if self.max_synthetic_fraction is not None:
            self._cap_synthetic(indices, cap_generator)
        return iter(indices.tolist())

    def _cap_synthetic(self, indices: torch.Tensor, generator: torch.Generator) -> None:
        """Replace, in place, synthetic draws beyond the cap of each batch by class-balanced real draws."""
        chunk = self.batch_size or len(indices)
        available = self.real_weights.clone()
        if not self.replacement:
            available[indices] = 0.0
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]  # a view: edits land in `indices`
            synthetic = torch.nonzero(self.synthetic_mask[part]).flatten()
            excess = len(synthetic) - math.floor(self.max_synthetic_fraction * len(part))
            if excess <= 0:
                continue
            if not self.replacement and excess > torch.count_nonzero(available):
                raise ValueError(
                    "max_synthetic_fraction cannot be met without replacement: too few unused real items; "
                    "pass replacement=True, a smaller num_samples or a larger max_synthetic_fraction"
                )
            replaced = synthetic[torch.randperm(len(synthetic), generator=generator)[:excess]]
            part[replaced] = torch.multinomial(available, excess, self.replacement, generator=generator)
            if not self.replacement:
                available[part[replaced]] = 0.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_items={len(self.weights)}, num_samples={self.num_samples}, replacement={self.replacement}, "
            f"max_synthetic_fraction={self.max_synthetic_fraction}, batch_size={self.batch_size}, seed={self.seed}, "
            f"num_replicas={self.num_replicas}, rank={self.rank})"
        )
