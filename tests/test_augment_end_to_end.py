"""End to end with the shipped model: plan from (fake) PTB-XL, build a cache, train-time loading."""
import pytest
import torch
from torch.utils.data import DataLoader

from ecgaug.augment import AugmentedDataset, ClassBalancedSampler, SyntheticCache
from ecgaug.commands.cache import register
from ecgaug.data import PTBXL
from ecgaug.pipeline import list_pretrained
from ecgaug.settings import DEFAULT_MODEL

from ptbxl_fixture import make_ptbxl

pytestmark = [pytest.mark.slow, pytest.mark.skipif(DEFAULT_MODEL not in list_pretrained(), reason="shipped model missing")]


def ecgaug_cache(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="ecgaug")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", *argv])
    return args.func(args)


def test_cache_build_with_ptbxl_lite_feeds_a_balanced_dataloader(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl", num_records=60)
    cache_dir = tmp_path / "cache"
    build = ["build", "--ptbxl", str(root), "--output_dir", str(cache_dir), "--model", DEFAULT_MODEL,
             "--num_inference_steps", "3", "--shard_size", "16", "--device", "cpu", "--no_progress"]
    assert ecgaug_cache(build) == 0
    assert ecgaug_cache(["verify", str(cache_dir)]) == 0

    real = PTBXL(root, "train")
    train = AugmentedDataset(real, cache_dir)
    assert train.num_real == len(real) and train.num_synthetic == len(SyntheticCache(cache_dir).targets())
    counts_before = real.targets.sum(0)
    counts_after = train.targets.sum(0)
    assert counts_after.max() == counts_before.max()  # balanced up to the largest class, never beyond
    assert (counts_after >= counts_before).all() and counts_after.min() > counts_before.min()

    signal, target = train[len(train) - 1]
    assert train.is_synthetic(len(train) - 1) and not train.is_synthetic(0)
    assert signal.shape == real[0][0].shape and signal.dtype == torch.float32 and target.shape == real[0][1].shape
    assert torch.isfinite(signal).all() and 0.01 < signal.std() < 5  # mV-scale ECG, not noise blow-up

    sampler = ClassBalancedSampler.from_dataset(train, max_synthetic_fraction=0.5, batch_size=8, seed=0)
    loader = DataLoader(train, batch_size=8, sampler=sampler, num_workers=2)
    sampler.set_epoch(0)
    batches = list(loader)
    assert sum(len(b[0]) for b in batches) == len(sampler)
    drawn = list(iter(sampler))
    assert train.synthetic_mask[drawn].mean() <= 0.5
