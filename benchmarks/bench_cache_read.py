"""Benchmark: reading synthetic ECGs from the cache through ``AugmentedDataset``.

Writes a cache of random ECGs (100 Hz, 10 s, 12 leads, float16) directly with the cache writer,
plus a preprocessed float32 memory map of random "real" ECGs read the way ``PTBXL`` reads its
own, then measures in one process:

1. real ECGs/s from the plain memory-mapped dataset (the baseline),
2. the integrity check a process makes the first time it maps each shard (sha256, finite
   values), against mapping the shards unchecked: its cost per process and epoch,
3. synthetic ECGs/s through ``AugmentedDataset`` (random and sequential order, after the first
   touch), and the wrapper's cost relative to the baseline,
4. real ECGs/s through ``AugmentedDataset`` (the pass-through cost),
5. memory: private (anonymous) and file-backed resident memory of a fresh process that opens a
   small and the full cache and reads from it, and along one full pass over the full cache.

The last line is ``cache_read_ecgs_per_s: N`` (synthetic items through ``AugmentedDataset``,
random order, shards already checked); the line before, ``first_epoch_ecgs_per_s``, includes
the integrity check of every shard, i.e. one random-order epoch in a fresh process. Everything is written under ``--root`` and deleted at the end unless ``--keep``.

    python benchmarks/bench_cache_read.py                   # 100,000 synthetic ECGs, ~2.4 GB in /tmp
    python benchmarks/bench_cache_read.py --num_ecgs 5000   # a quick run
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ecgaug.augment.cache import CacheConfig, SyntheticCache
from ecgaug.augment.dataset import AugmentedDataset
from ecgaug.augment.plan import JOB_COLUMNS, GenerationPlan, job_seed

CLASSES = ["NORM", "MI", "STTC", "CD", "HYP"]
NUM_SAMPLES = 1000  # 10 s at 100 Hz


class MemmapECGs(Dataset):
    """A preprocessed real data set: ``(N, 12, L)`` float32 ``.npy`` read like ``PTBXL(preprocessed=True)``."""

    lead_order = "ptbxl"
    sampling_rate = 100
    classes = CLASSES

    def __init__(self, path: Path, targets: np.ndarray):
        self.path, self.targets, self._signals = path, targets, None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if self._signals is None:
            self._signals = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._signals[index])), torch.from_numpy(self.targets[index].copy())

    def __getstate__(self):
        return {**self.__dict__, "_signals": None}


def random_targets(rng: np.random.Generator, num: int) -> np.ndarray:
    targets = (rng.random((num, len(CLASSES))) < 0.25).astype(np.float32)
    targets[np.arange(num), rng.integers(len(CLASSES), size=num)] = 1.0
    return targets


def write_random_cache(root: Path, num_ecgs: int, shard_size: int, seed: int) -> SyntheticCache:
    """A cache of ``num_ecgs`` random ECGs written shard by shard with ``SyntheticCache.write_shard``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(CLASSES), size=num_ecgs)
    jobs = pd.DataFrame(
        {
            "index": np.arange(num_ecgs),
            "labels": np.asarray(CLASSES, dtype=object)[labels],
            "report": "random ECG for benchmarking",
            "age": rng.uniform(20, 90, num_ecgs).round(1),
            "sex": np.where(rng.random(num_ecgs) < 0.5, "M", "F"),
            "heart_rate": rng.uniform(50, 110, num_ecgs).round(1),
            "seed": [job_seed(seed, i) for i in range(num_ecgs)],
        },
        columns=list(JOB_COLUMNS),
    )
    plan = GenerationPlan(jobs, CLASSES)
    config = CacheConfig.for_plan(plan, model_id="random-bench", sampler="none", shard_size=shard_size)
    cache = SyntheticCache.create(root, config, plan, overwrite=True)
    for shard in tqdm(range(cache.num_shards), desc=f"writing {num_ecgs} random ECGs", unit="shard"):
        start, stop = cache.shard_bounds(shard)
        signals = rng.standard_normal((stop - start, 12, NUM_SAMPLES), dtype=np.float32)
        with cache.lock_shard(shard):
            cache.write_shard(shard, signals)
    cache.merge_manifest()
    return cache


def ecgs_per_second(dataset, indices: np.ndarray, repeats: int = 3) -> float:
    """Median over ``repeats`` passes of ``dataset[i]`` for every ``i`` in ``indices``."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in indices.tolist():
            dataset[index]
        rates.append(len(indices) / (time.perf_counter() - start))
    return float(np.median(rates))


def memory_kib() -> dict[str, int]:
    """Resident memory of this process from /proc: private heap (RssAnon) and mapped files (RssFile)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


