"""The synthetic pool: one cache of DiffuSETS ECGs per run, and each cell's draw from it.

The pool is generated once per run (per guidance scale) into an ``ecgaug`` cache, so an
interrupted run resumes its generation and every cell reads the same ECGs. Planning and drawing
are the plugin's (:mod:`ecgaug.augment.plan`): :func:`plan_pool` is ``make_plan`` with
``PlanConfig(strategy="per_class", report_codes="frequency")`` (``pool_per_class`` jobs per class,
each copying the label set of a random real training record of the class, reports with member
codes weighted by their frequency in the training folds, patients drawn from the real training
records of those labels), and a cell takes from the pool what it needs with
:func:`ecgaug.augment.plan.select_from_pool`: each class is topped up towards the largest class
of the cell's real subset, at most ``synthetic_per_real`` synthetic ECGs per real record of the
class, and at most what the pool holds.

The generator must not have seen the test folds: :func:`check_model_card` reads the training
folds from the model card (``model_index.json`` "training": {"folds": [...]}) and refuses a model
without them or with a test fold among them.
"""
from __future__ import annotations

from typing import Sequence

from ecgaug.augment import GenerationPlan, PatientSampler, PlanConfig, SyntheticCache, make_plan, run_build
from ecgaug.settings import GenerationSettings

__all__ = ["GeneratorCardError", "build_pool", "check_model_card", "load_generator", "plan_pool"]


class GeneratorCardError(ValueError):
    """The generator's model card does not show that it never saw the test folds."""


def load_generator(name_or_path: str, *, scheduler: str, device: str):
    """``DiffuSETSPipeline.from_pretrained`` on ``device`` (``"auto"``: CUDA when available)."""
    import torch

    from ecgaug.pipeline import DiffuSETSPipeline

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return DiffuSETSPipeline.from_pretrained(name_or_path, scheduler=scheduler, device=device)


def check_model_card(info: dict, *, model_id: str, val_folds: Sequence[int], test_folds: Sequence[int]) -> dict:
    """Refuse a generator that may have seen a test fold; note one that saw a validation fold.

    Args:
        info: The pipeline's model card (``pipeline.info``, i.e. ``model_index.json``).
        model_id: For messages.

    Returns:
        ``{"model_id", "training_folds", "notes"}``; ``notes`` says when the generator saw a validation fold
        (allowed: checkpoints are still chosen on real validation records the classifier never trains on).

    Raises:
        GeneratorCardError: if the card lists no training folds, or lists a test fold.
    """
    training = info.get("training") if isinstance(info, dict) else None
    folds = training.get("folds") if isinstance(training, dict) else None
    if not isinstance(folds, (list, tuple)) or not folds or not all(isinstance(f, int) for f in folds):
        raise GeneratorCardError(
            f"The model card (model_index.json) of generator {model_id!r} should list its training folds as "
            f'"training": {{"folds": [...]}}, but has training={training!r}; without them the experiment cannot '
            "verify that the generator never saw the test folds. Use a model trained with `ecgaug train unet`, "
            "or add the folds it was trained on to its model_index.json."
        )
    seen_test = sorted(set(folds) & set(test_folds))
    if seen_test:
        raise GeneratorCardError(
            f"Generator {model_id!r} was trained on strat_folds {sorted(folds)}, which include the test folds {seen_test}; "
            "its synthetic ECGs would leak the test set into training. Use a generator trained without them, "
            "or choose other --test_folds."
        )
    notes = []
    seen_val = sorted(set(folds) & set(val_folds))
    if seen_val:
        notes.append(
            f"The generator was trained on validation folds {seen_val} (allowed: checkpoints are still chosen on real "
            "validation records that no classifier trains on, but synthetic ECGs may resemble them)."
        )
    return {"model_id": model_id, "training_folds": sorted(int(f) for f in folds), "notes": notes}


def plan_pool(train, classes: Sequence[str], *, per_class: int, ptbxl_root, task: str, seed: int,
              show_progress: bool = False) -> GenerationPlan:  # fmt: skip
    """The run's pool: ``per_class`` jobs per class over the training records of ``train`` (a ``PTBXL``)."""
    from ecgaug.text.reports import ReportTemplater

    config = PlanConfig(strategy="per_class", per_class=per_class, report_codes="frequency", seed=seed)
    return make_plan(train.targets, classes, reports=ReportTemplater.from_ptbxl(ptbxl_root, task=task),
                     patients=PatientSampler.from_dataset(train), config=config,
                     scp_codes=train.metadata["scp_codes"].tolist(), show_progress=show_progress)  # fmt: skip


def build_pool(cache_dir, plan: GenerationPlan, generator, settings: GenerationSettings, *, shard_size: int,
               show_progress: bool) -> SyntheticCache:  # fmt: skip
    """Generate ``plan`` into the cache at ``cache_dir`` (resuming a partial one) with ``settings``; returns the finished cache."""
    if settings.guidance_scale > 1.0 and not generator.supports_guidance:
        raise ValueError(
            f"guidance_scale={settings.guidance_scale:g} needs a generator trained with condition dropout, but "
            f"{generator.model_id!r} was not; use guidance_scale 1."
        )
    cache, _ = run_build(cache_dir, plan, generator, settings, shard_size=shard_size, show_progress=show_progress)
    cache.check_finished()
    return cache
