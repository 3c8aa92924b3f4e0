"""``ecgaug cache build|verify|info``: the synthetic ECG cache from the command line.

``build`` plans the synthetic ECGs a PTB-XL split needs (or reads a saved plan) and generates
them into a cache folder; it resumes a killed build and splits the work across ranks under
``torchrun --nproc_per_node K``. ``verify`` checks every file of a cache against its recorded
checksums (``--delete_corrupt`` deletes what a rebuild regenerates); ``info`` summarises.

Runs standalone too (``python -m ecgaug.commands.cache build ...``), which ``torchrun -m`` can use.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from ecgaug.settings import add_generation_arguments

__all__ = ["register", "main"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="build, verify or summarise a cache of synthetic ECGs",
        description="Build, verify or summarise a cache of synthetic ECGs (see ecgaug.augment.cache).",
    )
    commands = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    _register_build(commands)
    _register_filter(commands)

    verify = commands.add_parser(
        "verify",
        help="check every file of a cache against its recorded checksums",
        description="Check cache.json, plan.jsonl (its sha256), targets.npy, every built shard (size, sha256, values, "
        "settings, manifest part) and manifest.csv (against the parts and the plan); one line per problem. Exit "
        "status 0 when the cache is complete and intact, 1 when something is corrupt, 2 when shards are not built yet.",
    )
    verify.add_argument("cache_dir", help="the cache folder")
    verify.add_argument("--delete_corrupt", action="store_true",
                        help="delete corrupt shards, manifest, plan.jsonl or targets.npy, so that rerunning "
                             "`ecgaug cache build` with the same arguments regenerates them")  # fmt: skip
    verify.set_defaults(func=verify_command)

    info = commands.add_parser("info", help="summarise a cache", description="Print a cache's settings, progress and per-class counts.")
    info.add_argument("cache_dir", help="the cache folder")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=info_command)


def _register_build(commands) -> None:
    build = commands.add_parser(
        "build",
        help="generate the synthetic ECGs of a plan into a cache (resumable, torchrun-aware)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Plan the synthetic ECGs that balance a PTB-XL split (--ptbxl) or read a saved plan (--plan), "
            "and generate them into --output_dir. Rerunning the same command resumes a killed build; "
            "`torchrun --nproc_per_node K -m ecgaug.cli cache build ...` splits the shards across K ranks. "
            "The plan is saved in the cache as plan.jsonl (reusable with --plan). With --seed_ecgs --strength S "
            "(S < 1) each ECG starts from the real --split record whose labels it copies (real-guided, img2img)."
        ),
    )
    build.add_argument("--output_dir", required=True, help="the cache folder (created; an existing cache is resumed)")

    source = build.add_argument_group("plan source (exactly one)")
    source.add_argument("--ptbxl", "--ptbxl_root", dest="ptbxl_root", metavar="PTBXL",
                        help="PTB-XL folder: plan from its label counts and patients (--ptbxl_root: the same)")
    source.add_argument("--plan", help="a saved plan (plan.jsonl of another cache, or GenerationPlan.save)")
    source.add_argument("--split", default="train", help="PTB-XL split to balance")
    source.add_argument("--task", default=None, help="PTB-XL label task (None: the PTBXL dataset's default)")

    plan = build.add_argument_group("plan")
    plan.add_argument("--strategy", choices=("balance", "target", "ratio"), default="balance",
                      help="balance: up to the largest class; target: up to --target_count; ratio: up to --ratio x largest")  # fmt: skip
    plan.add_argument("--target_count", type=int, default=None, help="goal per class for --strategy target")
    plan.add_argument("--ratio", type=float, default=None, help="fraction of the largest class for --strategy ratio")
    plan.add_argument("--co_occurrence", choices=("real", "none"), default="real",
                      help="real: copy label sets of real records; none: one label per ECG (single-label data)")  # fmt: skip
    plan.add_argument("--classes", nargs="+", default=None, help="only these classes get synthetic ECGs")
    plan.add_argument("--seed", type=int, default=0, help="seed of the plan (label sets, reports, patients, diffusion seeds)")
    plan.add_argument("--age", default=None, help="age override: a value or LOW:HIGH (default: drawn from the class's records)")
    plan.add_argument("--sex", choices=("M", "F"), default=None, help="sex override (default: drawn from the class's records)")
    plan.add_argument("--heart_rate", default=None, help="heart-rate override in bpm: a value or LOW:HIGH")
    plan.add_argument("--age_jitter", type=float, default=2.0, help="std (years) of the noise added to real ages")
    plan.add_argument("--heart_rate_jitter", type=float, default=2.0, help="std (bpm) of the noise added to real heart rates")
    plan.add_argument("--seed_ecgs", action="store_true",
                      help="real-guided generation: start each synthetic ECG from the --split record whose label set it "
                           "copies, noised part-way (--strength < 1); the manifest names each ECG's seed_index")  # fmt: skip

    add_generation_arguments(build, seed_ecgs=True)  # --model, --upstream, --text_encoder, --scheduler, --strength, ...
    model = build.add_argument_group("build")
    model.add_argument("--model_factory", default=None, metavar="MODULE:FACTORY",
                       help="use FACTORY() from MODULE as the model instead of --model/--upstream (tests, custom models)")  # fmt: skip
    model.add_argument("--shard_size", type=int, default=256, help="ECGs per shard")
    model.add_argument("--device", default="auto", help="auto: cuda:LOCAL_RANK when a GPU is present, else cpu")
    build.add_argument("--overwrite", action="store_true", help="delete an existing cache in --output_dir and rebuild")
    build.add_argument("--no_progress", action="store_true", help="hide progress bars")
    build.set_defaults(func=build_command)


def _check_build_args(args) -> None:
    """Cross-argument checks, before any work."""
    if (args.plan is None) == (args.ptbxl_root is None):
        raise SystemExit("ecgaug cache build: pass exactly one of --ptbxl (plan from PTB-XL) or --plan (a saved plan)")
    if args.model_factory is not None:
        module_name, _, factory_name = args.model_factory.partition(":")
        if not module_name or not factory_name:
            raise SystemExit(f"ecgaug cache build: --model_factory should be MODULE:FACTORY, but got {args.model_factory!r}")
    if args.plan is not None:
        given = [f"--{name}" for name in ("target_count", "ratio", "classes", "age", "sex", "heart_rate") if getattr(args, name) is not None]
        if args.seed_ecgs:
            given.append("--seed_ecgs")
        if given:
            raise SystemExit(f"ecgaug cache build: {', '.join(given)} shape a new plan and cannot change a saved --plan; "
                             "use --ptbxl to plan afresh")  # fmt: skip
    strength = getattr(args, "strength", 1.0)
    if args.seed_ecgs and not strength < 1.0:
        raise SystemExit("ecgaug cache build: --seed_ecgs starts from real records noised part-way, so it needs --strength < 1 "
                         "(e.g. --strength 0.5)")  # fmt: skip
    if strength < 1.0 and not args.seed_ecgs:
        raise SystemExit(f"ecgaug cache build: --strength {strength:g} < 1 needs --seed_ecgs (real records to start from)")


def _make_plan(args):
    """``(plan, seed_dataset)``: the plan to build, and with --seed_ecgs the --split records it starts from (else None)."""
    from ecgaug.augment.patients import PatientSampler
    from ecgaug.augment.plan import GenerationPlan, PlanConfig, make_plan, seed_source

    if args.plan is not None:
        plan = GenerationPlan.load(args.plan)
        if plan.has_seeds:
            raise ValueError(f"{args.plan} is a real-guided plan (seed ECGs); build it with the --ptbxl ... --seed_ecgs command "
                             "that made it (rerunning it resumes the build)")  # fmt: skip
        return plan, None
    from ecgaug.data.ptbxl import PTBXL
    from ecgaug.text.reports import ReportTemplater

    dataset = PTBXL(args.ptbxl_root, args.split, **({"task": args.task} if args.task is not None else {}))
    source = seed_source(dataset) if args.seed_ecgs else None  # refuses a held-out --split
    patients = PatientSampler.from_dataset(
        dataset,
        age_override=args.age,
        sex_override=args.sex,
        heart_rate_override=args.heart_rate,
        age_jitter=args.age_jitter,
        heart_rate_jitter=args.heart_rate_jitter,
    )
    # Member codes are picked with their frequency in the split (the experiment's planner); the
    # per_class pool and uniform codes are read when the build arguments offer them.
    config = PlanConfig(strategy=args.strategy, target_count=args.target_count, ratio=args.ratio,
                        per_class=getattr(args, "per_class", None), co_occurrence=args.co_occurrence, classes=args.classes,
                        report_codes=getattr(args, "report_codes", None) or "frequency", seed=args.seed,
                        seed_ecgs=args.seed_ecgs)  # fmt: skip
    reports = ReportTemplater.from_ptbxl(args.ptbxl_root, task=dataset.task)  # class labels mean the dataset's task
    plan = make_plan(dataset.targets, dataset.classes, reports=reports, patients=patients, config=config,
                     scp_codes=dataset.metadata["scp_codes"].tolist(), seed_source=source,
                     show_progress=not args.no_progress)  # fmt: skip
    return plan, (dataset if args.seed_ecgs else None)


def _settings(args):
    """The one :class:`~ecgaug.settings.GenerationSettings` of the build (the default step count is resolved there)."""
    from ecgaug.settings import GenerationSettings

    try:
        return GenerationSettings.from_cli_args(args)
    except ValueError as error:
        raise SystemExit(f"ecgaug cache build: error: {error}") from None


def _load_generator(args, settings=None):
    from ecgaug.distributed import local_device

    settings = _settings(args) if settings is None else settings
    if args.model_factory is not None:
        module_name, _, factory_name = args.model_factory.partition(":")
        generator = getattr(importlib.import_module(module_name), factory_name)()
    else:
        from ecgaug.pipeline import DiffuSETSPipeline

        try:
            generator = DiffuSETSPipeline.from_settings(settings)
        except (ValueError, OSError, ImportError) as error:  # unknown encoder, missing table, wrong embedding size...
            raise SystemExit(f"ecgaug cache build: error: {error}") from None
    device = args.device
    if device == "auto":
        device = local_device()
    if hasattr(generator, "to"):
        generator = generator.to(device)
    elif device != "cpu":
        raise SystemExit(f"ecgaug cache build: the generator has no .to(device), so it cannot run on {device}")
    return generator


def build_command(args) -> int:
    from ecgaug.augment.builder import run_build
    from ecgaug.augment.cache import CacheBusyError, CacheMismatchError, CorruptCacheError

    _check_build_args(args)
    settings = _settings(args)  # before the plan: a bad setting fails fast
    try:
        plan, seed_dataset = _make_plan(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"ecgaug cache build: error: {error}", file=sys.stderr)
        return 1
    generator = _load_generator(args, settings)
    try:
        # The settings hold the number of steps actually run (never "the default"), so the cache key is explicit.
        cache, result = run_build(args.output_dir, plan, generator, settings, shard_size=args.shard_size, overwrite=args.overwrite,
                                  show_progress=not args.no_progress, seed_dataset=seed_dataset)  # fmt: skip
    except (CacheMismatchError, CacheBusyError, CorruptCacheError, FileExistsError, ValueError) as error:
        print(f"ecgaug cache build: error: {error}", file=sys.stderr)
        return 1
    prefix = f"[rank {result.rank}/{result.world_size}] " if result.world_size > 1 else ""
    print(f"{prefix}{cache.root}: wrote {len(result.written)} shards, {len(result.already_complete)} were already complete "
          f"({cache.num_records} ECGs in {cache.num_shards} shards)")  # fmt: skip
    return 0


def verify_command(args) -> int:
    from ecgaug.augment.cache import REBUILD_HINT, REPAIR_HINT, CorruptCacheError, SyntheticCache

    try:
        cache = SyntheticCache(args.cache_dir)
    except (FileNotFoundError, CorruptCacheError) as error:
        print(f"ecgaug cache verify: error: {error}", file=sys.stderr)
        return 1
    result = cache.verify(show_progress=True)
    for problem in result.problems:
        print(problem.message)
    if args.delete_corrupt:
        for name in cache.delete_corrupt(result):
            print(f"deleted {name}")
    num_corrupt = sum(problem.shard is not None for problem in result.problems)
    print(f"{cache.root}: {len(result.complete)} of {result.num_shards} shards intact, {len(result.missing)} not built, "
          f"{num_corrupt} corrupt, {len(result.problems) - num_corrupt} other problems")  # fmt: skip
    if any(problem.files for problem in result.problems):
        fix = "rerun `ecgaug cache build` with the same arguments" if args.delete_corrupt else REPAIR_HINT.format(root=cache.root)
        print(f"fix: {fix} (it regenerates what was deleted)", file=sys.stderr)
    if any(not problem.files for problem in result.problems):
        print(f"fix: {REBUILD_HINT.format(root=cache.root)} (cache.json no longer describes the cache)", file=sys.stderr)
    if not result.ok:
        return 1
    return 0 if result.finished else 2


def info_command(args) -> int:
    from ecgaug.augment.cache import CorruptCacheError, SyntheticCache

    try:
        summary = SyntheticCache(args.cache_dir).summary()
    except (FileNotFoundError, CorruptCacheError) as error:
        print(f"ecgaug cache info: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        if key == "records_per_class":
            print(f"{key:<{width}}")
            for name, count in value.items():
                print(f"  {name:<{width - 2}} {count}")
        elif key == "disk_bytes":
            print(f"{key:<{width}} {value} ({value / 2**20:.1f} MiB)")
        else:
            print(f"{key:<{width}} {value}")
    return 0


def _register_filter(commands) -> None:
    flt = commands.add_parser(
        "filter",
        help="score a cache with a classifier and store the ECGs it keeps (a selection)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Score every synthetic ECG of a finished cache with a classifier (a classifiers.train checkpoint, "
        "best.pt, and its model name) and keep those whose conditioning labels all score at least their class's "
        "threshold. Writes selections/NAME.json (kept ECGs, scores, thresholds, the classifier's sha256) and the "
        "scores as teacher scores (scores/teacher-<sha256>.json) into the cache folder, without copying shards. "
        "Read them with AugmentedDataset(..., selection=NAME) or synthetic_targets=<scores name>.",
    )
    flt.add_argument("cache_dir", help="the cache folder")
    flt.add_argument("--checkpoint", required=True, help="classifier checkpoint (best.pt of classifiers.train.fit, with its state_dict)")
    flt.add_argument("--model", required=True, help="classifiers.create_model name the checkpoint was trained as (e.g. resnet1d_small)")
    flt.add_argument("--threshold", type=float, default=0.5, help="score each conditioning label must reach (all classes)")
    flt.add_argument("--class_threshold", nargs="+", default=[], metavar="CLASS=SCORE",
                     help="per-class thresholds overriding --threshold; SCORE 'none' leaves the class unfiltered")  # fmt: skip
    flt.add_argument("--name", default="default", help="name of the selection")
    flt.add_argument("--activation", choices=("sigmoid", "softmax"), default="sigmoid", help="applied to the logits")
    flt.add_argument("--batch_size", type=int, default=64, help="classifier batch size")
    flt.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    flt.add_argument("--overwrite", action="store_true", help="replace a selection of the same name")
    flt.add_argument("--no_progress", action="store_true", help="hide progress bars")
    flt.set_defaults(func=filter_command)


def filter_command(args) -> int:
    import torch

    from ecgaug.augment.cache import CacheMismatchError, CorruptCacheError, IncompleteCacheError, SyntheticCache
    from ecgaug.augment.filtering import filter_cache

    thresholds = {}
    for entry in args.class_threshold:
        name, sep, value = entry.partition("=")
        try:
            thresholds[name] = None if value.lower() == "none" else float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            print(f"ecgaug cache filter: error: --class_threshold should be CLASS=SCORE, but got {entry!r}", file=sys.stderr)
            return 2
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        cache = SyntheticCache(args.cache_dir)
        unknown = sorted(set(thresholds) - set(cache.config.classes))
        if unknown:
            raise ValueError(f"--class_threshold names classes {unknown} that the cache does not have ({cache.config.classes})")
        limits = {name: thresholds.get(name, args.threshold) for name in cache.config.classes}
        selection = filter_cache(cache, args.checkpoint, model_name=args.model, thresholds=limits, name=args.name,
                                 activation=args.activation, batch_size=args.batch_size, device=device,
                                 overwrite=args.overwrite, show_progress=not args.no_progress)  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError, CacheMismatchError, CorruptCacheError, IncompleteCacheError) as error:
        print(f"ecgaug cache filter: error: {error}", file=sys.stderr)
        return 1
    print(f"{cache.root}: selection {selection.name!r} keeps {len(selection.indices)} of {cache.num_records} synthetic ECGs "
          f"(classifier sha256 {selection.classifier_fingerprint[:12]}...)")  # fmt: skip
    for name in cache.config.classes:
        threshold = selection.thresholds[name]
        print(f"  {name}: {selection.kept[name]} of {selection.total[name]} kept (threshold {'none' if threshold is None else f'{threshold:g}'})")
    print(f"teacher scores: {cache.read_annex('selection', selection.name)[0]['scores']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``cache ...`` without importing the other ecgaug commands."""
    parser = argparse.ArgumentParser(prog="python -m ecgaug.commands.cache")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["cache", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
