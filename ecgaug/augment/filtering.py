"""Score a synthetic cache with a classifier: keep the ECGs that look like their labels, or use the scores as soft targets.

A generator that renders a diagnosis only partly writes some ECGs that do not look like their
conditioning labels. Two remedies, both computed once and stored *beside* the shards (never
copying them), bound to the cache they describe (its settings and every shard's sha256; see
:meth:`~ecgaug.augment.cache.SyntheticCache.write_annex`) and checked by ``ecgaug cache verify``:

* **Filtering** (:func:`filter_cache`, ``ecgaug cache filter``): a classifier scores every
  synthetic ECG; an ECG is kept when each of its conditioning labels scores at least that class's
  threshold. The selection (kept ECGs, scores, thresholds, the classifier's fingerprint) is read
  with ``AugmentedDataset(..., selection=NAME)``.
* **Soft targets** (:func:`teacher_scores`): a teacher's scores of every synthetic ECG, read with
  ``AugmentedDataset(..., synthetic_targets=NAME)`` instead of the conditioning labels.

The classifier is any ``torch.nn.Module`` mapping ``(B, 12, L)`` signals (mV, the cache's lead order
and sampling rate, unless ``input_transform`` converts them) to ``(B, C)`` logits, or a checkpoint
written by ``classifiers.train.fit`` (``best.pt`` with its ``state_dict``) plus the model's name
for ``classifiers.create_model``. Its fingerprint is the sha256 of its state dict.

Example::

    from ecgaug.augment.filtering import filter_cache, teacher_scores
    filter_cache("runs/cache", "runs/clf/best.pt", model_name="resnet1d_small", thresholds=0.5, name="clf05")
    train = AugmentedDataset(real, "runs/cache", selection="clf05", synthetic_weight=0.5)
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import CacheMismatchError, CorruptCacheError, SyntheticCache

__all__ = [
    "Selection",
    "classifier_fingerprint",
    "filter_cache",
    "load_classifier",
    "load_scores",
    "load_selection",
    "score_cache",
    "teacher_scores",
]

ACTIVATIONS = ("sigmoid", "softmax")


def _open(cache) -> SyntheticCache:
    return cache if isinstance(cache, SyntheticCache) else SyntheticCache(cache)


def classifier_fingerprint(model: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_classifier(classifier, *, model_name: str | None = None, num_classes: int | None = None, **model_kwargs) -> nn.Module:
    """A classifier module, from a module (returned as is) or a ``classifiers.train.fit`` checkpoint.

    Args:
        classifier: An ``nn.Module``, or the path of a checkpoint holding ``{"state_dict": ...}`` (``best.pt``)
            or a bare state dict.
        model_name: For a checkpoint: the ``classifiers.create_model`` name it was trained as.
        num_classes: For a checkpoint: its number of outputs.
        model_kwargs: Further ``create_model`` arguments (e.g. ``drop_rate``) the model was built with.

    Raises:
        ValueError: if a checkpoint comes without ``model_name``/``num_classes`` or does not fit the model.
    """
    if isinstance(classifier, nn.Module):
        return classifier
    if not isinstance(classifier, (str, os.PathLike)):
        raise TypeError(f"classifier should be an nn.Module or a checkpoint path, but got {type(classifier).__name__}")
    if model_name is None or num_classes is None:
        raise ValueError(f"Loading the checkpoint {classifier} needs model_name= (a classifiers.create_model name) and num_classes=")
    from classifiers import create_model

    checkpoint = torch.load(classifier, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{classifier} holds no state_dict (a classifiers.train.fit checkpoint, best.pt, has one)")
    model = create_model(model_name, num_classes=num_classes, **model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{classifier} does not fit model {model_name!r} with {num_classes} classes: {error}") from None
    return model.eval()


@torch.no_grad()
def score_cache(
    cache,
    classifier: nn.Module,
    *,
    classes: Sequence[str] | None = None,
    activation: str = "sigmoid",
    input_transform: Callable | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
) -> np.ndarray:
    """``(N, C)`` float32 scores of every ECG of a finished cache, in the cache's class order.

    Args:
        cache: A :class:`SyntheticCache` or its folder.
        classifier: Maps ``(B, 12, L)`` float32 signals to ``(B, len(classes))`` logits.
        classes: The classifier's output classes, in order (default: the cache's); must include every cache class.
        activation: ``"sigmoid"`` (multi-label) or ``"softmax"`` (single-label) applied to the logits.
        input_transform: Applied to each ``(B, 12, L)`` batch before the classifier (normalisation,
            resampling or lead reordering to what it was trained on).
        batch_size, device: Of the forward passes.
    """
    cache = _open(cache)
    cache.check_finished()
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation should be one of {ACTIVATIONS}, but got {activation!r}")
    cache_classes = cache.config.classes
    classes = list(cache_classes if classes is None else classes)
    missing = [name for name in cache_classes if name not in classes]
    if missing:
        raise ValueError(f"The classifier's classes {classes} miss the cache's classes {missing}")
    columns = [classes.index(name) for name in cache_classes]
    was_training = classifier.training
    classifier = classifier.to(device).eval()
    scores = np.zeros((cache.num_records, len(cache_classes)), dtype=np.float32)
    try:
        with tqdm(total=cache.num_records, desc="scoring", unit="ecg", disable=not show_progress) as bar:
            for shard in range(cache.num_shards):
                start, stop = cache.shard_bounds(shard)
                signals = cache.load_shard(shard)
                for first in range(0, stop - start, batch_size):
                    batch = torch.from_numpy(np.asarray(signals[first : first + batch_size], dtype=np.float32))
                    if input_transform is not None:
                        batch = input_transform(batch)
                    logits = classifier(batch.to(device)).float()
                    if logits.ndim != 2 or logits.shape[1] != len(classes):
                        raise ValueError(f"the classifier should return (B, {len(classes)}) logits, but returned {tuple(logits.shape)}")
                    probabilities = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
                    scores[start + first : start + first + len(batch)] = probabilities[:, columns].cpu().numpy()
                    bar.update(len(batch))
    finally:
        classifier.train(was_training)
    return scores


def teacher_scores(
    cache,
    teacher,
    *,
    name: str | None = None,
    model_name: str | None = None,
    classes: Sequence[str] | None = None,
    activation: str = "sigmoid",
    input_transform: Callable | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    show_progress: bool = False,
) -> str:
    """Score the cache with ``teacher`` once and store the scores beside the shards; returns their name.

    Stored scores are keyed by the teacher's fingerprint: if scores of the same teacher (and
    activation, without ``input_transform``) are already stored, nothing is computed. Use the name
    as ``AugmentedDataset(..., synthetic_targets=name)``.

    Args:
        teacher: An ``nn.Module`` or a checkpoint path (with ``model_name``), see :func:`load_classifier`.
        name: The stored name (default: ``"teacher-"`` + the first 12 hex digits of the fingerprint).
        Others: as in :func:`score_cache`.
    """
    cache = _open(cache)
    classes = list(cache.config.classes if classes is None else classes)
    model = load_classifier(teacher, model_name=model_name, num_classes=len(classes))
    fingerprint = classifier_fingerprint(model)
    name = name or f"teacher-{fingerprint[:12]}"
    for stored in cache.annex_names("scores"):
        try:
            info, _ = cache.read_annex("scores", stored)
        except (CacheMismatchError, CorruptCacheError):  # made for the cache before a rebuild, or damaged
            overwrite = overwrite or stored == name
            continue
        same = (info.get("classifier_fingerprint"), info.get("activation"), info.get("input_transform")) == (fingerprint, activation, None)
        if same and input_transform is None and not overwrite and (stored == name or name.startswith("teacher-")):
            return stored
    scores = score_cache(cache, model, classes=classes, activation=activation, input_transform=input_transform,
                         batch_size=batch_size, device=device, show_progress=show_progress)  # fmt: skip
    info = {"classifier_fingerprint": fingerprint, "activation": activation, "model_name": model_name,
            "input_transform": None if input_transform is None else repr(input_transform), "classes": cache.config.classes}
    cache.write_annex("scores", name, {"scores": scores}, info, overwrite=overwrite)
    return name


def load_scores(cache, name: str) -> np.ndarray:
    """``(N, C)`` float32 stored teacher scores, in the cache's class order (checked against the cache)."""
    _, arrays = _open(cache).read_annex("scores", name)
    return arrays["scores"]


