"""Training loop for multi-label ECG classifiers.

The recipe is the PTB-XL benchmark's fastai one (``fit_one_cycle`` with AdamW, max lr 1e-2, weight
decay 1e-2, batch 128, binary cross-entropy on logits) written out in plain PyTorch:
``BCEWithLogitsLoss`` (optionally class-weighted with ``pos_weight``), ``AdamW``, ``OneCycleLR``
stepped per batch. After every epoch the model is scored on the validation loader; the epoch with the
best validation macro AUC is kept (in memory, and as ``best.pt`` when ``out_dir`` is given), training
stops after ``patience`` epochs without improvement, and the best weights are loaded back into the
model before :func:`fit` returns. The test split is never seen here.

Loaders yield ``(signal, target)`` tuples or ``{"signal": ..., "target": ...}`` dicts with
``signal`` ``(batch, 12, num_samples)`` float32 and ``target`` ``(batch, num_classes)`` in {0, 1}.
Any sampler works (e.g. a class-balanced one); if it has ``set_epoch``, it is called each epoch.

Example::

    config = TrainConfig(epochs=20, batch_size=128, lr=1e-2, patience=5)
    train_loader = make_dataloader(train_set, config, shuffle=True, drop_last=True)
    val_loader = make_dataloader(val_set, config)
    torch.manual_seed(config.seed)  # model initialisation happens outside fit
    model = create_model("xresnet1d101", num_classes=5)
    result = fit(model, train_loader, val_loader, config, out_dir="runs/xresnet")
    y_true, y_score = predict(model, test_loader)
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from classifiers.metrics import macro_auc

__all__ = ["TrainConfig", "FitResult", "fit", "predict", "make_dataloader", "pos_weight_from_targets"]

CHECKPOINT_NAME = "best.pt"
HISTORY_NAME = "history.jsonl"
CONFIG_NAME = "train_config.json"


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit` (defaults: the PTB-XL benchmark's recipe).

    Args:
        epochs: maximum number of epochs; also the length of the one-cycle schedule.
        batch_size: used by :func:`make_dataloader` (``fit`` takes loaders as they are).
        lr: maximum learning rate of the one-cycle schedule.
        weight_decay: AdamW's decoupled weight decay.
        pos_weight: per-class weight of positive targets in the BCE loss (e.g. from
            :func:`pos_weight_from_targets`); ``None`` for an unweighted loss.
        patience: stop after this many epochs without a better validation macro AUC; ``None`` trains
            all ``epochs``.
        pct_start: fraction of the schedule spent increasing the learning rate.
        num_workers: DataLoader workers, used by :func:`make_dataloader`.
        seed: seeds dropout, shuffling and augmentation inside ``fit`` (the caller's global RNG state is
            restored afterwards) and the loader generator of :func:`make_dataloader`.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bf16 autocast for forward passes; CUDA only.
        progress: show tqdm progress bars.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-2
    pos_weight: Sequence[float] | None = None
    patience: int | None = None
    pct_start: float = 0.3
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} should be a positive integer, but got {name}={value!r}.")
        if self.lr <= 0:
            raise ValueError(f"lr should be positive, but got lr={self.lr}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay should be non-negative, but got weight_decay={self.weight_decay}.")
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience > 0):
            raise ValueError(f"patience should be a positive integer or None, but got patience={self.patience!r}.")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start should be in (0, 1), but got pct_start={self.pct_start}.")
        if self.num_workers < 0:
            raise ValueError(f"num_workers should be non-negative, but got num_workers={self.num_workers}.")
        if self.pos_weight is not None:
            self.pos_weight = tuple(float(weight) for weight in np.asarray(self.pos_weight, dtype=np.float64).reshape(-1))
            if not all(weight > 0 and np.isfinite(weight) for weight in self.pos_weight):
                raise ValueError(f"pos_weight should contain positive finite values, but got {self.pos_weight}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        best_val_auc: best validation macro AUC.
        best_epoch: epoch (1-based) that reached it; the model holds that epoch's weights.
        history: one dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_macro_auc``, ``lr``
            (at the end of the epoch), ``seconds``.
        checkpoint_path: ``out_dir / "best.pt"``, or ``None`` without ``out_dir``.
        stopped_early: whether ``patience`` ended training before ``epochs``.
    """

    best_val_auc: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint_path: Path | None = None
    stopped_early: bool = False


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; other values are passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pos_weight_from_targets(targets, max_weight: float = 10.0) -> torch.Tensor:
    """Per-class ``num_negative / num_positive`` for ``BCEWithLogitsLoss(pos_weight=...)``, capped at ``max_weight``.

    The cap keeps very rare classes from dominating the loss and the gradients.

    Args:
        targets: ``(num_records, num_classes)`` multi-hot training targets (array or tensor).
        max_weight: upper bound of each weight.

    Returns:
        float32 tensor ``(num_classes,)``.
    """
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
    if targets.ndim != 2:
        raise ValueError(f"targets should have shape (num_records, num_classes), but got {tuple(targets.shape)}.")
    if max_weight <= 0:
        raise ValueError(f"max_weight should be positive, but got {max_weight}.")
    positives = targets.sum(dim=0)
    missing = torch.nonzero(positives == 0).flatten().tolist()
    if missing:
        raise ValueError(f"Classes {missing} have no positive training record, so their pos_weight is undefined; drop them from the label set.")
    negatives = len(targets) - positives
    return (negatives / positives).clamp(max=max_weight).to(torch.float32)


