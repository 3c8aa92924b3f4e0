"""The three stages of a run, each saving what it produced so that a rerun resumes.

``prepare``  checks the generator's model card, loads the folds, draws every (regime, seed)
             subset and generates the synthetic pool (resumable ``ecgaug`` cache);
``perform``  trains and predicts each pending cell and saves it (an interrupted run resumes at the
             next cell; a finished cell is never retrained);
``evaluate`` turns the saved test predictions into ``results.json``, ``table.md`` and the plots.

Run folder::

    run_dir/
        config.json          the experiment (ExperimentConfig), checked on every rerun
        command.txt          the exact command (later invocations appended as comments)
        prepare.json         classes, rare classes, subset sizes, generator card, pools
        subsets/<regime>/seed<s>.json          training rows and ecg_ids of each subset
        val_subset.json      validation ecg_ids (when val_fraction < 1)
        test_targets.npy, test_ecg_ids.npy     the test folds' targets, in prediction order
        synthetic_cache/     the pool (synthetic_cache_g<scale>/ for other guidance scales)
        guided/<regime>/seed<s>/   real-guided cache of each (regime, seed) with a "guided" arm (its own rare-class records)
        cells/<regime>/<arm>/seed<s>/
            cell.json        spec, sizes, synthetic draw, best epoch, timing (written last: "done")
            y_test_pred.npy  (num_test, C) float32 sigmoid scores
            history.jsonl, train_config.json, best.pt   from classifiers.train.fit
        evaluation/bootstrap_ids.npy           the test resamples behind every interval
        results.json, table.md, auc_vs_fraction.png, per_class_gain.png, sweep.png (sweeps)
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm.auto import tqdm

from classifiers import create_model, is_model, list_models
from classifiers.metrics import bootstrap_indices
from classifiers.train import TrainConfig, fit, make_dataloader, predict
from ecgaug.augment import AugmentedDataset, ClassBalancedSampler, SyntheticCache
from ecgaug.augment.filtering import load_classifier, score_cache, teacher_scores
from ecgaug.augment.plan import primary_labels, select_from_pool
from ecgaug.data.ptbxl import PTBXL, load_database
from ecgaug.settings import GenerationSettings

from . import report, synthetic, timing, variants
from .arms import training_data
from .config import Arm, ExperimentConfig, Regime
from .regimes import Subset as RegimeSubset
from .regimes import make_subset, patient_subset, rarest_classes

__all__ = ["Prepared", "RunFolderError", "run", "prepare", "perform", "evaluate", "cell_dir"]

SAMPLING_RATE = 100
VAL_SUBSET_SEED = 0
PREPARE_NAME = "prepare.json"
CELL_NAME = "cell.json"
PREDICTION_NAME = "y_test_pred.npy"


class RunFolderError(ValueError):
    """The run folder holds another experiment, or cells trained with other settings."""


def _write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def cell_dir(run_dir, regime: Regime, arm: Arm, seed: int) -> Path:
    return Path(run_dir) / "cells" / regime.name / arm.name / f"seed{seed}"


def pool_dir(run_dir, guidance_scale: float, config: ExperimentConfig) -> Path:
    """``synthetic_cache`` for the main arms' guidance scale, ``synthetic_cache_g<scale>`` for others."""
    main = config.synthetic_arms[0].guidance_scale
    return Path(run_dir) / ("synthetic_cache" if guidance_scale == main else f"synthetic_cache_g{guidance_scale:g}")


def cell_spec(regime: Regime, arm: Arm, seed: int) -> dict:
    """What a cell was trained with; arm fields added later are left out at their defaults (older cells still match)."""
    arm_fields = {name: value for name, value in dataclasses.asdict(arm).items()
                  if not (name in Arm.OPTIONAL_FIELDS and value == Arm.OPTIONAL_FIELDS[name])}  # fmt: skip
    return {"regime": dataclasses.asdict(regime), "arm": arm_fields, "seed": seed}


