"""Measure the data-scarcity gain of DiffuSETS augmentation on PTB-XL (issue #5).

Trains a classifier on scarce subsets of PTB-XL's training folds (fractions of the patients, and
a rare-class regime) with five arms (real only, class-weighted loss, classic augmentation,
DiffuSETS synthetic ECGs, classic + synthetic) and several seeds, and reports test macro-AUC and
rare-class AUC/AUPRC with bootstrap CIs. See experiments/README.md.

    python experiments/augment_ptbxl.py --ptbxl datasets/ptbxl --output_dir runs/scarcity_quick --quick \\
        --train_folds 1-7 --val_folds 8 --test_folds 9

Rerunning the same command resumes an interrupted run; ``--evaluate_only`` rebuilds the tables
and plots from the saved predictions; ``--sweep`` varies the synthetic settings on one regime.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ecgaug.augment import CacheMismatchError
from ecgaug.data.folds import parse_folds
from ecgaug.schedulers import DEFAULT_SCHEDULER, SCHEDULERS

# The experiment's package, experiments/scarcity/, sits beside this script, whose folder Python puts on sys.path.
from scarcity.config import ARM_NAMES, DEFAULT_ARMS, FULL, QUICK, ExperimentConfig, make_arms, make_regimes, sweep_arms
from scarcity.runner import RunFolderError, run
from scarcity.synthetic import GeneratorCardError

SWEEP_DEFAULTS = {
    "full": dict(sweep_synthetic_per_real=(0.5, 1.0, 2.0, 4.0), sweep_synthetic_cap=(0.25, 0.5, 0.75, 1.0), sweep_guidance_scale=(1.0, 2.0, 4.0)),
    "quick": dict(sweep_synthetic_per_real=(0.5, 2.0), sweep_synthetic_cap=(0.25, 1.0), sweep_guidance_scale=(1.0, 2.0)),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except unset ones (``None``: a preset fills them, as their help says) and switches."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def preset_help(name: str, text: str) -> str:
    return f"{text} (full: {FULL[name]}, quick: {QUICK[name]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="augment_ptbxl.py",
        description=__doc__.split("\n\n")[0] + " Flags left unset take the full (GPU) preset, or the --quick preset.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--ptbxl", help="PTB-XL folder (ptbxl_database.csv, records100/); not needed with --evaluate_only")
    parser.add_argument("--output_dir", required=True, help="the run folder; rerun the same command to resume")
    parser.add_argument("--quick", action="store_true",
                        help=f"CPU preset (about 20 min on 2 cores with ptbxl-base): {', '.join(f'{k}={v}' for k, v in QUICK.items())}")  # fmt: skip
    stage = parser.add_argument_group("stages")
    stage.add_argument("--evaluate_only", action="store_true", help="only rebuild results.json, table.md and the plots from saved predictions")
    stage.add_argument("--estimate_only", action="store_true", help="prepare the subsets, print the time estimate and stop")

    data = parser.add_argument_group("data and classifier")
    data.add_argument("--task", default="superdiagnostic", help="PTB-XL label set")
    data.add_argument("--classes", nargs="+", default=None, help="use only these classes of the task (default: all)")
    data.add_argument("--classifier", default=None, help=preset_help("classifier", "a name from classifiers.list_models()"))
    data.add_argument("--train_folds", type=parse_folds, default=parse_folds("1-8"), help="strat_folds to train on, e.g. 1-8 or 1,2,3")
    data.add_argument("--val_folds", type=parse_folds, default=parse_folds("9"), help="strat_folds that choose checkpoints")
    data.add_argument("--test_folds", type=parse_folds, default=parse_folds("10"), help="strat_folds to report on (never seen by the generator)")

    cells = parser.add_argument_group("regimes, arms and seeds")
    cells.add_argument("--fractions", type=float, nargs="+", default=None, help=preset_help("fractions", "fractions of the training patients, one regime each"))
    cells.add_argument("--rare_k", type=int, default=None,
                       help=preset_help("rare_k", "rare-class regime: keep only k positive records of each rare class; 0: no rare regime"))
    cells.add_argument("--rare_base_fraction", type=float, default=None, help=preset_help("rare_base_fraction", "fraction of the patients the rare-class regime starts from"))
    cells.add_argument("--rare_classes", nargs="+", default=None, help="the rare classes (default: the --num_rare_classes rarest in the training folds)")
    cells.add_argument("--num_rare_classes", type=int, default=2, help="how many rarest classes are rare when --rare_classes is unset")
    cells.add_argument("--arms", nargs="+", choices=ARM_NAMES, default=list(DEFAULT_ARMS),
                       help="the arms (default: all; see experiments/README.md; 'balanced': class-balanced sampler, real only)")
    cells.add_argument("--no_reference", action="store_true",
                       help="no 'all real records' reference row (the real arm on every training record; trained unless a "
                            "fraction-1 regime is run)")  # fmt: skip
    cells.add_argument("--seeds", type=int, nargs="+", default=None, help=preset_help("seeds", "seeds per cell (issue #5 asks for at least 3)"))

    train = parser.add_argument_group("classifier training (classifiers.train)")
    train.add_argument("--epochs", type=int, default=None, help=preset_help("epochs", "maximum epochs; an epoch draws as many records as the cell has real ones"))
    train.add_argument("--batch_size", type=int, default=None, help=preset_help("batch_size", "training batch size"))
    train.add_argument("--lr", type=float, default=None, help=preset_help("lr", "one-cycle maximum learning rate"))
    train.add_argument("--patience", type=int, default=None, help=preset_help("patience", "early stopping on validation macro-AUC; 0 trains all epochs"))
    train.add_argument("--val_fraction", type=float, default=None, help=preset_help("val_fraction", "fraction of validation patients that choose checkpoints"))

    syn = parser.add_argument_group("synthetic ECGs")
    syn.add_argument("--model", default="ptbxl-base", help="the generator: DiffuSETSPipeline name or folder (its model card must list its training folds)")
    syn.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=sorted(SCHEDULERS), help=f"sampler (default {DEFAULT_SCHEDULER})")
    syn.add_argument("--num_inference_steps", type=int, default=None, help="denoising steps (default: the sampler's)")
    syn.add_argument("--guidance_scale", type=float, default=1.0, help="classifier-free guidance, enabled when > 1")
    syn.add_argument("--pool_per_class", type=int, default=None, help=preset_help("pool_per_class", "synthetic ECGs per class in the run's pool"))
    syn.add_argument("--pool_seed", type=int, default=0, help="seed of the pool's plan")
    syn.add_argument("--synthetic_per_real", type=float, default=1.0, help="at most this many synthetic ECGs per real record of a class")
    syn.add_argument("--synthetic_cap", type=float, default=0.5, help="at most this fraction of each batch synthetic")
    syn.add_argument("--synthetic_weight", type=float, default=0.3, help="loss weight of synthetic items in the 'downweighted' arm")
    syn.add_argument("--guided_strength", type=float, default=0.5,
                     help="'guided' arm: img2img strength, the fraction of the sampler's steps run from the noised real seed")
    syn.add_argument("--generation_batch_size", type=int, default=None, help="ECGs per generation batch (default: the pipeline's)")

    sweep = parser.add_argument_group("sweep: what makes synthetic data help (one regime, one setting varied at a time)")
    sweep.add_argument("--sweep", action="store_true", help="run the sweep instead of the arms (use its own --output_dir)")
    sweep.add_argument("--sweep_regime", default=None, help="the regime to sweep on (default: the rare-class regime, else the first fraction)")
    for name, text in (("sweep_synthetic_per_real", "values of synthetic_per_real"), ("sweep_synthetic_cap", "values of synthetic_cap"),
                       ("sweep_guidance_scale", "values of guidance_scale; each generates its own pool")):  # fmt: skip
        sweep.add_argument(f"--{name}", type=float, nargs="+", default=None,
                           help=f"{text} (full: {SWEEP_DEFAULTS['full'][name]}, quick: {SWEEP_DEFAULTS['quick'][name]})")

    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--n_bootstrap", type=int, default=None, help=preset_help("n_bootstrap", "bootstrap resamples of the test folds"))

    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto: CUDA when available, else CPU")
    runtime.add_argument("--num_workers", type=int, default=0, help="DataLoader workers")
    runtime.add_argument("--num_threads", type=int, default=2, help="torch CPU threads (and heart-rate processes)")
    runtime.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[ExperimentConfig, argparse.Namespace]:
    """The experiment config and the stage flags; cross-argument checks happen here."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.evaluate_only and args.estimate_only:
        parser.error("pass at most one of --evaluate_only and --estimate_only")
    if args.evaluate_only:
        config = ExperimentConfig.load(args.output_dir)
        if args.n_bootstrap is not None:
            config.n_bootstrap = args.n_bootstrap
        config.progress = not args.no_progress
        return config, args
    if args.ptbxl is None:
        parser.error("--ptbxl is required (except with --evaluate_only)")
    preset = QUICK if args.quick else FULL
    values = {name: getattr(args, name) if getattr(args, name, None) is not None else default for name, default in preset.items()}
    for name, default in SWEEP_DEFAULTS["quick" if args.quick else "full"].items():
        values[name] = getattr(args, name) if getattr(args, name) is not None else default
    rare_k = values["rare_k"] or None
    regimes = make_regimes(values["fractions"], rare_k=rare_k, rare_base_fraction=values["rare_base_fraction"])
    arms = make_arms(args.arms, synthetic_per_real=args.synthetic_per_real, synthetic_cap=args.synthetic_cap, guidance_scale=args.guidance_scale,
                     synthetic_weight=args.synthetic_weight)  # fmt: skip
    if args.sweep:
        if args.arms != list(DEFAULT_ARMS):
            parser.error("--arms is not used with --sweep (the sweep's arms are real and variants of synthetic); drop it")
        names = [regime.name for regime in regimes]
        wanted = args.sweep_regime or next((r.name for r in regimes if r.is_rare), names[0])
        if wanted not in names:
            parser.error(f"--sweep_regime should be one of the regimes {names}, but got {wanted!r}")
        regimes = [regime for regime in regimes if regime.name == wanted]
        base = make_arms(["real", "synthetic"], synthetic_per_real=args.synthetic_per_real, synthetic_cap=args.synthetic_cap,
                         guidance_scale=args.guidance_scale)[1]  # fmt: skip
        arms = sweep_arms(base, synthetic_per_real=values["sweep_synthetic_per_real"], synthetic_cap=values["sweep_synthetic_cap"],
                          guidance_scale=values["sweep_guidance_scale"])  # fmt: skip
    config = ExperimentConfig(
        ptbxl=args.ptbxl, output_dir=args.output_dir, task=args.task, classes=args.classes, classifier=values["classifier"],
        train_folds=args.train_folds, val_folds=args.val_folds, test_folds=args.test_folds, regimes=regimes, arms=arms,
        seeds=list(values["seeds"]), rare_classes=args.rare_classes, num_rare_classes=args.num_rare_classes, epochs=values["epochs"],
        batch_size=values["batch_size"], lr=values["lr"], patience=values["patience"] or None, val_fraction=values["val_fraction"],
        model=args.model, scheduler=args.scheduler, num_inference_steps=args.num_inference_steps,
        pool_per_class=values["pool_per_class"], pool_seed=args.pool_seed, generation_batch_size=args.generation_batch_size,
        n_bootstrap=values["n_bootstrap"], sweep=args.sweep, device=args.device, num_workers=args.num_workers,
        num_threads=args.num_threads, progress=not args.no_progress, reference=not (args.no_reference or args.sweep),
        reference_seeds=None if values["reference_seeds"] is None else list(values["reference_seeds"]), guided_strength=args.guided_strength,
    )  # fmt: skip
    return config, args


def command_line(argv: list[str]) -> str:
    """The command as typed from the current folder."""
    script = os.path.relpath(Path(__file__).resolve())
    return shlex.join(["python", script, *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    config, args = parse_args(argv)
    try:
        run(config, command=command_line(argv), evaluate_only=args.evaluate_only, estimate_only=args.estimate_only)
    except (GeneratorCardError, RunFolderError, CacheMismatchError, FileNotFoundError) as error:
        print(f"augment_ptbxl.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