def make_dataloader(
    dataset: Dataset,
    config: TrainConfig,
    *,
    shuffle: bool = False,
    sampler: Sampler[int] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with ``config.batch_size`` and ``config.num_workers`` and a generator seeded with ``config.seed``.

    Use ``drop_last=True`` for training loaders: BatchNorm layers in the heads cannot train on a final
    batch of one record. ``sampler`` (e.g. a class-balanced sampler) and ``shuffle`` are mutually exclusive.
    """
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=config.num_workers,
        generator=generator,
        drop_last=drop_last,
        pin_memory=resolve_device(config.device).type == "cuda",
        persistent_workers=config.num_workers > 0,
    )


def _unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        missing = {"signal", "target"} - set(batch)
        if missing:
            raise KeyError(f"Dict batches should have keys 'signal' and 'target', but {sorted(missing)} are missing (keys: {sorted(batch)}).")
        return batch["signal"], batch["target"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        f"Loader items should be (signal, target) pairs or dicts with 'signal' and 'target', but got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        + "."
    )


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def _check_amp(device: torch.device, amp: bool) -> None:
    if amp and device.type != "cuda":
        raise ValueError(f"amp=True uses bf16 autocast, which is supported on CUDA only, but the device is {device}; set amp=False.")


@torch.no_grad()
def _predict_logits(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated targets and float32 logits over ``loader``, both on the CPU."""
    was_training = model.training
    model.eval()
    targets, logits = [], []
    try:
        for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
            signal, target = _unpack_batch(batch)
            with _autocast(device, amp):
                output = model(signal.to(device, non_blocking=True))
            logits.append(output.float().cpu())
            targets.append(torch.as_tensor(target).float().cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("The loader yielded no batches; it needs at least one record.")
    return torch.cat(targets), torch.cat(logits)


def predict(model: nn.Module, loader: DataLoader, *, device: str | torch.device | None = None, amp: bool = False, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores of ``model`` over ``loader`` in eval mode (the model's train/eval mode is restored).

    Args:
        device: where to run; defaults to the device of the model's parameters.
        amp: bf16 autocast (CUDA only).

    Returns:
        ``(y_true, y_score)``, float32 arrays ``(num_records, num_classes)`` in loader order.
    """
    device = next(model.parameters()).device if device is None else resolve_device(device)
    _check_amp(device, amp)
    model.to(device)
    targets, logits = _predict_logits(model, loader, device, amp, progress)
    return targets.numpy(), torch.sigmoid(logits).numpy()


def _check_logits(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"The model's logits have shape {tuple(logits.shape)} but the targets have shape {tuple(target.shape)}; "
            "create the model with num_classes equal to the number of target columns."
        )


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, config: TrainConfig, *, out_dir: str | Path | None = None) -> FitResult:
    """Train ``model`` and keep the epoch with the best validation macro AUC.

    Args:
        model: maps ``(batch, leads, num_samples)`` to logits ``(batch, num_classes)``; its initial weights
            are the caller's (seed before creating it for reproducible runs).
        train_loader: training batches, any sampler; must have a length.
        val_loader: validation batches; every class needs a positive and a negative record.
        config: see :class:`TrainConfig`.
        out_dir: if given, receives ``train_config.json``, ``history.jsonl`` (one line per epoch) and
            ``best.pt`` (``state_dict``, ``epoch``, ``val_macro_auc``, ``train_config``).

    Returns:
        A :class:`FitResult`; ``model`` holds the weights of ``best_epoch`` on return.
    """
    device = resolve_device(config.device)
    _check_amp(device, config.amp)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("train_loader yields no batches; check the dataset size, batch_size and drop_last.")

    checkpoint_path = history_path = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))
        checkpoint_path, history_path = out_dir / CHECKPOINT_NAME, out_dir / HISTORY_NAME
        history_path.write_text("")

    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        model.to(device)
        pos_weight = None if config.pos_weight is None else torch.tensor(config.pos_weight, dtype=torch.float32)
        criterion = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None else pos_weight.to(device))
        val_criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)  # on CPU logits
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=config.pct_start
        )

        history: list[dict[str, float]] = []
        best_val_auc, best_epoch, best_state = -np.inf, 0, None
        epochs_without_improvement = 0
        stopped_early = False
        epoch_bar = tqdm(range(1, config.epochs + 1), desc="epochs", disable=not config.progress)
        for epoch in epoch_bar:
            start = time.perf_counter()
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

            model.train()
            loss_sum, num_batches = 0.0, 0
            batch_bar = tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not config.progress)
            for batch in batch_bar:
                signal, target = _unpack_batch(batch)
                signal = signal.to(device, non_blocking=True)
                target = torch.as_tensor(target).to(device, dtype=torch.float32, non_blocking=True)
                with _autocast(device, config.amp):
                    logits = model(signal)
                _check_logits(logits, target)
                loss = criterion(logits.float(), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_value = loss.item()
                if not np.isfinite(loss_value):
                    raise FloatingPointError(f"The training loss became {loss_value} in epoch {epoch}; lower config.lr or check the inputs for NaN.")
                loss_sum += loss_value
                num_batches += 1
                batch_bar.set_postfix(loss=f"{loss_value:.4f}")

            val_target, val_logits = _predict_logits(model, val_loader, device, config.amp, progress=False)
            _check_logits(val_logits, val_target)
            val_auc = macro_auc(val_target.numpy(), val_logits.numpy())
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / num_batches,
                "val_loss": float(val_criterion(val_logits, val_target)),
                "val_macro_auc": val_auc,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - start,
            }
            history.append(record)
            if history_path is not None:
                with history_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")

            if val_auc > best_val_auc:
                best_val_auc, best_epoch = val_auc, epoch
                best_state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
                epochs_without_improvement = 0
                if checkpoint_path is not None:
                    torch.save(
                        {"state_dict": best_state, "epoch": epoch, "val_macro_auc": val_auc, "train_config": config.to_dict()},
                        checkpoint_path,
                    )
            else:
                epochs_without_improvement += 1
            epoch_bar.set_postfix(val_auc=f"{val_auc:.4f}", best=f"{best_val_auc:.4f}@{best_epoch}")
            if config.patience is not None and epochs_without_improvement >= config.patience:
                stopped_early = epoch < config.epochs
                break

    model.load_state_dict(best_state)
    return FitResult(
        best_val_auc=best_val_auc,
        best_epoch=best_epoch,
        history=history,
        checkpoint_path=checkpoint_path,
        stopped_early=stopped_early,
    )