def finished_cell(run_dir, regime: Regime, arm: Arm, seed: int) -> dict | None:
    """The cell's ``cell.json`` if it finished with this exact spec; ``None`` if it has not finished.

    Raises:
        ValueError: if the folder holds a cell trained with another spec (the run's arms changed).
    """
    folder = cell_dir(run_dir, regime, arm, seed)
    path = folder / CELL_NAME
    if not (path.is_file() and (folder / PREDICTION_NAME).is_file()):
        return None
    info = json.loads(path.read_text())
    if info["spec"] != cell_spec(regime, arm, seed):
        raise RunFolderError(
            f"{folder} holds a cell trained with other settings:\n  saved: {info['spec']}\n  now:   {cell_spec(regime, arm, seed)}\n"
            "Give the changed arm or regime a new name, or use a new --output_dir."
        )
    return info


@dataclass
class Prepared:
    """What ``prepare`` produced (and ``perform`` uses)."""

    train: PTBXL
    val: torch.utils.data.Dataset
    test: PTBXL
    classes: list[str]
    rare_classes: list[str]
    subsets: dict[tuple[str, int], RegimeSubset]
    pools: dict[float, SyntheticCache] = field(default_factory=dict)
    guided: dict[tuple[str, int], SyntheticCache] = field(default_factory=dict)
    generator_card: dict | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- run
