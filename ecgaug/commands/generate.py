"""``ecgaug generate``: ECGs for one report and patient, as .npy, WFDB records and 12-lead plots.

Every value is checked when the command line is parsed (ranges in :mod:`ecgaug.settings`); a bad
one gets argparse's ``error:`` message and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecgaug.settings import add_generation_arguments, check_age, check_heart_rate, check_positive_int, cli_type

PROG = "ecgaug generate"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate ECGs from a clinical report and patient information",
        description="Generate 12-lead ECGs with DiffuSETS and write them as .npy (mV, (n, 12, samples)), "
                    "WFDB records and PNG plots.",
    )
    parser.add_argument("--report", required=True, help="clinical report; separate several findings with '|'")
    parser.add_argument("--age", type=cli_type(check_age), default=None, help="years, 0–120 (omit if unknown, where the model allows)")
    parser.add_argument("--sex", choices=["M", "F"], default=None)
    parser.add_argument("--heart_rate", "--heart-rate", dest="heart_rate", type=cli_type(check_heart_rate), default=None,
                        help="bpm, 20–300 (omit if unknown, where the model allows)")
    parser.add_argument("-n", "--num_samples", type=cli_type(lambda v: check_positive_int("num_samples", v), int), default=1,
                        help="number of ECGs (>= 1)")
    parser.add_argument("--output_dir", "--out", dest="output_dir", type=Path, required=True)
    parser.add_argument("--init_ecg", type=Path, default=None,
                        help="seed: a real ECG as .npy, (12, samples) or (1, 12, samples), mV, in --lead_order and at "
                             "--sampling_rate; generation starts from it noised part-way (see --strength)")
    add_generation_arguments(parser, seed_ecgs=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import wfdb

    from ecgaug.pipeline import DiffuSETSPipeline
    from ecgaug.plotting import save_12lead
    from ecgaug.settings import GenerationSettings
    from ecgaug.signal import resolve_lead_order

    if args.text_table == "" and args.upstream is None:
        return _error("--text_table without a path needs --upstream (whose ptbxl_text_embed.csv it uses)")
    if args.strength < 1.0 and args.init_ecg is None:
        return _error("--strength below 1 needs --init_ecg (a seed ECG to start from)")
    try:
        settings = GenerationSettings.from_cli_args(args)
    except ValueError as error:
        return _error(str(error))
    init_ecgs = None
    if args.init_ecg is not None:
        try:
            init_ecgs = np.load(args.init_ecg, allow_pickle=False)
        except (OSError, ValueError) as error:
            return _error(f"--init_ecg {args.init_ecg}: could not read a .npy array ({error})")
        init_ecgs = init_ecgs.reshape(1, *init_ecgs.shape) if init_ecgs.ndim == 2 else init_ecgs

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe = DiffuSETSPipeline.from_settings(settings, device=device)
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.num_samples)]
        ecgs = pipe([args.report], args.age, args.sex, args.heart_rate, num_samples=args.num_samples, init_ecgs=init_ecgs,
                    generator=generators, **settings.call_kwargs()).ecgs.numpy()
    except (ValueError, FileNotFoundError) as error:
        return _error(str(error))

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "ecgs.npy", ecgs.astype(np.float32))
    leads = resolve_lead_order(settings.lead_order)
    wfdb_names = [lead.upper() for lead in leads]  # WFDB's (and PTB-XL's) spelling: AVR, AVL, AVF
    for i, ecg in enumerate(ecgs):
        name = f"ecg_{i:04d}"
        wfdb.wrsamp(name, fs=settings.sampling_rate, units=["mV"] * 12, sig_name=wfdb_names, p_signal=ecg.T.astype(np.float64),
                    fmt=["16"] * 12, write_dir=str(out), comments=[f"report: {args.report}", f"seed: {args.seed + i}"])
        save_12lead(out / f"{name}.png", ecg, settings.sampling_rate, settings.lead_order,
                    title=f"{args.report} | age {args.age}, sex {args.sex}, HR {args.heart_rate} | seed {args.seed + i}")
    meta = {"report": args.report, "age": args.age, "sex": args.sex, "heart_rate": args.heart_rate, "model_id": pipe.model_id,
            "sampler": pipe.sampler_name, **settings.to_dict(), "init_ecg": None if args.init_ecg is None else str(args.init_ecg),
            "seeds": [args.seed + i for i in range(args.num_samples)]}
    (out / "generation.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(ecgs)} ECGs written to {out} (ecgs.npy, WFDB ecg_*.hea/.dat, ecg_*.png)")
    return 0
