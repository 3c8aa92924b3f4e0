"""``ecgaug generate``: ECGs for one report and patient, as .npy, WFDB records and 12-lead plots."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate ECGs from a clinical report and patient information",
        description="Generate 12-lead ECGs with DiffuSETS and write them as .npy (mV, (n, 12, samples)), "
                    "WFDB records and PNG plots.",
    )
    parser.add_argument("--report", required=True, help="clinical report; separate several findings with '|'")
    parser.add_argument("--age", type=float, default=None, help="years (omit if unknown, where the model allows)")
    parser.add_argument("--sex", choices=["M", "F"], default=None)
    parser.add_argument("--heart_rate", "--heart-rate", dest="heart_rate", type=float, default=None, help="bpm")
    parser.add_argument("-n", "--num_samples", type=int, default=1, help="number of ECGs")
    parser.add_argument("--output_dir", "--out", dest="output_dir", type=Path, required=True)
    parser.add_argument("--model", default="ptbxl-lite", help="shipped model name or model folder (default ptbxl-lite)")
    parser.add_argument("--upstream", type=Path, default=None,
                        help="folder with DiffuSETS' published vae_model.pth and unet_all.pth (uses OpenAI embeddings unless --text_table)")
    parser.add_argument("--text_table", type=Path, default=None, help="published ptbxl_text_embed.csv to look embeddings up in")
    parser.add_argument("--scheduler", default="dpmsolver++", choices=["dpmsolver++", "ddim", "ddpm"])
    parser.add_argument("--num_inference_steps", type=int, default=None)
    parser.add_argument("--guidance_scale", type=float, default=1.0)
    parser.add_argument("--sampling_rate", type=float, default=100.0, help="of the written ECGs: 100, 500 or 102.4 (native)")
    parser.add_argument("--lead_order", default="ptbxl", choices=["ptbxl", "model"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import wfdb

    from ecgaug.pipeline import DiffuSETSPipeline
    from ecgaug.plotting import save_12lead
    from ecgaug.signal import resolve_lead_order

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    text_encoder = None
    if args.text_table is not None:
        from ecgaug.text.table import TableTextEncoder

        text_encoder = TableTextEncoder(args.text_table)
    if args.upstream is not None:
        pipe = DiffuSETSPipeline.from_upstream(args.upstream, scheduler=args.scheduler, text_encoder=text_encoder, device=device)
    else:
        pipe = DiffuSETSPipeline.from_pretrained(args.model, scheduler=args.scheduler, text_encoder=text_encoder, device=device)
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(args.num_samples)]
    ecgs = pipe([args.report], args.age, args.sex, args.heart_rate, num_samples=args.num_samples,
                num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale, generator=generators,
                lead_order=args.lead_order, sampling_rate=args.sampling_rate).ecgs.numpy()

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "ecgs.npy", ecgs.astype(np.float32))
    leads = resolve_lead_order(args.lead_order)
    wfdb_names = [lead.upper() for lead in leads]  # WFDB's (and PTB-XL's) spelling: AVR, AVL, AVF
    for i, ecg in enumerate(ecgs):
        name = f"ecg_{i:04d}"
        wfdb.wrsamp(name, fs=args.sampling_rate, units=["mV"] * 12, sig_name=wfdb_names, p_signal=ecg.T.astype(np.float64),
                    fmt=["16"] * 12, write_dir=str(out), comments=[f"report: {args.report}", f"seed: {args.seed + i}"])
        save_12lead(out / f"{name}.png", ecg, args.sampling_rate, args.lead_order,
                    title=f"{args.report} | age {args.age}, sex {args.sex}, HR {args.heart_rate} | seed {args.seed + i}")
    meta = {"report": args.report, "age": args.age, "sex": args.sex, "heart_rate": args.heart_rate, "model_id": pipe.model_id,
            "sampler": pipe.sampler_name, "num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale,
            "seeds": [args.seed + i for i in range(args.num_samples)], "sampling_rate": args.sampling_rate, "lead_order": list(leads)}
    (out / "generation.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(ecgs)} ECGs written to {out} (ecgs.npy, WFDB ecg_*.hea/.dat, ecg_*.png)")
    return 0
