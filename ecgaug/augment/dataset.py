"""``AugmentedDataset``: a data set's real items followed by synthetic ECGs from a cache, in the same structure.

Works with any map-style dataset whose items are ``(signal, target)`` tuples/lists or dicts, e.g. a
``TensorDataset``, ``ecgaug.data.ptbxl.PTBXL``, or your own. Each synthetic item is converted to
look exactly like a real one: same container, same signal type (tensor or array), dtype, shape,
lead order and sampling rate, and the target in the base's format (multi-hot vector in the base's
class order, or an integer class index for single-label data).

Shards are memory-mapped lazily, once per process, so the dataset is cheap to pickle and works
with ``DataLoader(num_workers > 0)``. Nothing is read unchecked: opening checks ``targets.npy``
against its recorded sha256, and each process checks a shard (sha256, finite values) the first
time it maps it, raising :class:`~ecgaug.augment.cache.CorruptCacheError` naming the file and the fix.

Imperfect synthetic ECGs (see :mod:`ecgaug.augment.filtering`): ``selection=NAME`` serves only the
ECGs a classifier kept (``ecgaug cache filter``), ``synthetic_targets=NAME`` gives synthetic items a
teacher's stored scores as soft targets instead of their conditioning labels, and
``synthetic_weight`` gives each synthetic item a loss weight (:attr:`AugmentedDataset.weights`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from ..signal import convert_ecg, resolve_lead_order
from .builder import ECGGenerator, build_shard, check_generator
from .cache import CacheMismatchError, SyntheticCache
from .plan import to_multi_hot

__all__ = ["AugmentedDataset"]

# Dict keys a synthetic item can fill from the cache's plan.
PLAN_KEYS = ("age", "sex", "heart_rate", "report")


class AugmentedDataset(Dataset):
    """Real items of ``base`` (indices ``[0, num_real)``) then the cache's synthetic ECGs (``[num_real, len)``).

    Args:
        base: Map-style dataset with ``(signal, target)`` or dict items; ``signal`` is ``(12, num_samples)``.
        cache: A :class:`~ecgaug.augment.cache.SyntheticCache` or its folder.
        classes: Class names of the base's targets, in target order. Default: ``base.classes``.
            Must name the same classes as the cache (order may differ; targets are reordered).
        sampling_rate: The base's sampling rate in Hz. Default: ``base.sampling_rate``. Synthetic ECGs
            are FFT-resampled to the base's length; a cache whose records last another duration is refused.
        lead_order: The base's lead order (``"ptbxl"``, ``"mimic"`` or 12 lead names). Default:
            ``base.lead_order`` if the base has one, else ``"ptbxl"`` (the ecgaug convention).
        signal_key, target_key: Keys of the signal and target in dict items.
        fill_values: For dict items, values of keys other than the signal, target and
            ``age``/``sex``/``heart_rate``/``report`` (which come from the plan), e.g. ``{"ecg_id": -1}``.
        synthetic_transform: Applied to each synthetic signal after conversion; pass the transform
            (normalisation...) the base applies to its own signals, if any.
        model_id: If given, refuse a cache made by another model.
        on_demand: Serve the cache's whole plan, generating missing shards on first use (with
            ``generator``) and writing them to the cache. Otherwise the cache must be complete.
        generator: The model for ``on_demand``; must be the model and sampler that made the cache.
        generation_batch_size: ``generate`` batch size for ``on_demand`` (``None``: the generator's default).
        selection: Name of a stored selection (``ecgaug cache filter --name NAME``): serve only the
            synthetic ECGs it kept. A selection made for another cache (plan, model, text encoder,
            scheduler, a changed shard) is refused.
        synthetic_targets: ``"conditioned"``: a synthetic item's target is the labels it was generated
            for. Or the name of stored teacher scores (:func:`~ecgaug.augment.filtering.teacher_scores`):
            its target is the teacher's scores (soft, in [0, 1]); needs floating multi-hot base targets.
        synthetic_weight: Weight (>= 0) of each synthetic item in :attr:`weights` / :meth:`item_weight`
            (real items weigh 1), for a loss that a training loop weighs per item.
        transform, target_transform: Applied to the signal and the target of every item, real and
            synthetic, as torchvision datasets do (after ``synthetic_transform``).

    Raises:
        CacheMismatchError: if the cache cannot be made to look like the base (classes, duration, model).
        CorruptCacheError: if a cache file is damaged (at construction, or when a shard is first read).
        ValueError: if ``lead_order`` does not name the base's 12 leads; :attr:`targets` if a base
            target is NaN.

    Attributes:
        num_real, num_synthetic: Item counts of each part.
        synthetic_mask: ``(len(self),)`` bool, True for synthetic items.
        classes: The base's class names.
        selection: The :class:`~ecgaug.augment.filtering.Selection` read, or ``None``.
        weights: ``(len(self),)`` float32 per-item weights (1 real, ``synthetic_weight`` synthetic).

    Example::

        ds = AugmentedDataset(TensorDataset(x, y), "runs/cache", classes=["NORM", "MI"], sampling_rate=100)
        signal, target = ds[len(ds) - 1]      # synthetic, same types, shapes and dtypes as ds[0]
        assert ds.is_synthetic(len(ds) - 1)
    """

    def __init__(
        self,
        base: Dataset,
        cache: SyntheticCache | str | os.PathLike,
        *,
        classes: Sequence[str] | None = None,
        sampling_rate: float | None = None,
        lead_order: str | Sequence[str] | None = None,
        signal_key: str = "signal",
        target_key: str = "target",
        fill_values: Mapping[str, Any] | None = None,
        synthetic_transform: Callable | None = None,
        model_id: str | None = None,
        on_demand: bool = False,
        generator: ECGGenerator | None = None,
        generation_batch_size: int | None = None,
        selection: str | None = None,
        synthetic_targets: str = "conditioned",
        synthetic_weight: float = 1.0,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ):
        self.base = base
        self.cache = cache if isinstance(cache, SyntheticCache) else SyntheticCache(cache)
        config = self.cache.config
        self.num_real = len(base)
        if self.num_real == 0:
            raise ValueError("base should be a non-empty dataset (its first item defines the item structure)")
        self.signal_key, self.target_key = signal_key, target_key
        self.synthetic_transform = synthetic_transform
        self.transform, self.target_transform = transform, target_transform
        if isinstance(synthetic_weight, bool) or not isinstance(synthetic_weight, (int, float)) or not synthetic_weight >= 0:
            raise ValueError(f"synthetic_weight should be a number >= 0, but got {synthetic_weight!r}")
        if not math.isfinite(synthetic_weight):
            raise ValueError(f"synthetic_weight should be finite, but got {synthetic_weight!r}")
        self.synthetic_weight = float(synthetic_weight)

        if model_id is not None and model_id != config.model_id:
            raise CacheMismatchError(f"The cache at {self.cache.root} was made by model {config.model_id!r}, not {model_id!r}.")
        self.on_demand = on_demand
        self.generator = generator
        self.generation_batch_size = generation_batch_size
        if on_demand:
            if generator is None:
                raise ValueError("on_demand=True needs the generator that fills missing shards; pass generator=...")
            check_generator(self.cache, generator)
        else:
            if generator is not None:
                raise ValueError("generator is only used with on_demand=True; pass on_demand=True or drop generator")
            self.cache.check_finished()

        self._describe_items(base[0], fill_values)
        self._check_signal(config, sampling_rate, lead_order)
        self._load_synthetic_targets(classes)

        self._load_filtering(selection, synthetic_targets)
        self.num_synthetic = self.cache.num_records if self._rows is None else len(self._rows)
        self._shard_size = config.shard_size
        self._convert = self._reorder or self._resample or synthetic_transform is not None or not (
            self._signal_type == "torch" and self._signal_dtype == torch.float32
        )
        self._base_targets = None
        self._reset_process_state()  # shard maps and targets, opened on first use in each process

    # ------------------------------------------------------------------------------ set-up checks
    def _describe_items(self, item, fill_values) -> None:
        """Record the container, signal and target formats of the base's items."""
        if isinstance(item, Mapping):
            self._container = "dict"
            for key in (self.signal_key, self.target_key):
                if key not in item:
                    raise KeyError(
                        f"base items are dicts with keys {sorted(item)}, without {key!r}; "
                        "pass signal_key=/target_key= naming the signal and target"
                    )
            self._keys = list(item)
            fill_values = dict(fill_values or {})
            unfilled = [k for k in self._keys if k not in (self.signal_key, self.target_key, *PLAN_KEYS, *fill_values)]
            if unfilled:
                raise ValueError(
                    f"base items have keys {unfilled} that synthetic items cannot provide; "
                    f"pass fill_values={{{', '.join(f'{k!r}: ...' for k in unfilled)}}} with their value for synthetic items"
                )
            self._fill_values = fill_values
            signal, target = item[self.signal_key], item[self.target_key]
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            self._container = list if isinstance(item, list) else tuple
            signal, target = item
        else:
            raise TypeError(
                f"base items should be (signal, target) tuples/lists or dicts, but got {type(item).__name__}"
                + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            )

        if isinstance(signal, torch.Tensor):
            self._signal_type, self._signal_dtype = "torch", signal.dtype
        elif isinstance(signal, np.ndarray):
            self._signal_type, self._signal_dtype = "numpy", signal.dtype
        else:
            raise TypeError(f"base signals should be torch tensors or numpy arrays, but got {type(signal).__name__}")
        if signal.ndim != 2 or signal.shape[0] != 12:
            raise ValueError(f"base signals should be channel-first (12, num_samples), but got shape {tuple(signal.shape)}")
        self.num_leads, self.num_samples = int(signal.shape[0]), int(signal.shape[1])

        if isinstance(target, (bool, np.bool_)) or (hasattr(target, "dtype") and target.dtype in (torch.bool, np.bool_) and target.ndim == 0):
            raise TypeError("base targets should be class indices or multi-hot vectors, but got a boolean scalar")
        if isinstance(target, (int, np.integer)):
            self._target_format, self._target_type, self._target_dtype = "index", "int", None
        elif isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 0 and not _is_floating(target):
            self._target_format = "index"
            self._target_type = "torch" if isinstance(target, torch.Tensor) else "numpy"
            self._target_dtype = target.dtype
        elif isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 1:
            self._target_format = "multi_hot"
            self._target_type = "torch" if isinstance(target, torch.Tensor) else "numpy"
            self._target_dtype = target.dtype
            self._target_length = int(target.shape[0])
        else:
            raise TypeError(
                "base targets should be an integer class index or a 1-D multi-hot tensor/array, "
                f"but got {type(target).__name__} {getattr(target, 'shape', '')}"
            )

    def _check_signal(self, config, sampling_rate, lead_order) -> None:
        """Refuse caches that cannot be made to look like the base; plan the conversion of the others."""
        if sampling_rate is None:
            sampling_rate = getattr(self.base, "sampling_rate", None)
            if sampling_rate is None:
                raise ValueError(
                    f"{type(self.base).__name__} has no `sampling_rate`; pass sampling_rate= (Hz of the base's signals) "
                    "so synthetic ECGs can be matched to it"
                )
        self.sampling_rate = float(sampling_rate)
        if lead_order is None:
            lead_order = getattr(self.base, "lead_order", "ptbxl")
        self.lead_order = lead_order
        leads = resolve_lead_order(lead_order)
        if len(leads) != self.num_leads:
            raise ValueError(
                f"lead_order names {len(leads)} leads {list(leads)}, but the base's signals have {self.num_leads} leads; "
                "pass the order of all the base's leads (synthetic items have the same leads as real ones)"
            )
        base_seconds = self.num_samples / self.sampling_rate
        cache_seconds = config.num_samples / config.sampling_rate
        if not math.isclose(base_seconds, cache_seconds, abs_tol=1.0 / self.sampling_rate):
            raise CacheMismatchError(
                f"The cache at {self.cache.root} holds {cache_seconds:g} s records ({config.num_samples} samples at "
                f"{config.sampling_rate:g} Hz), but the base's records last {base_seconds:g} s ({self.num_samples} samples "
                f"at {self.sampling_rate:g} Hz). Build a cache that matches the base, or check sampling_rate."
            )
        self._resample = self.num_samples != config.num_samples
        self._reorder = resolve_lead_order(config.lead_order) != resolve_lead_order(lead_order)

    def _load_synthetic_targets(self, classes) -> None:
        """Match the cache's classes to the base's by name and check the target format fits."""
        if classes is None:
            classes = getattr(self.base, "classes", None)
            if classes is None:
                raise ValueError(
                    f"{type(self.base).__name__} has no `classes`; pass classes= naming the base's classes in target "
                    f"order (the cache has {self.cache.config.classes})"
                )
        self.classes = list(classes)
        cache_classes = self.cache.config.classes
        if sorted(self.classes) != sorted(cache_classes) or len(set(self.classes)) != len(self.classes):
            raise CacheMismatchError(
                f"The cache at {self.cache.root} has classes {cache_classes}, but the base has {self.classes}. "
                "Build the cache from this data set's labels."
            )
        if self._target_format == "multi_hot" and self._target_length != len(self.classes):
            raise ValueError(f"base targets have length {self._target_length}, but there are {len(self.classes)} classes")
        order = [cache_classes.index(name) for name in self.classes]
        self._order = None if order == list(range(len(order))) else np.asarray(order)  # cache column of each base class
        synthetic_targets = self.cache.targets()  # checked here, at construction
        if self._target_format == "index":
            num_labels = synthetic_targets.sum(axis=1)
            if (num_labels != 1).any():
                raise CacheMismatchError(
                    f"The base is single-label (integer targets), but {(num_labels != 1).sum()} synthetic records of the "
                    "cache have several labels (or none); build the cache with --co_occurrence none."
                )

    def _load_filtering(self, selection, synthetic_targets) -> None:
        """Read the selection and the teacher scores (both checked against the cache) named by the arguments."""
        from .filtering import load_scores, load_selection

        self.selection, self._rows = None, None
        if selection is not None:
            missing = self.cache.missing_shards()
            if missing:
                raise ValueError(f"selection= needs a finished cache, but {len(missing)} shards are not built")
            self.selection = load_selection(self.cache, selection)
            self._rows = self.selection.indices
        if not isinstance(synthetic_targets, str):
            raise TypeError(f"synthetic_targets should be 'conditioned' or the name of stored scores, but got {synthetic_targets!r}")
        self.synthetic_targets = synthetic_targets
        self._soft = None
        if synthetic_targets != "conditioned":
            if self._target_format != "multi_hot" or not _is_floating_dtype(self._target_dtype):
                raise ValueError(
                    f"synthetic_targets={synthetic_targets!r} gives soft targets (scores in [0, 1]), which need floating "
                    "multi-hot base targets; this base has "
                    + ("integer class indices" if self._target_format == "index" else f"{self._target_dtype} targets")
                )
            self._soft = np.asarray(load_scores(self.cache, synthetic_targets), dtype=np.float32)

    def _cache_row(self, synthetic: int) -> int:
        """The cache (plan) row of synthetic item ``synthetic``."""
        return synthetic if self._rows is None else int(self._rows[synthetic])

    @property
    def weights(self) -> np.ndarray:
        """``(len(self),)`` float32 loss weight of each item: 1 for real items, ``synthetic_weight`` for synthetic ones."""
        weights = np.ones(len(self), dtype=np.float32)
        weights[self.num_real :] = self.synthetic_weight
        return weights

    def item_weight(self, index: int) -> float:
        """The loss weight of item ``index`` (see :attr:`weights`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index should be in [0, {len(self)}), but got {index}")
        return self.synthetic_weight if self.is_synthetic(index) else 1.0

    # ------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self.num_real + self.num_synthetic

    def is_synthetic(self, index: int) -> bool:
        if index < 0:
            index += len(self)
        return index >= self.num_real

    @property
    def synthetic_mask(self) -> np.ndarray:
        mask = np.zeros(len(self), dtype=bool)
        mask[self.num_real :] = True
        return mask

    @property
    def targets(self) -> np.ndarray:
        """All labels: ``(N, C)`` float32 multi-hot, or ``(N,)`` int64 class indices for single-label bases.

        Synthetic items count with the labels they were generated for (what class balancing needs),
        also with ``synthetic_targets=NAME``; :attr:`item_targets` has the targets items return.
        The base part comes from ``base.targets`` or a ``TensorDataset``'s second tensor; other bases
        are read item by item once (signals included, so this can take a while).
        """
        if self._base_targets is None:
            self._base_targets = self._read_base_targets()
        synthetic = self.cache.targets()
        if self._rows is not None:
            synthetic = synthetic[self._rows]
        if self._order is not None:
            synthetic = synthetic[:, self._order]
        if self._target_format == "index":
            return np.concatenate([self._base_targets, synthetic.argmax(axis=1)])
        return np.concatenate([self._base_targets, synthetic.astype(np.float32)])

    @property
    def item_targets(self) -> np.ndarray:
        """The targets items return (before ``target_transform``): :attr:`targets`, with the teacher's
        scores for synthetic items under ``synthetic_targets=NAME``."""
        targets = self.targets
        if self._soft is None:
            return targets
        soft = self._soft if self._rows is None else self._soft[self._rows]
        if self._order is not None:
            soft = soft[:, self._order]
        return np.concatenate([targets[: self.num_real], soft])

    def _read_base_targets(self) -> np.ndarray:
        if hasattr(self.base, "targets"):
            targets = np.asarray(self.base.targets)
        elif isinstance(self.base, TensorDataset) and len(self.base.tensors) == 2:
            targets = self.base.tensors[1].numpy()
        else:
            items = (self.base[i] for i in range(self.num_real))
            key = self.target_key if self._container == "dict" else 1
            targets = np.stack([np.asarray(item[key]) for item in tqdm(items, total=self.num_real, desc="reading base targets")])
        if np.issubdtype(targets.dtype, np.floating) and np.isnan(targets).any():
            index = int(np.flatnonzero(np.isnan(targets.reshape(self.num_real, -1)).any(axis=1))[0])
            raise ValueError(
                f"base target {index} is NaN ({type(self.base).__name__}[{index}]); a missing label cannot be read as "
                "absent. Drop or label such records in the base before wrapping it."
            )
        if self._target_format == "index":
            return targets.astype(np.int64).reshape(self.num_real)
        return to_multi_hot(targets, len(self.classes)).astype(np.float32)

    def _reset_process_state(self) -> None:
        """Forget memory maps opened by another process (the DataLoader's parent); reopen lazily here."""
        self._mmaps, self._synthetic_targets, self._pid = {}, None, os.getpid()

    def _open_shard(self, shard: int) -> np.ndarray:
        if self.on_demand and not self.cache.is_complete(shard):
            build_shard(self.cache, self.generator, shard, blocking=True, batch_size=self.generation_batch_size)
        # Copy-on-write map, viewed as a plain ndarray: writable (so torch.from_numpy does not warn)
        # without ever changing the file, and indexed without np.memmap's per-slice overhead.
        array = self._mmaps[shard] = self.cache.load_shard(shard, mmap_mode="c").view(np.ndarray)
        return array

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if 0 <= index < self.num_real:
            item = self.base[index]
            return item if self.transform is None and self.target_transform is None else self._transform_item(item)
        synthetic = index - self.num_real
        if not 0 <= synthetic < self.num_synthetic:
            raise IndexError(f"index should be in [0, {len(self)}), but got {index}")
        item = self._synthetic_item(self._cache_row(synthetic))
        return item if self.transform is None and self.target_transform is None else self._transform_item(item)

    def _transform_item(self, item):
        """Apply ``transform`` to the signal and ``target_transform`` to the target of an item (a new container)."""
        def signal_of(signal):
            return signal if self.transform is None else self.transform(signal)

        def target_of(target):
            return target if self.target_transform is None else self.target_transform(target)

        if isinstance(item, Mapping):
            item = dict(item)
            item[self.signal_key], item[self.target_key] = signal_of(item[self.signal_key]), target_of(item[self.target_key])
            return item
        signal, target = item
        return type(item)((signal_of(signal), target_of(target))) if isinstance(item, list) else (signal_of(signal), target_of(target))

    def _synthetic_item(self, synthetic: int):
        """The item of cache row ``synthetic``, in the base's structure."""
        if self._pid != os.getpid():
            self._reset_process_state()
        shard, offset = divmod(synthetic, self._shard_size)
        array = self._mmaps.get(shard)
        if array is None:
            array = self._open_shard(shard)
        signal = torch.from_numpy(array[offset]).float()  # float16 -> a new float32 tensor
        if self._convert:
            signal = self._convert_signal(signal)
        target = self._target(synthetic)
        if self._container is tuple:
            return signal, target
        if self._container is list:
            return [signal, target]
        item = {}
        for key in self._keys:
            if key == self.signal_key:
                item[key] = signal
            elif key == self.target_key:
                item[key] = target
            elif key in self._fill_values:
                item[key] = self._fill_values[key]
            else:
                item[key] = self.cache.plan.jobs[key].iat[synthetic]
        return item

    def _convert_signal(self, signal: torch.Tensor):
        if self._reorder or self._resample:
            signal = convert_ecg(signal, source_leads=self.cache.config.lead_order, target_leads=self.lead_order,
                                 num_samples=self.num_samples if self._resample else None)  # fmt: skip
        if self.synthetic_transform is not None:
            signal = self.synthetic_transform(signal)
        if self._signal_type == "torch":
            return signal if signal.dtype == self._signal_dtype else signal.to(self._signal_dtype)
        return signal.numpy().astype(self._signal_dtype, copy=False)

    def _target(self, synthetic: int):
        if self._soft is not None:
            row = self._soft[synthetic]
            row = row if self._order is None else row[self._order]
            if self._target_type == "torch":
                return torch.from_numpy(row.copy()).to(self._target_dtype)
            return row.astype(self._target_dtype)
        if self._synthetic_targets is None:
            self._synthetic_targets = self.cache.targets().view(np.ndarray)
        row = self._synthetic_targets[synthetic]
        if self._order is not None:
            row = row[self._order]
        if self._target_format == "index":
            value = int(row.argmax())
            if self._target_type == "int":
                return value
            if self._target_type == "torch":
                return torch.tensor(value, dtype=self._target_dtype)
            return np.asarray(value, dtype=self._target_dtype)
        if self._target_type == "torch":
            target = torch.from_numpy(row.astype(np.float32))
            return target if self._target_dtype == torch.float32 else target.to(self._target_dtype)
        return row.astype(self._target_dtype)

    def synthetic_info(self, index: int) -> dict:
        """The plan row (labels, report, age, sex, heart_rate, seed...) of synthetic item ``index``."""
        if not self.is_synthetic(index):
            raise ValueError(f"item {index} is real (synthetic items are {self.num_real}..{len(self) - 1})")
        if index < 0:
            index += len(self)
        return self.cache.plan.jobs.iloc[self._cache_row(index - self.num_real)].to_dict()

    # ------------------------------------------------------------------------------- pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mmaps"], state["_synthetic_targets"] = {}, None
        return state

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)} ({self.num_real} real, {self.num_synthetic} synthetic)",
            f"    Base: {type(self.base).__name__}",
            f"    Cache: {self.cache.root} (model {self.cache.config.model_id!r}, {self.cache.config.sampling_rate:g} Hz, "
            f"{self.cache.config.lead_order})",
            f"    Signals: (12, {self.num_samples}) at {self.sampling_rate:g} Hz, leads {self.lead_order}",
            f"    Classes: {self.classes}",
        ]
        if self.on_demand:
            lines.append("    On demand: missing shards are generated on first use")
        if self.selection is not None:
            lines.append(f"    Selection: {self.selection.name!r} ({self.num_synthetic} of {self.cache.num_records} synthetic ECGs kept)")
        if self._soft is not None:
            lines.append(f"    Synthetic targets: teacher scores {self.synthetic_targets!r}")
        if self.synthetic_weight != 1.0:
            lines.append(f"    Synthetic weight: {self.synthetic_weight:g}")
        return "\n".join(lines)


def _is_floating_dtype(dtype) -> bool:
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)


def _is_floating(value) -> bool:
    return value.dtype.is_floating_point if isinstance(value, torch.Tensor) else np.issubdtype(value.dtype, np.floating)

