"""The measuring-stick classifiers of the fidelity evaluation (from the downstream ``classifiers`` package).

- :func:`train_or_load_classifier`: a ``resnet1d_small`` trained on real PTB-XL records, for
  superclasses or rhythm statements, cached under a folder named after its settings;
- :func:`train_and_test`: the TSTR / TRTR classifier, trained on given ECGs (generated or real)
  with early stopping on real validation folds, and tested on the real test fold.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ecgaug.data.ptbxl import PTBXL, database_fingerprint
from ecgaug.models.modeling_utils import build_seeded

from .conditions import SAMPLING_RATE, check_folds

__all__ = ["CLASSIFIER_NAME", "classify", "train_and_test", "train_or_load_classifier"]

CLASSIFIER_NAME = "resnet1d_small"


def _new_model(num_classes: int, seed: int):
    from classifiers import create_model

    return build_seeded(seed, create_model, CLASSIFIER_NAME, num_classes=num_classes)


def train_or_load_classifier(ptbxl_root, *, train_folds: Sequence[int], val_folds: Sequence[int], work_dir, task: str = "superdiagnostic",
                             classes: Sequence[str] | None = None, epochs: int = 5, batch_size: int = 128, seed: int = 0,
                             device: str = "cpu", show_progress: bool = True):
    """A ``resnet1d_small`` for ``task`` (and ``classes``, default all of the task) trained on real PTB-XL, cached in ``work_dir``.

    The cache folder ``work_dir/classifier-<hash>`` is named after everything that determines the
    weights (model, task, classes, folds, epochs, batch size, seed, the SHA-256 of
    ``ptbxl_database.csv``), so changed settings train a new classifier instead of reusing a stale one.

    Returns:
        ``(model, classes, info)``: the model in eval mode on ``device``, its class names and a
        JSON-able dict (settings, ``best_val_macro_auc``, ``best_epoch``, ``train_seconds``, ``cached``).
    """
    from classifiers.train import TrainConfig, fit, make_dataloader

    train_folds, val_folds = check_folds(train_folds, "train_folds"), check_folds(val_folds, "val_folds")
    if set(train_folds) & set(val_folds):
        raise ValueError(f"train_folds {list(train_folds)} and val_folds {list(val_folds)} should not overlap.")
    train_set = PTBXL(ptbxl_root, folds=train_folds, sampling_rate=SAMPLING_RATE, task=task, classes=classes, progress=show_progress)
    classes = list(train_set.classes)
    key = {
        "model": CLASSIFIER_NAME, "task": task, "classes": classes, "sampling_rate": SAMPLING_RATE, "train_folds": list(train_folds),
        "val_folds": list(val_folds), "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "ptbxl_database_sha256": database_fingerprint(Path(ptbxl_root)),
    }
    folder = Path(work_dir) / f"classifier-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]}"
    record_path = folder / "classifier.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["key"] != key:
            raise ValueError(f"{record_path} does not match its folder's settings; delete {folder} to retrain.")
        model = _new_model(len(classes), seed)
        model.load_state_dict(torch.load(folder / "best.pt", map_location="cpu", weights_only=True)["state_dict"])
        return model.to(device).eval(), classes, {**record["info"], "cached": True}

    val_set = PTBXL(ptbxl_root, folds=val_folds, sampling_rate=SAMPLING_RATE, task=task, classes=classes, progress=show_progress)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=show_progress)
    model = _new_model(len(classes), seed)
    start = time.perf_counter()
    result = fit(model, make_dataloader(train_set, config, shuffle=True, drop_last=True), make_dataloader(val_set, config), config,
                 out_dir=folder)
    info = {**key, "num_train_records": len(train_set), "num_val_records": len(val_set),
            "best_val_macro_auc": result.best_val_auc, "best_epoch": result.best_epoch, "train_seconds": time.perf_counter() - start}
    record_path.write_text(json.dumps({"key": key, "info": info}, indent=2) + "\n")  # last: marks the cache complete
    return model.to(device).eval(), classes, {**info, "cached": False}


@torch.no_grad()
def classify(model, ecgs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Sigmoid scores ``(N, C)`` of ECGs ``(N, 12, 1000)`` (PTB-XL order, 100 Hz)."""
    model.eval()
    device = next(model.parameters()).device
    scores = [torch.sigmoid(model(ecgs[i:i + batch_size].to(device)).float()).cpu() for i in range(0, len(ecgs), batch_size)]
    return torch.cat(scores).numpy() if scores else np.zeros((0, 0))


def train_and_test(train_ecgs: torch.Tensor, train_labels: np.ndarray, ptbxl_root, *, val_folds: Sequence[int],
                   test_folds: Sequence[int], classes: Sequence[str], epochs: int = 10, batch_size: int = 64, seed: int = 0,
                   device: str = "cpu", show_progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train a fresh ``resnet1d_small`` on ``train_ecgs`` ``(N, 12, 1000)`` / ``train_labels`` ``(N, C)``,
    keep its best epoch on the real ``val_folds``, and score the real ``test_folds``.

    Returns ``(test_scores, test_labels, info)``.
    """
    from classifiers.train import TrainConfig, fit, make_dataloader, predict

    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=show_progress)
    train_set = TensorDataset(train_ecgs.float(), torch.as_tensor(train_labels, dtype=torch.float32))
    val_set = PTBXL(ptbxl_root, folds=check_folds(val_folds, "val_folds"), sampling_rate=SAMPLING_RATE, task="superdiagnostic", classes=list(classes),
                    progress=show_progress)
    test_set = PTBXL(ptbxl_root, folds=check_folds(test_folds, "test_folds"), sampling_rate=SAMPLING_RATE, task="superdiagnostic",
                     classes=list(classes), progress=show_progress)
    model = _new_model(len(classes), seed)
    start = time.perf_counter()
    result = fit(model, make_dataloader(train_set, config, shuffle=True, drop_last=True), make_dataloader(val_set, config), config)
    labels, scores = predict(model, make_dataloader(test_set, config), device=device)
    info = {"model": CLASSIFIER_NAME, "num_train": len(train_set), "num_test": len(test_set), "epochs": epochs,
            "best_epoch": result.best_epoch, "best_val_macro_auc": result.best_val_auc, "train_seconds": time.perf_counter() - start}
    return scores, labels, info