def run(config: ExperimentConfig, *, command: str, evaluate_only: bool = False, estimate_only: bool = False) -> dict | None:
    """Run (or resume) the experiment in ``config.output_dir``; returns the results (``None`` for ``estimate_only``)."""
    run_dir = Path(config.output_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        if evaluate_only:
            _record_command(run_dir, command, "evaluate_only")
            return evaluate(config, run_dir)
        _open_run_dir(config, run_dir, command)
        prepared = prepare(config, run_dir, estimate_only=estimate_only)
        if prepared is None:
            return None
        perform(config, run_dir, prepared)
        return evaluate(config, run_dir)
    finally:
        torch.set_num_threads(threads)


def _record_command(run_dir: Path, command: str, kind: str) -> None:
    path = run_dir / "command.txt"
    if not path.is_file():
        path.write_text(command + "\n")
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with path.open("a") as handle:
        handle.write(f"# {stamp} {kind}: {command}\n")


def _open_run_dir(config: ExperimentConfig, run_dir: Path, command: str) -> None:
    """Create the run folder, or check that an existing one was made with the same settings."""
    if (run_dir / "config.json").is_file():
        saved = ExperimentConfig.load(run_dir)
        differences = config.mismatches(saved)
        if differences:
            raise RunFolderError(
                f"The run in {run_dir} was made with other settings:\n  - " + "\n  - ".join(differences)
                + "\nResume it with the same settings (or only other regimes/arms/seeds), or use a new --output_dir."
            )
        _record_command(run_dir, command, "resumed")
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunFolderError(f"{run_dir} is not empty and holds no experiment (config.json missing); choose a new --output_dir.")
        run_dir.mkdir(parents=True, exist_ok=True)
        _record_command(run_dir, command, "started")
    config.save(run_dir)


# ------------------------------------------------------------------------------------- prepare
def _check_both_labels(dataset: PTBXL, role: str, folds) -> None:
    positives = dataset.targets.sum(axis=0)
    bad = [name for name, count in zip(dataset.classes, positives) if count == 0 or count == len(dataset)]
    if bad:
        raise ValueError(
            f"The {role} folds {list(folds)} need a positive and a negative record of every class for AUC, but classes {bad} "
            f"have {[int(positives[dataset.classes.index(b)]) for b in bad]} positives of {len(dataset)}; choose other folds or --classes."
        )


def _hide_library_progress_bars() -> None:
    """For --no_progress: the text encoder's weight-loading bar comes from transformers."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()


def _load_generator_and_card(config: ExperimentConfig):
    if not config.synthetic_arms:
        return None, None
    if not config.progress:
        _hide_library_progress_bars()
    generator = synthetic.load_generator(config.model, scheduler=config.scheduler, device=config.device)
    card = synthetic.check_model_card(generator.info, model_id=generator.model_id, val_folds=config.val_folds, test_folds=config.test_folds)
    if max(config.guidance_scales) > 1.0 and not generator.supports_guidance:
        raise ValueError(f"Arms use guidance_scale {max(config.guidance_scales)} > 1, but generator {generator.model_id!r} "
                         "was trained without condition dropout; use guidance scale 1.")  # fmt: skip
    return generator, card


def prepare(config: ExperimentConfig, run_dir, *, estimate_only: bool = False) -> Prepared | None:
    """Check the generator, load the folds, draw the subsets, print a time estimate and build the pools."""
    run_dir = Path(run_dir)
    if not is_model(config.classifier):
        raise ValueError(f"Unknown classifier {config.classifier!r}. Valid values are {list_models()}.")
    generator, card = _load_generator_and_card(config)  # refuse a leaky generator before any other work
    notes = list(card["notes"]) if card else []

    train = PTBXL(config.ptbxl, folds=config.train_folds, task=config.task, classes=config.classes, sampling_rate=SAMPLING_RATE,
                  progress=config.progress)
    classes = list(train.classes)
    val = PTBXL(config.ptbxl, folds=config.val_folds, task=config.task, classes=classes, sampling_rate=SAMPLING_RATE,
                progress=config.progress)
    test = PTBXL(config.ptbxl, folds=config.test_folds, task=config.task, classes=classes, sampling_rate=SAMPLING_RATE,
                 progress=config.progress)
    _check_both_labels(val, "validation", config.val_folds)
    _check_both_labels(test, "test", config.test_folds)
    if config.rare_classes is not None:
        unknown = [name for name in config.rare_classes if name not in classes]
        if unknown:
            raise ValueError(f"rare_classes should be classes of the task {classes}, but {unknown} are not")
        rare = list(config.rare_classes)
    else:
        rare = rarest_classes(train.targets, classes, config.num_rare_classes)

    subsets = _draw_subsets(config, run_dir, train, classes, rare)
    val_used = _validation_subset(config, run_dir, val)
    np.save(run_dir / "test_targets.npy", test.targets)
    np.save(run_dir / "test_ecg_ids.npy", test.metadata["ecg_id"].to_numpy())
    if len(config.seeds) < 3:
        notes.append(f"Only {len(config.seeds)} seed(s) per cell; issue #5 asks for at least 3.")

    pending = [(r, a, s) for r, a, s in config.cells() if finished_cell(run_dir, r, a, s) is None]
    estimate = _estimate(config, run_dir, generator, train, val_used, test, subsets, pending, rare=rare)
    print(estimate.describe(), flush=True)
    info = {
        "classes": classes,
        "rare_classes": rare,
        "num_records": {"train": len(train), "val": len(val_used), "val_folds": len(val), "test": len(test)},
        "subsets": {f"{r}/seed{s}": {"records": len(sub.rows), "patients": sub.num_patients, "positives": sub.positives}
                    for (r, s), sub in subsets.items()},  # fmt: skip
        "generator": card,
        "notes": notes,
        "estimate_seconds": dataclasses.asdict(estimate),
    }
    _write_json_atomic(run_dir / PREPARE_NAME, info)
    if estimate_only:
        return None

    pools, guided = {}, {}
    if generator is not None:
        # One pass over every database record, cached beside the PTB-XL signal cache.
        train.heart_rates(num_workers=config.num_threads if config.num_threads > 1 else 0)
        plan = synthetic.plan_pool(train, classes, per_class=config.pool_per_class, ptbxl_root=config.ptbxl, task=config.task,
                                   seed=config.pool_seed, show_progress=config.progress)  # fmt: skip
        for scale in config.guidance_scales:
            settings = GenerationSettings(model=config.model, scheduler=config.scheduler, num_inference_steps=config.num_inference_steps,
                                          guidance_scale=scale, lead_order="ptbxl", sampling_rate=SAMPLING_RATE,
                                          batch_size=config.generation_batch_size)  # fmt: skip
            pools[scale] = synthetic.build_pool(pool_dir(run_dir, scale, config), plan, generator, settings,
                                                shard_size=config.shard_size, show_progress=config.progress)  # fmt: skip
        guided = _build_guided(config, run_dir, generator, train, classes, rare, subsets)
        info["pools"] = {f"{scale:g}": str(cache.root) for scale, cache in pools.items()}
        info["guided"] = {f"{r}/seed{s}": len(cache) for (r, s), cache in guided.items()}
        _write_json_atomic(run_dir / PREPARE_NAME, info)
        del generator
    return Prepared(train=train, val=val_used, test=test, classes=classes, rare_classes=rare, subsets=subsets, pools=pools,
                    guided=guided, generator_card=card, notes=notes)  # fmt: skip


def _guided_arms(config: ExperimentConfig) -> list[Arm]:
    return [arm for arm in config.synthetic_arms if arm.source == "guided"]


def _guided_jobs(config: ExperimentConfig, train_targets, rows, classes, rare) -> int:
    """Jobs per rare class of one (regime, seed)'s guided cache."""
    per_real = max(arm.synthetic_per_real for arm in _guided_arms(config))
    return variants.guided_per_class(train_targets[rows].sum(axis=0), [classes.index(c) for c in rare], synthetic_per_real=per_real,
                                     cap=config.pool_per_class)  # fmt: skip


def _build_guided(config: ExperimentConfig, run_dir: Path, generator, train, classes, rare, subsets) -> dict:
    """The real-guided cache of every (regime, seed) that a "guided" arm trains on (resumable, like the pool)."""
    from ecgaug.augment import run_build
    from ecgaug.settings import GenerationSettings
    from ecgaug.text.reports import ReportTemplater

    guided = {}
    if not _guided_arms(config):
        return guided
    reports = ReportTemplater.from_ptbxl(config.ptbxl, task=config.task)
    settings = GenerationSettings(model=config.model, scheduler=config.scheduler, num_inference_steps=config.num_inference_steps,
                                  guidance_scale=_guided_arms(config)[0].guidance_scale, strength=config.guided_strength,
                                  lead_order="ptbxl", sampling_rate=SAMPLING_RATE, batch_size=config.generation_batch_size)  # fmt: skip
    for regime in config.regimes:
        for seed in config.seeds:
            rows = subsets[(regime.name, seed)].rows
            plan, seeds = variants.plan_guided(train, rows, classes, rare, per_class=_guided_jobs(config, train.targets, rows, classes, rare),
                                               reports=reports, held_out_folds=[*config.val_folds, *config.test_folds],
                                               seed=config.pool_seed + 7919 * (seed + 1))  # fmt: skip
            cache, _ = run_build(run_dir / "guided" / regime.name / f"seed{seed}", plan, generator, settings,
                                 shard_size=config.shard_size, show_progress=config.progress, seed_dataset=seeds)  # fmt: skip
            cache.check_finished()
            guided[(regime.name, seed)] = cache
    return guided


def _draw_subsets(config: ExperimentConfig, run_dir: Path, train: PTBXL, classes, rare) -> dict[tuple[str, int], RegimeSubset]:
    """Every (regime, seed) subset; saved, and checked against a saved one on reruns."""
    patient_ids = train.metadata["patient_id"].to_numpy()
    ecg_ids = train.metadata["ecg_id"].to_numpy()
    subsets = {}
    for regime in config.all_regimes:
        for seed in config.seeds:
            subset = make_subset(regime, seed, targets=train.targets, patient_ids=patient_ids, ecg_ids=ecg_ids, classes=classes, rare_classes=rare)
            if len(subset.rows) < config.batch_size:
                raise ValueError(
                    f"Regime {regime.name!r} with seed {seed} has {len(subset.rows)} training records, fewer than batch_size "
                    f"{config.batch_size}: training drops incomplete batches and would have none. Lower --batch_size or raise the fraction."
                )
            path = run_dir / "subsets" / regime.name / f"seed{seed}.json"
            if path.is_file():
                saved = json.loads(path.read_text())
                if saved["ecg_ids"] != subset.ecg_ids.tolist():
                    raise RunFolderError(f"The subset saved in {path} differs from the one drawn now; the PTB-XL copy or its labels changed. "
                                     "Use a new --output_dir.")  # fmt: skip
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_json_atomic(path, {"regime": dataclasses.asdict(regime), "seed": seed, "rare_classes": rare, **subset.to_dict()})
            subsets[(regime.name, seed)] = subset
    return subsets


def _validation_subset(config: ExperimentConfig, run_dir: Path, val: PTBXL):
    if config.val_fraction == 1.0:
        return val
    rows = patient_subset(val.metadata["patient_id"].to_numpy(), config.val_fraction, VAL_SUBSET_SEED)
    subset = Subset(val, rows.tolist())
    positives = val.targets[rows].sum(axis=0)
    if (positives == 0).any() or (positives == len(rows)).any():
        raise ValueError(f"val_fraction={config.val_fraction} leaves a class without positives or negatives in validation "
                         f"({dict(zip(val.classes, positives.astype(int).tolist()))}); raise --val_fraction.")  # fmt: skip
    _write_json_atomic(run_dir / "val_subset.json", {"fraction": config.val_fraction, "ecg_ids": val.metadata["ecg_id"].to_numpy()[rows].tolist()})
    return subset


def _estimate(config, run_dir, generator, train, val, test, subsets, pending, *, rare=()) -> timing.Estimate:
    estimate = timing.Estimate(cells=len(pending))
    if pending:
        train_rate, eval_rate = timing.measure_classifier(config.classifier, num_classes=train.num_classes, num_samples=train.num_samples,
                                                          batch_size=min(config.batch_size, 64), device=config.device)  # fmt: skip
        estimate.train_rate, estimate.eval_rate = train_rate, eval_rate
        for regime, arm, seed in pending:
            records = len(subsets[(regime.name, seed)].rows)
            epochs = config.epochs + (variants.pretrain_epochs(config.epochs) if arm.pretrain else 0)
            seconds = epochs * (records / train_rate + len(val) / eval_rate) + len(test) / eval_rate
            estimate.training += timing.LOADING_OVERHEAD * seconds
    if generator is not None:
        # Heart rates are measured once for the whole database; an upper bound (they may be cached).
        num_records = len(load_database(config.ptbxl))
        estimate.heart_rates = timing.HEART_RATE_SECONDS_PER_RECORD * num_records / max(1, config.num_threads)
        total = config.pool_per_class * train.num_classes
        missing = 0
        for scale in config.guidance_scales:
            folder = pool_dir(run_dir, scale, config)
            if (folder / "cache.json").is_file():
                cache = SyntheticCache(folder)
                missing += sum(cache.shard_bounds(s)[1] - cache.shard_bounds(s)[0] for s in cache.missing_shards())
            else:
                missing += total
        if missing:
            scale = max(config.guidance_scales)
            rate = timing.measure_generation(generator, num_inference_steps=config.num_inference_steps, guidance_scale=scale,
                                             sampling_rate=SAMPLING_RATE)  # fmt: skip
            estimate.generation_rate, estimate.pool_ecgs, estimate.pool = rate, missing, missing / rate
        if _guided_arms(config):  # an upper bound: every guided cache generated afresh, strength x the steps
            rare_classes = list(rare)
            jobs = sum(_guided_jobs(config, train.targets, subsets[(r.name, s)].rows, list(train.classes), rare_classes) * len(rare_classes)
                       for r in config.regimes for s in config.seeds)  # fmt: skip
            rate = estimate.generation_rate or timing.measure_generation(generator, num_inference_steps=config.num_inference_steps,
                                                                         guidance_scale=1.0, sampling_rate=SAMPLING_RATE)  # fmt: skip
            estimate.generation_rate = rate
            estimate.pool_ecgs += jobs
            estimate.pool += jobs * config.guided_strength / rate
    estimate.evaluation = len(config.cells()) * config.n_bootstrap * timing.measure_bootstrap(len(test), train.num_classes)
    return estimate


# ------------------------------------------------------------------------------------- perform
@dataclass
class _Pool:
    dataset: AugmentedDataset
    targets: np.ndarray  # (num_real + P, C) targets of dataset
    pool_targets: np.ndarray  # (P, C)
    primary: np.ndarray  # (P,)


def perform(config: ExperimentConfig, run_dir, prepared: Prepared) -> list[tuple[str, str, int]]:
    """Train and predict every pending cell; returns the cells trained by this call."""
    run_dir = Path(run_dir)
    pools = {}
    for scale, cache in prepared.pools.items():
        augmented = AugmentedDataset(prepared.train, cache)
        pools[scale] = _Pool(augmented, augmented.targets, cache.plan.targets, primary_labels(cache.plan))
    for key, cache in prepared.guided.items():
        augmented = AugmentedDataset(prepared.train, cache)
        pools[key] = _Pool(augmented, augmented.targets, cache.plan.targets, primary_labels(cache.plan))
    base_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, patience=config.patience,
                              num_workers=config.num_workers, device=config.device, progress=False)  # fmt: skip
    val_loader = make_dataloader(prepared.val, base_config)
    test_loader = make_dataloader(prepared.test, base_config)
    test_targets = np.load(run_dir / "test_targets.npy")
    rare_mask = np.isin(prepared.classes, prepared.rare_classes)

    pending = [(r, a, s) for r, a, s in config.cells() if finished_cell(run_dir, r, a, s) is None]
    done = len(config.cells()) - len(pending)
    print(f"{done} of {len(config.cells())} cells already finished; training {len(pending)}.", flush=True)
    trained = []
    bar = tqdm(pending, desc="cells", unit="cell", disable=not config.progress)
    for regime, arm, seed in bar:
        bar.set_postfix_str(f"{regime.name}/{arm.name}/seed{seed}")
        info = _train_cell(config, run_dir, prepared, pools, regime, arm, seed, base_config, val_loader, test_loader, test_targets, rare_mask)
        bar.set_postfix_str(f"{regime.name}/{arm.name}/seed{seed}: val AUC {info['best_val_auc']:.3f}")
        trained.append((regime.name, arm.name, seed))
    return trained


