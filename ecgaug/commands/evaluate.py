"""``ecgaug evaluate``: measure a trained model on held-out PTB-XL folds and write its model card."""
from __future__ import annotations

import argparse
from pathlib import Path

from ecgaug.commands.train import parse_folds

FIGURE_NAME = "generated_vs_real.png"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure a trained model on held-out PTB-XL folds; write its model card",
        description="Measure a DiffuSETS model folder on PTB-XL test folds it was not trained on: VAE reconstruction, "
                    "heart-rate control (DPM-Solver++ and DDPM), class recognition by a classifier trained on real folds, "
                    "and speed. Writes WORK_DIR/results.json; --write_card adds card.json and README.md to MODEL_DIR.",
        epilog="Example: ecgaug evaluate runs/ptbxl-lite/pipeline --ptbxl datasets/ptbxl --test_folds 9 --train_folds 1-7 "
               "--val_folds 8 --num_conditions 200 --ddpm_conditions 32 --work_dir runs/eval --write_card "
               "--figure runs/ptbxl-lite/pipeline/generated_vs_real.png",
    )
    parser.add_argument("model_dir", type=Path, help="model folder written by `ecgaug train unet` (model_index.json, vae/, unet/)")
    parser.add_argument("--ptbxl", required=True, type=Path, help="PTB-XL 1.0.3 folder")
    parser.add_argument("--test_folds", type=parse_folds, default=parse_folds("9"),
                        help="held-out folds to measure on (default 9); refused if the model was trained on them")
    parser.add_argument("--train_folds", type=parse_folds, default=parse_folds("1-7"), help="classifier training folds (default 1-7)")
    parser.add_argument("--val_folds", type=parse_folds, default=parse_folds("8"), help="classifier early-stopping folds (default 8)")
    parser.add_argument("--num_records", type=int, default=500, help="test records for VAE reconstruction (default 500)")
    parser.add_argument("--num_conditions", type=int, default=200, help="conditions generated with DPM-Solver++ (default 200)")
    parser.add_argument("--ddpm_conditions", type=int, default=32,
                        help="the first N conditions are also generated twice with DDPM (about 40x slower; default 32)")
    parser.add_argument("--dpm_steps", type=int, default=25, help="DPM-Solver++ steps (default 25)")
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ecgaug.pipeline import DiffuSETSPipeline
    from ecgaug.training.evaluate import check_held_out, evaluate_model, save_results
    from ecgaug.training.model_card import figure_generated_vs_real, write_model_card

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = DiffuSETSPipeline.from_pretrained(args.model_dir, device=device)
    check_held_out(pipe.info, args.test_folds)  # before any work
    results = evaluate_model(
        pipe, args.ptbxl, test_folds=args.test_folds, train_folds=args.train_folds, val_folds=args.val_folds,
        num_records=args.num_records, num_conditions=args.num_conditions, ddpm_conditions=args.ddpm_conditions, seed=args.seed,
        work_dir=args.work_dir, dpm_steps=args.dpm_steps, ddpm_steps=args.ddpm_steps, classifier_epochs=args.classifier_epochs,
        classifier_batch_size=args.classifier_batch_size, batch_size=args.batch_size,
    )
    results_path = save_results(results, args.work_dir / "results.json")
    print(f"Results written to {results_path}")

    figure_in_card = None
    if args.figure is not None:
        pipe.set_scheduler("dpmsolver++")  # the default sampler, with the steps evaluated above
        figure_generated_vs_real(pipe, args.ptbxl, args.figure, test_folds=args.test_folds, seed=args.seed, num_inference_steps=args.dpm_steps)
        print(f"Figure written to {args.figure}")
        if args.figure.resolve().is_relative_to(args.model_dir.resolve()):
            figure_in_card = args.figure.resolve().relative_to(args.model_dir.resolve()).as_posix()
    if args.write_card:
        card_json, readme = write_model_card(args.model_dir, results, pipe.info.get("training"), figure=figure_in_card)
        print(f"Model card written to {readme} and {card_json}")

    heart_rate = results["heart_rate"]["all"][results["samplers"]["default"]]
    mae = "n/a" if heart_rate["mae_bpm"] is None else f"{heart_rate['mae_bpm']:.1f} bpm"
    print(f"{results['model']['model_id']}: VAE RMSE {results['vae_reconstruction']['overall']['rmse_mv']:.3f} mV, "
          f"HR MAE {mae} ({results['samplers']['default']}, {heart_rate['num_conditions']} conditions)")
    return 0
