"""The synthetic pool: one cache of DiffuSETS ECGs per run, and each cell's draw from it.

The pool is generated once per run (per guidance scale) into an ``ecgaug`` cache, so an
interrupted run resumes its generation and every cell reads the same ECGs. It holds
``pool_per_class`` jobs per class: a job for class ``c`` copies the label set of a random real
training record of ``c`` (realistic co-occurrence, primary label first), gets a report templated
for those labels (member codes weighted by their frequency in the training folds) and a patient
(age, sex, heart rate) drawn from the real training records of those labels by
:class:`ecgaug.augment.PatientSampler`.

A cell then takes from the pool what its plan needs (:func:`select_synthetic`): each class is
topped up towards the largest class of the cell's real subset, at most ``synthetic_per_real``
synthetic ECGs per real record of the class, and at most what the pool holds.

The generator must not have seen the test folds: :func:`check_model_card` reads the training
folds from the model card (``model_index.json`` "training": {"folds": [...]}) and refuses a model
without them or with a test fold among them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ecgaug.augment import GenerationPlan, PatientSampler, SyntheticCache, run_build
from ecgaug.augment.plan import JOB_COLUMNS, LABEL_SEPARATOR, job_seed

__all__ = [
    "FrequencyWeightedReports",
    "GeneratorCardError",
    "check_model_card",
    "load_generator",
    "plan_pool",
    "build_pool",
    "pool_primary_labels",
    "select_synthetic",
]


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


class FrequencyWeightedReports:
    """``report_for_class`` of a :class:`~ecgaug.text.reports.ReportTemplater`, picking each class's
    member code with its frequency in the training records (uniform picking would write, e.g., as many
    rare posterior-MI reports as common inferior-MI ones).

    Args:
        templater: The templater (its ``task`` set to the data set's task).
        scp_codes: The training records' ``scp_codes`` dicts.
        classes: The class labels to prepare.
    """

    def __init__(self, templater, scp_codes: Sequence[dict], classes: Sequence[str]):
        self.templater = templater
        self.code_counts = {}
        for label in classes:
            statistics = templater.label_statistics(scp_codes, label)
            if statistics.num_records == 0:
                raise ValueError(f"No training record carries a code of class {label!r}, so no report can be templated for it")
            self.code_counts[label] = statistics.code_counts

    def report_for_class(self, label: str, *, rng: np.random.Generator, co_occurring: Sequence[str] | None = None) -> str:
        return self.templater.report_for_class(label, rng=rng, code_counts=self.code_counts[label], co_occurring=co_occurring)


def plan_pool(targets: np.ndarray, classes: Sequence[str], *, per_class: int, reports, patients: PatientSampler, seed: int,
              show_progress: bool = False) -> GenerationPlan:  # fmt: skip
    """``per_class`` jobs per class (class by class), each copying a random real record's label set.

    Args:
        targets: ``(N, C)`` multi-hot labels of the real training records.
        classes: The ``C`` class names.
        per_class: Jobs whose primary (first) label is each class.
        reports: ``report_for_class(label, rng=, co_occurring=)``, e.g. :class:`FrequencyWeightedReports`.
        patients: Draws each job's age, sex and heart rate.
        seed: Seed of the label sets, reports, patients and per-ECG diffusion seeds.

    Returns:
        A :class:`~ecgaug.augment.GenerationPlan` of ``per_class x C`` jobs.
    """
    classes = list(classes)
    positive = np.asarray(targets) > 0
    rng = np.random.default_rng([seed, 0])
    label_sets = []
    for c, name in enumerate(classes):
        records = np.flatnonzero(positive[:, c])
        if len(records) == 0:
            raise ValueError(f"Class {name!r} has no positive training record, so the pool cannot copy a label set for it")
        for record in rng.choice(records, size=per_class):
            label_sets.append([c] + [other for other in np.flatnonzero(positive[record]) if other != c])
    rows = []
    for index, labels in enumerate(tqdm(label_sets, desc="planning the pool", disable=not show_progress)):
        names = [classes[c] for c in labels]
        job_rng = np.random.default_rng([seed, 1, index])
        report = reports.report_for_class(names[0], rng=job_rng, co_occurring=names[1:] or None)
        patient = patients.sample(names, rng=job_rng, report=report)
        rows.append((index, LABEL_SEPARATOR.join(names), report, patient.age, patient.sex, patient.heart_rate, job_seed(seed, index)))
    info = {"kind": "per-class pool", "per_class": per_class, "seed": seed}
    return GenerationPlan(pd.DataFrame(rows, columns=list(JOB_COLUMNS)), classes, info)


def build_pool(cache_dir, plan: GenerationPlan, generator, *, num_inference_steps: int, guidance_scale: float,
               sampling_rate: float, shard_size: int, batch_size: int | None, show_progress: bool) -> SyntheticCache:  # fmt: skip
    """Generate ``plan`` into the cache at ``cache_dir`` (resuming a partial one); returns the finished cache."""
    if guidance_scale > 1.0 and not generator.supports_guidance:
        raise ValueError(
            f"guidance_scale={guidance_scale} needs a generator trained with condition dropout, but {generator.model_id!r} "
            "was not; use guidance_scale 1."
        )
    cache, _ = run_build(cache_dir, plan, generator, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         lead_order="ptbxl", sampling_rate=sampling_rate, shard_size=shard_size, batch_size=batch_size,
                         show_progress=show_progress)  # fmt: skip
    cache.check_finished()
    return cache


def select_synthetic(pool_targets: np.ndarray, pool_primary: np.ndarray, real_counts: np.ndarray, *, synthetic_per_real: float,
                     allowed: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Choose a cell's synthetic ECGs from the pool.

    Class ``c`` wants ``min(max(real_counts) - real_counts[c], floor(synthetic_per_real * real_counts[c]))``
    (zero where ``allowed[c]`` is False). Greedily, the class with the largest remaining want takes its next
    pool ECG (primary label ``c``, in a seeded order); that ECG counts for each of its labels. A class whose
    pool runs out stops there (reported as ``shortfall``).

    Args:
        pool_targets: ``(P, C)`` multi-hot labels of the pool.
        pool_primary: ``(P,)`` primary class index of each pool ECG.
        real_counts: ``(C,)`` positive real records of the cell.
        synthetic_per_real: Cap per class, relative to its real records.
        allowed: ``(C,)`` bool, classes that may get synthetic ECGs.
        seed: Seed of the order in which each class's pool ECGs are taken.

    Returns:
        ``(indices, summary)``: sorted pool indices, and ``{"wanted", "selected", "shortfall"}`` per class
        (``selected`` counts every label of the chosen ECGs).
    """
    pool_targets = np.asarray(pool_targets) > 0
    real_counts = np.asarray(real_counts, dtype=np.int64)
    num_classes = len(real_counts)
    wanted = np.minimum(real_counts.max() - real_counts, np.floor(synthetic_per_real * real_counts).astype(np.int64))
    wanted[~np.asarray(allowed, dtype=bool)] = 0
    rng = np.random.default_rng([seed, 2])
    queues = [list(rng.permutation(np.flatnonzero(pool_primary == c))) for c in range(num_classes)]
    remaining = wanted.copy()
    shortfall = np.zeros(num_classes, dtype=np.int64)
    chosen = []
    while remaining.max(initial=0) > 0:
        c = int(np.argmax(remaining))
        if not queues[c]:
            shortfall[c] = remaining[c]
            remaining[c] = 0
            continue
        index = int(queues[c].pop())
        chosen.append(index)
        labels = pool_targets[index] & (remaining > 0)
        remaining[labels] -= 1
    chosen = np.array(sorted(chosen), dtype=np.int64)
    selected = pool_targets[chosen].sum(axis=0) if len(chosen) else np.zeros(num_classes, dtype=np.int64)
    summary = {"wanted": wanted.tolist(), "selected": selected.astype(int).tolist(), "shortfall": shortfall.tolist()}
    return chosen, summary


def pool_primary_labels(plan: GenerationPlan) -> np.ndarray:
    """``(P,)`` class index of each job's primary (first) label."""
    column = {name: i for i, name in enumerate(plan.classes)}
    return np.array([column[labels.split(LABEL_SEPARATOR)[0]] for labels in plan.jobs["labels"]], dtype=np.int64)