def _train_cell(config, run_dir, prepared, pools, regime, arm, seed, base_config, val_loader, test_loader, test_targets, rare_mask) -> dict:
    folder = cell_dir(run_dir, regime, arm, seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = prepared.subsets[(regime.name, seed)].rows
    train_targets = prepared.train.targets
    synthetic_info, extra = None, {}
    if arm.synthetic:
        pool = pools[(regime.name, seed)] if arm.source == "guided" else pools[arm.guidance_scale]
        allowed = rare_mask if arm.synthetic_classes == "rare" else np.ones(len(prepared.classes), dtype=bool)
        primary, augmented, filtered = pool.primary, pool.dataset, None
        if arm.teacher is not None:
            teacher = _cell_teacher(config, run_dir, prepared, regime, seed)
            device = _score_device(config)
            if arm.teacher == "filter":  # thresholds on the validation records, then keep ECGs whose every label passes
                y_val, s_val = predict(teacher, val_loader)
                thresholds = variants.youden_thresholds(y_val, s_val)
                scores = score_cache(pool.dataset.cache, teacher, classes=prepared.classes, batch_size=config.batch_size, device=device)
                kept = ((scores >= thresholds) | (pool.pool_targets == 0)).all(axis=1)
                primary = np.where(kept, primary, -1)
                filtered = {"thresholds": dict(zip(prepared.classes, thresholds.tolist())), "kept": int(kept.sum()), "pool": int(len(kept))}
            else:  # soft labels: the teacher's scores are the synthetic targets
                name = teacher_scores(pool.dataset.cache, teacher, classes=prepared.classes, batch_size=config.batch_size, device=device)
                augmented = AugmentedDataset(prepared.train, pool.dataset.cache, synthetic_targets=name)
        indices, synthetic_info = select_from_pool(pool.pool_targets, primary, train_targets[rows].sum(axis=0),
                                                   synthetic_per_real=arm.synthetic_per_real, allowed=allowed, seed=seed)  # fmt: skip
        if filtered is not None:
            synthetic_info["filter"] = filtered
        extra = dict(augmented=augmented, augmented_targets=pool.targets, synthetic_indices=indices)
        np.save(folder / "synthetic_indices.npy", indices)
    data = training_data(arm, train=prepared.train, train_targets=train_targets, rows=rows, batch_size=config.batch_size, seed=seed,
                         sampling_rate=SAMPLING_RATE, **extra)  # fmt: skip
    if arm.pretrain:  # the synthetic draw alone first; the real records are trained on after it, as in `real`
        pretrain_set = (augmented, augmented.num_real + indices) if len(indices) else None
        data = training_data(Arm("real"), train=prepared.train, train_targets=train_targets, rows=rows, batch_size=config.batch_size,
                             seed=seed, sampling_rate=SAMPLING_RATE)  # fmt: skip
        data.num_synthetic = len(indices)
    if arm.synthetic_weight is not None:
        mask = np.concatenate([np.zeros(data.num_real, dtype=bool), np.ones(data.num_synthetic, dtype=bool)])
        data.dataset = variants.FlagSynthetic(data.dataset, mask)
    train_config = dataclasses.replace(base_config, seed=seed, progress=config.progress,
                                       pos_weight=None if data.pos_weight is None else data.pos_weight.tolist())  # fmt: skip
    loader = make_dataloader(data.dataset, train_config, shuffle=data.sampler is None, sampler=data.sampler, drop_last=True)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the classifier's initial weights
        model = create_model(config.classifier, num_classes=len(prepared.classes))
    if arm.synthetic_weight is not None:
        model = variants.WeightedLogits(model, arm.synthetic_weight)
    if arm.pretrain and pretrain_set is not None:
        dataset, items = pretrain_set
        pre_config = dataclasses.replace(train_config, epochs=variants.pretrain_epochs(config.epochs), patience=None)
        sampler = ClassBalancedSampler(pool.targets[items], num_samples=len(rows), seed=seed)
        pre_loader = make_dataloader(Subset(dataset, items.tolist()), pre_config, sampler=sampler, drop_last=True)
        fit(model, pre_loader, val_loader, pre_config, out_dir=folder / "pretrain")
    result = fit(model, loader, val_loader, train_config, out_dir=folder)
    train_seconds = time.perf_counter() - start
    y_true, y_score = predict(model, test_loader)
    if not np.array_equal(y_true, test_targets):
        raise RuntimeError(f"The test loader's targets differ from {run_dir / 'test_targets.npy'}; the test folds changed since prepare.")
    np.save(folder / PREDICTION_NAME, y_score.astype(np.float32))
    info = {
        "spec": cell_spec(regime, arm, seed),
        "num_real": data.num_real,
        "num_synthetic": data.num_synthetic,
        "classes": prepared.classes,
        "real_positives": train_targets[rows].sum(axis=0).astype(int).tolist(),
        "synthetic": synthetic_info,
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "stopped_early": result.stopped_early,
        "train_seconds": train_seconds,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json_atomic(folder / CELL_NAME, info)  # last: marks the cell finished
    return info


def _score_device(config: ExperimentConfig) -> str:
    if config.device != "auto":
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cell_teacher(config: ExperimentConfig, run_dir: Path, prepared: Prepared, regime: Regime, seed: int):
    """The ``real`` arm's classifier of this (regime, seed): trained on the cell's real records only."""
    real = next(arm for arm in config.arms if arm.name == "real")
    if finished_cell(run_dir, regime, real, seed) is None:
        raise RuntimeError(f"The {regime.name}/real/seed{seed} cell has not finished, but its classifier filters or labels the "
                           "synthetic ECGs of this cell; train the real arm first (it comes first in the arms).")  # fmt: skip
    path = cell_dir(run_dir, regime, real, seed) / "best.pt"
    return load_classifier(path, model_name=config.classifier, num_classes=len(prepared.classes))


# ------------------------------------------------------------------------------------ evaluate
def evaluate(config: ExperimentConfig, run_dir) -> dict:
    """Results, table and plots from the saved predictions of every finished cell."""
    run_dir = Path(run_dir)
    prepare_path = run_dir / PREPARE_NAME
    if not prepare_path.is_file():
        raise FileNotFoundError(f"{prepare_path} is missing; run the experiment (without --evaluate_only) to prepare it first.")
    info = json.loads(prepare_path.read_text())
    y_true = np.load(run_dir / "test_targets.npy")
    predictions, cells, missing = {}, {}, []
    for regime, arm, seed in config.cells():
        cell = finished_cell(run_dir, regime, arm, seed)
        if cell is None:
            missing.append(f"{regime.name}/{arm.name}/seed{seed}")
            continue
        predictions[(regime.name, arm.name, seed)] = np.load(cell_dir(run_dir, regime, arm, seed) / PREDICTION_NAME)
        cells[(regime.name, arm.name, seed)] = cell
    if not predictions:
        raise FileNotFoundError(f"No finished cell in {run_dir / 'cells'}; run the experiment without --evaluate_only first.")
    (run_dir / "evaluation").mkdir(exist_ok=True)
    indices = bootstrap_indices(y_true, config.n_bootstrap, seed=0)
    np.save(run_dir / "evaluation" / "bootstrap_ids.npy", indices)
    results = report.summarize(config, y_true=y_true, predictions=predictions, cells=cells, classes=info["classes"],
                               rare_classes=info["rare_classes"], indices=indices, generator=info.get("generator"),
                               show_progress=config.progress)  # fmt: skip
    notes = list(info.get("notes", []))
    if missing:
        notes.append(f"{len(missing)} cells have not finished and are left out: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    shortfalls = [f"{r}/{a}" for r, arms in results["results"].items() for a, e in arms.items() if e["synthetic_shortfall"]]
    if shortfalls:
        notes.append(f"The pool ({config.pool_per_class} per class) was too small for the plan of {', '.join(shortfalls)}; "
                     "raise --pool_per_class for the full plan (counts in each cell.json).")  # fmt: skip
    if info.get("generator"):
        notes.append(f"Generator {info['generator']['model_id']} (trained on folds {info['generator']['training_folds']}); "
                     "the scarcity is of the classifier's labelled data: the generator itself saw all its training folds.")  # fmt: skip
    results["notes"] = notes
    results["missing_cells"] = missing
    report.write_json(results, run_dir / "results.json")
    report.write_table(results, run_dir / "table.md", notes=notes)
    report.plot_auc_vs_fraction(results, run_dir / "auc_vs_fraction.png")
    report.plot_per_class_gain(results, run_dir / "per_class_gain.png")
    if config.sweep:
        report.plot_sweep(results, config.arms, run_dir / "sweep.png")
    print(f"Results in {run_dir}: results.json, table.md and plots ({len(predictions)} cells, {len(missing)} missing).", flush=True)
    return results