@dataclass
class Selection:
    """The ECGs of a cache that a classifier kept.

    Attributes:
        name: Its name in the cache (``selections/<name>.json``).
        indices: ``(K,)`` int64 kept cache indices (plan rows), sorted.
        scores: ``(N, C)`` float32 scores of every ECG of the cache, in the cache's class order.
        thresholds: Per class (cache classes; ``None``: that class is not filtered).
        classifier_fingerprint: sha256 of the classifier's state dict.
        kept, total: Per class, synthetic ECGs carrying the class that were kept, and in all.
    """

    name: str
    indices: np.ndarray
    scores: np.ndarray
    thresholds: dict
    classifier_fingerprint: str
    kept: dict
    total: dict


def _thresholds(thresholds, classes: Sequence[str]) -> dict:
    if isinstance(thresholds, Mapping):
        unknown = sorted(set(thresholds) - set(classes))
        if unknown:
            raise ValueError(f"thresholds name classes {unknown} that the cache does not have ({list(classes)})")
        values = {name: thresholds.get(name) for name in classes}
    else:
        values = dict.fromkeys(classes, thresholds)
    for name, value in values.items():
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"the threshold of class {name!r} should be a score in [0, 1], but got {value!r}")
    return {name: None if value is None else float(value) for name, value in values.items()}


