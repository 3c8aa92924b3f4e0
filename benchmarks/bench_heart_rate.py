"""Speed of the heart-rate detector on real PTB-XL records, and its agreement with wfdb's GQRS.

    python benchmarks/bench_heart_rate.py --ptbxl datasets/ptbxl [--records 2000] [--agreement_records 2000]

Speed: ``ecgaug.data.heart_rate.heart_rates`` on ``--records`` random records held in memory,
in one process, in two processes (fork, each measuring half) and with two threads
(``measure_heart_rates(num_workers=2)``); then the first run's pass, ``measure_heart_rates`` over
the whole memory-mapped signal cache in one process.

Agreement: on ``--agreement_records`` random records, the rate GQRS gave before (the median of
``60 / median(RR)`` over leads II, V1 and V5, NaN unless two leads are measurable), within 2 and
5 bpm where both measure, separately where GQRS's three leads agree with each other within 2 bpm;
and the records only one of them measures.

The last line is ``heart_rate_ecgs_per_s: N``, the whole-database first-run pass.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ecgaug.data.heart_rate import detect_beats, heart_rates, measure_heart_rates, rates_from_beats  # noqa: E402
from ecgaug.data.ptbxl import build_signal_cache  # noqa: E402

SAMPLING_RATE = 100
GQRS_LEADS = (1, 6, 10)  # II, V1, V5 in PTB-XL order
_SHARED: np.ndarray | None = None  # the records, inherited by forked workers


def gqrs_rates(signals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The previous method: ``(N,)`` record rates, ``(N, 3)`` per-lead rates (NaN where unmeasurable) and per-lead beat counts."""
    from wfdb.processing import gqrs_detect

    per_lead = np.full((len(signals), len(GQRS_LEADS)), np.nan)
    counts = np.zeros((len(signals), len(GQRS_LEADS)), dtype=np.int64)
    for i, signal in enumerate(signals):
        for j, lead in enumerate(GQRS_LEADS):
            x = np.nan_to_num(signal[lead].astype(np.float64))
            if np.ptp(x) < 1e-3:
                continue
            peaks = gqrs_detect(sig=x, fs=SAMPLING_RATE)
            counts[i, j] = len(peaks)
            if len(peaks) >= 3:
                rate = 60.0 * SAMPLING_RATE / float(np.median(np.diff(peaks)))
                per_lead[i, j] = rate if 20.0 <= rate <= 300.0 else np.nan
    measured = np.isfinite(per_lead).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        record = np.where(measured >= 2, np.nanmedian(per_lead, axis=1), np.nan)
    return record, per_lead, counts


def _measure_rows(bounds: tuple[int, int]) -> np.ndarray:
    return heart_rates(_SHARED[bounds[0] : bounds[1]], SAMPLING_RATE)


def best_rate(function, num_records: int, repeats: int) -> float:
    """ECGs per second of the fastest of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return num_records / min(seconds)


def main() -> None:
    global _SHARED
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", default="datasets/ptbxl", help="PTB-XL folder (its 100 Hz signal cache is built if missing)")
    parser.add_argument("--cache_dir", default=None, help="signal cache folder (default PTBXL/ecgaug_cache)")
    parser.add_argument("--records", type=int, default=2000, help="records for the speed measurements")
    parser.add_argument("--agreement_records", type=int, default=2000, help="records compared with GQRS (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cache = np.load(build_signal_cache(args.ptbxl, SAMPLING_RATE, cache_dir=args.cache_dir, progress=False), mmap_mode="r")
    rng = np.random.default_rng(args.seed)
    print(f"PTB-XL 100 Hz signal cache: {cache.shape[0]} records; {os.cpu_count()} CPUs; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip

    rows = np.sort(rng.choice(len(cache), min(args.records, len(cache)), replace=False))
    _SHARED = np.asarray(cache[rows])
    n = len(rows)
    one = best_rate(lambda: heart_rates(_SHARED, SAMPLING_RATE), n, args.repeats)
    halves = [(0, n // 2), (n // 2, n)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_measure_rows, [(0, 1), (1, 2)])  # start the workers before timing
        two = best_rate(lambda: pool.map(_measure_rows, halves), n, args.repeats)
    threads = best_rate(lambda: measure_heart_rates(_SHARED, SAMPLING_RATE, num_workers=2, chunk_size=256, progress=False), n, args.repeats)
    print(f"speed on {n} records in memory: 1 process {one:.0f} ECGs/s, 2 processes {two:.0f} ECGs/s, 2 threads {threads:.0f} ECGs/s")

    count = len(cache) if args.agreement_records <= 0 else min(args.agreement_records, len(cache))
    rows = np.sort(rng.choice(len(cache), count, replace=False))
    signals = np.asarray(cache[rows])
    start = time.perf_counter()
    reference, per_lead, gqrs_counts = gqrs_rates(signals)
    gqrs_speed = count / (time.perf_counter() - start)
    beats = detect_beats(signals, SAMPLING_RATE)
    ours = rates_from_beats(beats, SAMPLING_RATE)
    both = np.isfinite(ours) & np.isfinite(reference)
    difference = np.abs(ours - reference)[both]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        consistent = (np.nanmax(per_lead, axis=1) - np.nanmin(per_lead, axis=1) <= 2.0)[both]
    print(f"agreement with GQRS on {count} random records (GQRS: {gqrs_speed:.0f} ECGs/s, 1 process): "
          f"both measure {both.sum()}, within 2 bpm {np.mean(difference <= 2):.2%}, within 5 bpm {np.mean(difference <= 5):.2%}")  # fmt: skip
    print(f"  where GQRS's leads II, V1, V5 agree within 2 bpm ({consistent.sum()} records): "
          f"within 2 bpm {np.mean(difference[consistent] <= 2):.2%}; "
          f"where they do not ({(~consistent).sum()}): {np.mean(difference[~consistent] <= 2):.2%}")  # fmt: skip
    # Which side misses beats where the two disagree: this detector's beat count against the median of GQRS's
    # three leads' counts (whole records, so edge beats, which each leaves out its own way, blur it by about one).
    disagree = both & (np.abs(ours - reference) > 2)
    surplus = np.array([len(b) for b in beats]) - np.median(gqrs_counts, axis=1)
    print(f"  where they disagree ({disagree.sum()}): this detector finds 2+ beats more than GQRS's median lead on "
          f"{(surplus[disagree] >= 2).sum()}, 2+ fewer on {(surplus[disagree] <= -2).sum()}, within one beat on {(np.abs(surplus[disagree]) <= 1).sum()}")  # fmt: skip
    print(f"  measured by GQRS only: {(np.isfinite(reference) & ~np.isfinite(ours)).sum()}, "
          f"by this detector only: {(np.isfinite(ours) & ~np.isfinite(reference)).sum()}")  # fmt: skip

    start = time.perf_counter()
    measure_heart_rates(cache, SAMPLING_RATE, progress=False)
    first_run = len(cache) / (time.perf_counter() - start)
    print(f"first run: measure_heart_rates over all {len(cache)} memory-mapped records, 1 process: {first_run:.0f} ECGs/s")
    print(f"heart_rate_ecgs_per_s: {first_run:.0f}")


if __name__ == "__main__":
    main()
