"""``ecgaug ptbxl download ROOT`` and ``ecgaug ptbxl prepare ROOT``.

``download`` fetches and extracts PTB-XL 1.0.3 (resumable); ``prepare`` builds the
memory-mapped signal cache and the heart-rate cache that :class:`ecgaug.data.PTBXL` uses, so
training does not pay for them on first use.
"""
from __future__ import annotations

import argparse

import numpy as np

__all__ = ["add_download_arguments", "register", "run_download", "run_prepare"]


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``ecgaug ptbxl download`` (shared with ``datasets/download_ptbxl.py``)."""
    from ..data.download import DEFAULT_BASE_URL

    parser.add_argument("--base_url", default=DEFAULT_BASE_URL, help="Folder URL holding the release zip (a mirror). Default: %(default)s")
    parser.add_argument("--sha256", default=None, help="Expected SHA-256 of the zip, checked when given.")
    parser.add_argument("--force", action="store_true", help="Download and extract even if ROOT already holds PTB-XL.")
    parser.add_argument("--keep_zip", action="store_true", help="Keep the zip in ROOT after extracting it.")
    parser.add_argument("--max_retries", type=int, default=5, help="Retries (resuming) after a dropped connection. Default: %(default)s")


def run_download(args: argparse.Namespace) -> int:
    from ..data.download import download_ptbxl

    root = download_ptbxl(args.root, base_url=args.base_url, sha256=args.sha256, force=args.force,
                          keep_zip=args.keep_zip, max_retries=args.max_retries)
    print(f"PTB-XL is in {root}. Build its caches with `ecgaug ptbxl prepare {root}`.")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from ..data.ptbxl import build_heart_rate_cache, build_signal_cache, load_heart_rates

    signals = build_signal_cache(args.root, args.sampling_rate, cache_dir=args.cache_dir, rebuild=args.rebuild)
    print(f"Signal cache: {signals}")
    rates_path = build_heart_rate_cache(args.root, args.sampling_rate, cache_dir=args.cache_dir,
                                        num_workers=args.num_workers, rebuild=args.rebuild)
    rates = load_heart_rates(args.root, args.sampling_rate, cache_dir=args.cache_dir).to_numpy()
    measured = rates[np.isfinite(rates)]
    print(f"Heart-rate cache: {rates_path}")
    print(f"{len(rates)} records, heart rate unmeasurable (NaN) for {len(rates) - len(measured)} ({1 - len(measured) / max(len(rates), 1):.2%})")
    if len(measured):
        low, median, high = np.percentile(measured, [5, 50, 95])
        print(f"Heart rate: median {median:.1f} bpm, 5-95% {low:.1f}-{high:.1f} bpm")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ptbxl",
        help="Download PTB-XL and build its caches.",
        description="Download PTB-XL 1.0.3 from PhysioNet and build the caches ecgaug.data.PTBXL reads.",
    )
    commands = parser.add_subparsers(dest="ptbxl_command", metavar="ACTION", required=True)

    download = commands.add_parser(
        "download",
        help="Download and extract PTB-XL 1.0.3 (resumable; skipped if ROOT already holds it).",
        description="Download the PTB-XL 1.0.3 release zip (about 1.7 GB) from PhysioNet into ROOT, resuming a "
        "partial download, extract it and delete the zip. PTB-XL is CC BY 4.0 (Wagner et al. 2020).",
    )
    download.add_argument("root", help="Folder that will hold ptbxl_database.csv, records100/, records500/ ...")
    add_download_arguments(download)
    download.set_defaults(func=run_download)

    prepare = commands.add_parser(
        "prepare",
        help="Build the memory-mapped signal cache and the heart-rate cache.",
        description="Write every record of ROOT at one sampling rate into one memory-mapped float32 .npy and "
        "measure every record's heart rate, with progress bars. Fresh caches are kept; a changed "
        "ptbxl_database.csv makes them rebuild.",
    )
    prepare.add_argument("root", help="PTB-XL folder (holds ptbxl_database.csv).")
    prepare.add_argument("--sampling_rate", type=int, choices=(100, 500), default=100, help="Hz. Default: %(default)s")
    prepare.add_argument("--cache_dir", default=None, help="Cache folder. Default: ROOT/ecgaug_cache")
    prepare.add_argument("--num_workers", type=int, default=0, help="Processes measuring heart rates (0: this one). Default: %(default)s")
    prepare.add_argument("--rebuild", action="store_true", help="Rebuild the caches even when they are fresh.")
    prepare.set_defaults(func=run_prepare)