def filter_cache(
    cache,
    classifier=None,
    *,
    thresholds: float | Mapping[str, float | None],
    name: str = "default",
    scores: str | None = None,
    model_name: str | None = None,
    classes: Sequence[str] | None = None,
    activation: str = "sigmoid",
    input_transform: Callable | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    show_progress: bool = False,
) -> Selection:
    """Keep the ECGs whose conditioning labels all score at least their class's threshold; store the selection.

    Args:
        cache: A finished :class:`SyntheticCache` or its folder.
        classifier: An ``nn.Module`` or a checkpoint path (with ``model_name``); its scores are also stored
            as teacher scores (see :func:`teacher_scores`), so scoring the cache again costs nothing.
        thresholds: One score for every class, or ``{class: score}`` (classes left out, or ``None``, are not filtered).
        name: Name of the selection, for ``AugmentedDataset(..., selection=name)``.
        scores: Instead of ``classifier``: the name of stored teacher scores to filter by.
        overwrite: Replace an existing selection of that name.
        Others: as in :func:`score_cache`.

    Raises:
        ValueError: if a threshold keeps no ECG of a class that has some (naming the class and its best score).
        FileExistsError: if the selection exists and not ``overwrite``.
    """
    cache = _open(cache)
    cache_classes = cache.config.classes
    limits = _thresholds(thresholds, cache_classes)
    if (classifier is None) == (scores is None):
        raise ValueError("pass exactly one of classifier= (a module or checkpoint) or scores= (the name of stored teacher scores)")
    if name in cache.annex_names("selection") and not overwrite:  # before scoring
        raise FileExistsError(f"{cache.root} already has a selection named {name!r}; choose another name or pass overwrite=True (--overwrite)")
    if scores is None:
        scores = teacher_scores(cache, classifier, model_name=model_name, classes=classes, activation=activation,
                                input_transform=input_transform, batch_size=batch_size, device=device,
                                show_progress=show_progress)  # fmt: skip
    info, arrays = cache.read_annex("scores", scores)
    values = arrays["scores"]
    labels = cache.targets() > 0
    keep = np.ones(len(labels), dtype=bool)
    for c, class_name in enumerate(cache_classes):
        if limits[class_name] is not None:
            keep &= ~labels[:, c] | (values[:, c] >= limits[class_name])
    kept = {n: int((labels[:, c] & keep).sum()) for c, n in enumerate(cache_classes)}
    total = {n: int(labels[:, c].sum()) for c, n in enumerate(cache_classes)}
    for c, class_name in enumerate(cache_classes):
        if total[class_name] and not kept[class_name]:
            best = float(values[labels[:, c], c].max())
            raise ValueError(
                f"The thresholds keep none of the {total[class_name]} synthetic ECGs of class {class_name!r} (threshold "
                f"{limits[class_name]:g}; its ECGs' highest {class_name} score is {best:.3f}, and an ECG is kept only if all its "
                "labels pass). Lower its threshold, or leave the class out of the filter (None)."
            )
    indices = np.flatnonzero(keep).astype(np.int64)
    selection_info = {"classifier_fingerprint": info["classifier_fingerprint"], "activation": info.get("activation"),
                      "model_name": info.get("model_name"), "scores": scores, "thresholds": limits,
                      "kept": kept, "total": total}  # fmt: skip
    cache.write_annex("selection", name, {"indices": indices, "scores": values}, selection_info, overwrite=overwrite)
    return Selection(name, indices, values, limits, info["classifier_fingerprint"], kept, total)


def load_selection(cache, name: str) -> Selection:
    """A stored selection, checked against the cache (see :meth:`SyntheticCache.read_annex`)."""
    info, arrays = _open(cache).read_annex("selection", name)
    return Selection(name, arrays["indices"].astype(np.int64), arrays["scores"], info["thresholds"],
                     info["classifier_fingerprint"], info["kept"], info["total"])  # fmt: skip
