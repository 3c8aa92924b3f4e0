from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler, TensorDataset

from classifiers import create_model
from classifiers.metrics import macro_auc
from classifiers.train import FitResult, TrainConfig, fit, make_dataloader, pos_weight_from_targets, predict

NUM_SAMPLES = 250
NUM_CLASSES = 2


def _separable_dataset(num_records: int, seed: int) -> TensorDataset:
    """Class c adds a 5 Hz burst of 0.5 mV to lead c; everything else is noise."""
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(num_records, NUM_CLASSES, generator=generator) < 0.5).float()
    targets[0], targets[1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # both labels in every split
    signals = 0.2 * torch.randn(num_records, 12, NUM_SAMPLES, generator=generator)
    burst = 0.5 * torch.sin(2 * np.pi * 5 * torch.arange(NUM_SAMPLES) / 100)
    for c in range(NUM_CLASSES):
        signals[:, c] += targets[:, c : c + 1] * burst
    return TensorDataset(signals, targets)


class DictDataset(Dataset):
    def __init__(self, base: TensorDataset):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        signal, target = self.base[index]
        return {"signal": signal, "target": target, "record_id": index}


class RecordingSampler(Sampler[int]):
    """Sequential order; remembers the epochs it was told about."""

    def __init__(self, num_records: int):
        self.num_records = num_records
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(range(self.num_records))

    def __len__(self):
        return self.num_records


class FixedRankingModel(nn.Module):
    """Logits = fixed projection of the input + a learnable bias: training never changes the ranking."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(NUM_CLASSES))

    def forward(self, x):
        return x[:, :NUM_CLASSES].mean(dim=-1) + self.bias


@pytest.fixture(scope="module")
def splits():
    return _separable_dataset(64, seed=0), _separable_dataset(32, seed=1)


def _config(**overrides) -> TrainConfig:
    values = dict(epochs=3, batch_size=16, lr=1e-2, seed=0, device="cpu", progress=False)
    values.update(overrides)
    return TrainConfig(**values)


def _fit_small(splits, config, out_dir=None) -> tuple[nn.Module, FitResult]:
    train_set, val_set = splits
    torch.manual_seed(config.seed)
    model = create_model("resnet1d_small", num_classes=NUM_CLASSES)
    result = fit(
        model,
        make_dataloader(train_set, config, shuffle=True, drop_last=True),
        make_dataloader(val_set, config),
        config,
        out_dir=out_dir,
    )
    return model, result


def test_fit_learns_and_keeps_the_best_validation_epoch(splits, tmp_path):
    config = _config()
    model, result = _fit_small(splits, config, out_dir=tmp_path)

    assert result.best_val_auc > 0.8
    val_aucs = [record["val_macro_auc"] for record in result.history]
    assert len(val_aucs) == 3
    assert result.best_epoch == 1 + int(np.argmax(val_aucs))
    assert result.best_val_auc == max(val_aucs)

    # The model holds the best epoch's weights, and so does the checkpoint.
    y_true, y_score = predict(model, make_dataloader(splits[1], config))
    assert macro_auc(y_true, y_score) == pytest.approx(result.best_val_auc, abs=1e-12)
    checkpoint = torch.load(result.checkpoint_path)
    assert checkpoint["epoch"] == result.best_epoch
    for key, value in model.state_dict().items():
        torch.testing.assert_close(checkpoint["state_dict"][key], value, rtol=0, atol=0)

    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    assert json.loads((tmp_path / "train_config.json").read_text())["epochs"] == 3


def test_fit_is_deterministic_given_the_seed(splits):
    config = _config(epochs=2)
    _, first = _fit_small(splits, config)
    _, second = _fit_small(splits, config)
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]
    assert [r["val_macro_auc"] for r in first.history] == [r["val_macro_auc"] for r in second.history]


def test_early_stopping_and_set_epoch_and_dict_items(splits):
    train_set, val_set = splits
    sampler = RecordingSampler(len(train_set))
    config = _config(epochs=10, patience=2, lr=1e-3)
    train_loader = make_dataloader(DictDataset(train_set), config, sampler=sampler)
    result = fit(FixedRankingModel(), train_loader, make_dataloader(DictDataset(val_set), config), config)
    assert result.best_epoch == 1  # the ranking never changes, so later epochs never improve
    assert len(result.history) == 3 and result.stopped_early
    assert sampler.epochs == [1, 2, 3]
    assert result.checkpoint_path is None


def test_pos_weight_from_targets():
    targets = np.array([[1, 1], [0, 0], [0, 0], [0, 0], [1, 0]] + [[0, 0]] * 45)
    weights = pos_weight_from_targets(targets, max_weight=20.0)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor([48 / 2, 49 / 1]).clamp(max=20.0))
    with pytest.raises(ValueError, match=r"Classes \[1\] have no positive"):
        pos_weight_from_targets(np.array([[1, 0], [0, 0]]))


def test_fit_accepts_pos_weight(splits):
    config = _config(epochs=1, pos_weight=pos_weight_from_targets(splits[0].tensors[1]))
    assert len(config.pos_weight) == NUM_CLASSES
    _, result = _fit_small(splits, config)
    assert np.isfinite(result.history[0]["train_loss"])


def test_errors_name_the_problem(splits):
    with pytest.raises(ValueError, match="amp=True.*CUDA"):
        fit(FixedRankingModel(), None, None, _config(amp=True))
    with pytest.raises(ValueError, match="patience should be a positive integer"):
        _config(patience=0)
    config = _config(epochs=1)
    model = create_model("resnet1d_small", num_classes=3)
    with pytest.raises(ValueError, match="num_classes equal to the number of target columns"):
        fit(model, make_dataloader(splits[0], config, drop_last=True), make_dataloader(splits[1], config), config)
