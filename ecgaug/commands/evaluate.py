"""``ecgaug evaluate``: measure a trained model on held-out PTB-XL folds and write its model card."""
from __future__ import annotations

import argparse
from pathlib import Path

from ecgaug.data.folds import parse_folds
from ecgaug.schedulers import DEFAULT_SCHEDULER, SCHEDULERS

FIGURE_NAME = "generated_vs_real.png"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure a trained model on held-out PTB-XL folds; write its model card",
        description="Measure a DiffuSETS model folder on PTB-XL test folds it was not trained on: VAE reconstruction and its "
                    "classifier ceiling, heart-rate control and RR regularity (DPM-Solver++ and DDPM), superclass and rhythm "
                    "recognition, train-on-synthetic-test-on-real, lead consistency, with bootstrap 95 %% CIs. Writes "
                    "WORK_DIR/results.json; --write_card adds card.json (with a flat 'summary') and README.md to MODEL_DIR.",
        epilog="Example: ecgaug evaluate runs/base/pipeline --ptbxl datasets/ptbxl --test_folds 9 --train_folds 1-7 "
               "--val_folds 8 --work_dir runs/eval --write_card --figure runs/base/pipeline/generated_vs_real.png",
    )
    parser.add_argument("model_dir", type=Path, help="model folder written by `ecgaug train unet` (model_index.json, vae/, unet/)")
    parser.add_argument("--ptbxl", required=True, type=Path, help="PTB-XL 1.0.3 folder")
    parser.add_argument("--test_folds", type=parse_folds, default=parse_folds("9"),
                        help="held-out folds to measure on (default 9); refused if the model was trained on them")
    parser.add_argument("--train_folds", type=parse_folds, default=parse_folds("1-7"), help="classifier training folds (default 1-7)")
    parser.add_argument("--val_folds", type=parse_folds, default=parse_folds("8"), help="classifier early-stopping folds (default 8)")
    parser.add_argument("--num_conditions", type=int, default=1000, help="test conditions generated with the default sampler (default 1000)")
    parser.add_argument("--ddpm_conditions", type=int, default=64,
                        help="the first N conditions are also generated twice with DDPM (about 40x slower; default 64)")
    parser.add_argument("--tstr_per_class", type=int, default=300, help="training-fold conditions per superclass for TSTR/TRTR (default 300)")
    parser.add_argument("--tstr_epochs", type=int, default=10, help="epochs of the TSTR/TRTR classifiers (default 10)")
    parser.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=sorted(SCHEDULERS), help=f"the sampler under test (default {DEFAULT_SCHEDULER})")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="its steps (default: the sampler's)")
    parser.add_argument("--ddpm_steps", type=int, default=1000, help="DDPM steps (default 1000, as trained)")
    parser.add_argument("--classifier_epochs", type=int, default=5, help="epochs of the recognition classifier (default 5)")
    parser.add_argument("--classifier_batch_size", type=int, default=128, help="batch size of the recognition classifier (default 128)")
    parser.add_argument("--batch_size", type=int, default=64, help="ECGs per forward pass when generating (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", required=True, type=Path, help="results.json and the cached classifier go here")
    parser.add_argument("--write_card", action="store_true", help="write card.json and README.md into MODEL_DIR")
    parser.add_argument("--figure", type=Path, default=None,
                        help=f"also draw generated vs real ECGs to this PNG (e.g. MODEL_DIR/{FIGURE_NAME}, which the card then shows)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--card_notes", type=Path, default=None, help="a Markdown file the model card shows as its authors' notes")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ecgaug.pipeline import DiffuSETSPipeline
    from ecgaug.evaluation.conditions import check_held_out
    from ecgaug.evaluation.evaluate import evaluate_model, save_results
    from ecgaug.evaluation.model_card import figure_generated_vs_real, write_model_card

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = DiffuSETSPipeline.from_pretrained(args.model_dir, device=device)
    check_held_out(pipe.info, args.test_folds)  # before any work
    results = evaluate_model(
        pipe, args.ptbxl, test_folds=args.test_folds, train_folds=args.train_folds, val_folds=args.val_folds,
        num_conditions=args.num_conditions, ddpm_conditions=args.ddpm_conditions, tstr_per_class=args.tstr_per_class, seed=args.seed,
        work_dir=args.work_dir, scheduler=args.scheduler, num_inference_steps=args.num_inference_steps, ddpm_steps=args.ddpm_steps, classifier_epochs=args.classifier_epochs,
        tstr_epochs=args.tstr_epochs, classifier_batch_size=args.classifier_batch_size, batch_size=args.batch_size,
        show_progress=not args.no_progress,
    )
    results_path = save_results(results, args.work_dir / "results.json")
    print(f"Results written to {results_path}")

    figure_in_card = None
    if args.figure is not None:
        pipe.set_scheduler(args.scheduler)  # the sampler evaluated above, with its steps
        figure_generated_vs_real(pipe, args.ptbxl, args.figure, test_folds=args.test_folds, seed=args.seed,
                                 num_inference_steps=results["settings"]["num_inference_steps"])
        print(f"Figure written to {args.figure}")
        if args.figure.resolve().is_relative_to(args.model_dir.resolve()):
            figure_in_card = args.figure.resolve().relative_to(args.model_dir.resolve()).as_posix()
    if args.write_card:
        notes = args.card_notes.read_text() if args.card_notes is not None else None
        card_json, readme = write_model_card(args.model_dir, results, pipe.info.get("training"), figure=figure_in_card, notes=notes)
        print(f"Model card written to {readme} and {card_json}")

    summary = results["summary"]
    print(f"{results['model']['model_id']}: " + ", ".join(f"{key} {value:.3g}" for key, value in summary.items() if isinstance(value, float)))
    return 0
