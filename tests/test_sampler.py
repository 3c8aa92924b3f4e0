import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ecgaug.augment.sampler import ClassBalancedSampler, class_balanced_weights

# 100 single-label items: class 0 x70, class 1 x20, class 2 x10
SINGLE = np.array([0] * 70 + [1] * 20 + [2] * 10)
# multi-label: 60 A, 30 A+B, 10 C, 5 unlabelled; items 80.. are "synthetic"
MULTI = np.array([[1, 0, 0]] * 60 + [[1, 1, 0]] * 30 + [[0, 0, 1]] * 10 + [[0, 0, 0]] * 5)
SYNTHETIC = np.arange(len(MULTI)) >= 80


def class_frequencies(sampler, labels):
    drawn = labels[list(sampler)]
    return np.bincount(drawn, minlength=labels.max() + 1) / len(drawn)


def test_single_label_draws_are_class_balanced():
    sampler = ClassBalancedSampler(SINGLE, num_samples=6000, seed=0)
    np.testing.assert_allclose(class_frequencies(sampler, SINGLE), [1 / 3] * 3, atol=0.03)


def test_multi_label_weights_pick_a_class_then_an_item():
    weights = class_balanced_weights(MULTI)
    # groups: A (90 items), B (30), C (10), unlabelled (5); each group gets 1/4 of the mass
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] == pytest.approx(1 / 4 / 90) and weights[60] == pytest.approx(1 / 4 / 90 + 1 / 4 / 30)
    assert weights[90] == pytest.approx(1 / 4 / 10) and weights[100] == pytest.approx(1 / 4 / 5)
    drawn = MULTI[list(ClassBalancedSampler(MULTI, num_samples=8000, seed=1))]
    # B is reached through its own 1/4 and through the A+B items picked on A's turn: 1/4 + 1/4 * 30/90
    np.testing.assert_allclose(drawn[:, 1].mean(), 1 / 3, atol=0.03)
    np.testing.assert_allclose(drawn[:, 2].mean(), 0.25, atol=0.03)


def test_same_seed_and_epoch_repeat_and_epochs_differ():
    first, second = ClassBalancedSampler(SINGLE, seed=3), ClassBalancedSampler(SINGLE, seed=3)
    assert list(first) == list(second)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    second.set_epoch(1)
    assert list(first) == list(second)


def test_generator_makes_single_process_runs_reproducible():
    runs = [list(ClassBalancedSampler(SINGLE, generator=torch.Generator().manual_seed(7))) for _ in range(2)]
    assert runs[0] == runs[1]
    sampler = ClassBalancedSampler(SINGLE, generator=torch.Generator().manual_seed(7))
    assert list(sampler) != list(sampler), "successive epochs continue the generator's stream"


def test_ranks_share_one_epoch_without_overlap():
    full = list(ClassBalancedSampler(SINGLE, num_samples=30, seed=5, num_replicas=1, rank=0))
    shards = [ClassBalancedSampler(SINGLE, num_samples=30, seed=5, num_replicas=3, rank=r) for r in range(3)]
    assert [len(s) for s in shards] == [10, 10, 10]
    streams = [list(s) for s in shards]
    interleaved = [streams[i % 3][i // 3] for i in range(30)]
    assert interleaved == full
    uneven = [ClassBalancedSampler(SINGLE, num_samples=31, num_replicas=4, rank=r) for r in range(4)]
    assert {len(s) for s in uneven} == {8} and {len(list(s)) for s in uneven} == {8}


def test_without_replacement_each_item_once_and_ranks_disjoint():
    streams = [list(ClassBalancedSampler(SINGLE, num_samples=60, replacement=False, num_replicas=2, rank=r)) for r in range(2)]
    together = streams[0] + streams[1]
    assert len(together) == len(set(together)) == 60


@pytest.mark.parametrize("batch_size", [8, None])
def test_synthetic_share_is_capped(batch_size):
    # synthetic items hold half of the A+B items and all of the B class mass; uncapped they are ~40% of draws
    sampler = ClassBalancedSampler(MULTI, num_samples=800, synthetic_mask=SYNTHETIC, max_synthetic_fraction=0.25,
                                   batch_size=batch_size, seed=0)  # fmt: skip
    drawn = np.array(list(sampler))
    chunk = batch_size or len(drawn)
    for start in range(0, len(drawn), chunk):
        part = drawn[start : start + chunk]
        assert SYNTHETIC[part].sum() <= math.floor(0.25 * len(part))
    uncapped = np.array(list(ClassBalancedSampler(MULTI, num_samples=800, seed=0)))
    assert SYNTHETIC[uncapped].mean() > 0.3, "the cap should have had work to do"
    zero = ClassBalancedSampler(MULTI, synthetic_mask=SYNTHETIC, max_synthetic_fraction=0.0, replacement=False, num_samples=70)
    assert not SYNTHETIC[list(zero)].any() and len(set(zero)) == 70


def test_from_dataset_uses_targets_and_synthetic_mask():
    dataset = SimpleNamespace(targets=MULTI, synthetic_mask=SYNTHETIC)
    sampler = ClassBalancedSampler.from_dataset(dataset, max_synthetic_fraction=0.0)
    assert not SYNTHETIC[list(sampler)].any()
    with pytest.raises(TypeError, match="no `targets`"):
        ClassBalancedSampler.from_dataset(object())


@pytest.mark.parametrize("kwargs, message", [
    ({"num_samples": 0}, "num_samples should be a positive integer value, but got num_samples=0"),
    ({"num_samples": 200, "replacement": False}, "should be at most the number of items"),
    ({"max_synthetic_fraction": 0.5}, "needs synthetic_mask"),
    ({"max_synthetic_fraction": 1.5, "synthetic_mask": SYNTHETIC}, r"in \[0, 1\]"),
    ({"synthetic_mask": SYNTHETIC[:10]}, r"shape \(105,\)"),
    ({"generator": torch.Generator(), "num_replicas": 2, "rank": 0}, "pass seed="),
    ({"num_replicas": 2, "rank": 2}, r"rank should be in \[0, num_replicas\)"),
    ({"batch_size": 0}, "batch_size should be a positive integer"),
])  # fmt: skip
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassBalancedSampler(MULTI, **kwargs)


def test_a_class_without_items_is_named_in_a_warning():
    targets = np.array([[1, 0, 0]] * 5 + [[1, 0, 1]] * 3)  # column 1 ("MI") has no item
    with pytest.warns(UserWarning, match=r"never be drawn: 'MI' \(index 1\)"):
        ClassBalancedSampler.from_dataset(SimpleNamespace(targets=targets, classes=["NORM", "MI", "CD"]))
    with pytest.warns(UserWarning, match="index 2"):  # class indices: absent ones are known from the class names
        ClassBalancedSampler(np.array([0, 1, 1, 0]), classes=["a", "b", "c"])


def test_no_warning_when_every_class_has_items(recwarn):
    ClassBalancedSampler(MULTI, classes=["A", "B", "C"])
    ClassBalancedSampler(SINGLE)
    assert not [w for w in recwarn if "never be drawn" in str(w.message)]