def memory_probe(cache_dir: str, real_path: str, num_real: int, num_reads: int, full_pass: bool) -> dict:
    """Run in a fresh process: memory after opening the data set, after random reads, along a full pass."""
    before = memory_kib()
    base = MemmapECGs(Path(real_path), random_targets(np.random.default_rng(0), num_real))
    dataset = AugmentedDataset(base, cache_dir)
    opened = memory_kib()
    rng = np.random.default_rng(1)
    for index in rng.integers(dataset.num_real, len(dataset), size=num_reads).tolist():
        dataset[index]
    read = memory_kib()
    trace = []
    if full_pass:
        step = max(1, dataset.num_synthetic // 10)
        for offset in range(dataset.num_synthetic):
            dataset[dataset.num_real + offset]
            if (offset + 1) % step == 0:
                trace.append((offset + 1, memory_kib()["RssAnon"]))
    return {"num_synthetic": dataset.num_synthetic, "before": before, "opened": opened, "read": read, "trace": trace}


def run_probe(cache_dir: Path, real_path: Path, num_real: int, num_reads: int, full_pass: bool) -> dict:
    command = [sys.executable, __file__, "--_probe", json.dumps([str(cache_dir), str(real_path), num_real, num_reads, full_pass])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/ecgaug_bench_cache", help="scratch folder (deleted at the end)")
    parser.add_argument("--num_ecgs", type=int, default=100_000, help="synthetic ECGs in the large cache")
    parser.add_argument("--num_small", type=int, default=10_000, help="synthetic ECGs in the small cache (memory)")
    parser.add_argument("--num_real", type=int, default=20_000, help="real ECGs in the preprocessed memory map")
    parser.add_argument("--num_reads", type=int, default=20_000, help="items read per timed pass")
    parser.add_argument("--shard_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--_probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._probe:
        print(json.dumps(memory_probe(*json.loads(args._probe))))
        return

    torch.set_num_threads(1)
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        rng = np.random.default_rng(args.seed)
        real_path = root / "real_signals.npy"
        real = np.lib.format.open_memmap(real_path, mode="w+", dtype=np.float32, shape=(args.num_real, 12, NUM_SAMPLES))
        for start in range(0, args.num_real, 1000):
            real[start : start + 1000] = rng.standard_normal(real[start : start + 1000].shape, dtype=np.float32)
        real.flush()
        del real
        targets = random_targets(rng, args.num_real)

        start = time.perf_counter()
        large = write_random_cache(root / "large", args.num_ecgs, args.shard_size, args.seed)
        write_seconds = time.perf_counter() - start
        small = write_random_cache(root / "small", args.num_small, args.shard_size, args.seed + 1)
        print(f"cache: {args.num_ecgs} ECGs, {large.num_shards} shards, "
              f"{large.summary()['disk_bytes'] / 2**30:.2f} GiB, written at {args.num_ecgs / write_seconds:,.0f} ECGs/s")  # fmt: skip

        base = MemmapECGs(real_path, targets)
        start = time.perf_counter()
        dataset = AugmentedDataset(base, large.root)
        print(f"AugmentedDataset over {len(dataset)} items opened in {time.perf_counter() - start:.2f} s")
        real_indices = rng.integers(0, args.num_real, size=args.num_reads)
        synthetic_indices = rng.integers(dataset.num_real, len(dataset), size=args.num_reads)
        sequential_indices = dataset.num_real + np.arange(min(args.num_reads, dataset.num_synthetic))
        start = time.perf_counter()
        for index in range(dataset.num_real, len(dataset), large.shard_size):  # first touch: check and map every shard
            dataset[index]
        first_touch = time.perf_counter() - start
        start = time.perf_counter()
        for shard in range(large.num_shards):  # what the first touch costs without the check
            np.load(large.shard_path(shard), mmap_mode="c")[0]
        map_only = time.perf_counter() - start
        base[0]

        real_rate = ecgs_per_second(base, real_indices)
        synthetic_rate = ecgs_per_second(dataset, synthetic_indices)
        sequential_rate = ecgs_per_second(dataset, sequential_indices)
        passthrough_rate = ecgs_per_second(dataset, real_indices)
        print(f"real ECGs, plain memory map (float32):          {real_rate:>10,.0f} ECGs/s")
        print(f"synthetic ECGs via AugmentedDataset (random):   {synthetic_rate:>10,.0f} ECGs/s "
              f"({real_rate / synthetic_rate - 1:+.1%} time per ECG vs real)")  # fmt: skip
        print(f"synthetic ECGs via AugmentedDataset (in order): {sequential_rate:>10,.0f} ECGs/s")
        print(f"real ECGs via AugmentedDataset (pass-through):  {passthrough_rate:>10,.0f} ECGs/s "
              f"({real_rate / passthrough_rate - 1:+.1%} time per ECG vs plain)")  # fmt: skip
        check = first_touch - map_only
        epoch = dataset.num_synthetic / synthetic_rate
        first_epoch_rate = dataset.num_synthetic / (epoch + check)
        print(f"integrity check at first touch of {large.num_shards} shards: {first_touch:.2f} s checked, {map_only:.3f} s "
              f"unchecked ({large.summary()['disk_bytes'] / 2**30 / check:.2f} GiB/s): +{check:.2f} s once per process, "
              f"+{check / epoch:.0%} on one random-order epoch of {dataset.num_synthetic:,} ECGs ({epoch:.2f} s)")  # fmt: skip

        small_probe = run_probe(small.root, real_path, args.num_real, args.num_reads, full_pass=False)
        large_probe = run_probe(large.root, real_path, args.num_real, args.num_reads, full_pass=True)
        for probe in (small_probe, large_probe):
            opened = probe["opened"]["RssAnon"] - probe["before"]["RssAnon"]
            read = probe["read"]["RssAnon"] - probe["before"]["RssAnon"]
            mapped = probe["read"]["RssFile"] - probe["before"]["RssFile"]
            print(f"memory, cache of {probe['num_synthetic']:>7} ECGs: private +{opened / 1024:.1f} MiB after opening, "
                  f"+{read / 1024:.1f} MiB after {args.num_reads} random reads; mapped cache pages resident "
                  f"+{mapped / 1024:.0f} MiB (shared page cache, reclaimable)")  # fmt: skip
        trace = large_probe["trace"]
        print("private memory along one full pass over the large cache (MiB @ ECGs read): "
              + ", ".join(f"{kib / 1024:.1f} @ {count:,}" for count, kib in trace))  # fmt: skip
        print(f"first_epoch_ecgs_per_s: {first_epoch_rate:.0f}")
        print(f"cache_read_ecgs_per_s: {synthetic_rate:.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
