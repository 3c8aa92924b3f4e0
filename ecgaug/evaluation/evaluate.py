"""Fidelity evaluation of a trained DiffuSETS model on held-out PTB-XL folds, for its model card.

:func:`evaluate_model` measures, on test folds the model was not trained on
(:func:`~ecgaug.evaluation.conditions.check_held_out` refuses otherwise), with the default sampler
(and DDPM-1000 on a subset, twice, as the run-to-run noise floor):

1. **VAE reconstruction** of the conditions' real ECGs (per-lead RMSE and Pearson r) and the
   **reconstruction ceiling**: the real-data classifier's macro-AUC on the reconstructions over its
   macro-AUC on the originals.
2. **Heart-rate control** and **rhythm regularity**: each condition is a test record (its templated
   report, age, sex, measured heart rate); one ECG per condition, seeded per condition. Heart rate
   and the coefficient of variation of RR intervals are measured on generated and real ECGs with
   the same detector (:mod:`ecgaug.data.heart_rate`).
3. **Class recognition** by classifiers trained on real training folds: superclasses, and rhythm
   statements (SR, SBRAD, STACH, AFIB); generated against the real ECGs of the same conditions.
4. **TSTR**: a classifier trained only on generated ECGs of training-fold conditions, balanced per
   superclass, tested on the real test folds; beside it the same classifier trained on the real ECGs
   of the same records (**TRTR**).
5. **Lead consistency**: how far ECGs break Einthoven's and Goldberger's relations, generated against real.

The result is a JSON-able dict with a flat ``summary`` of the headline figures.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ecgaug.models.modeling_utils import config_to_dict
from ecgaug.schedulers import DEFAULT_SCHEDULER
from ecgaug.settings import GenerationSettings, check_positive_int
from ecgaug.signal import MODEL_NUM_SAMPLES, convert_ecg

from . import metrics
from .classifiers import classify, train_and_test, train_or_load_classifier
from .samplers import compare_runs, per_condition_values
from .conditions import (RHYTHM_CLASSES, SAMPLING_RATE, SINUS_RHYTHMS, SUPERCLASSES, TestConditions, check_folds, check_held_out,
                         load_balanced_conditions, load_test_conditions)

__all__ = ["SamplerRun", "evaluate_model", "generate_for_conditions", "reconstruct", "save_results"]

RHYTHM_GROUPS = {"sinus": SINUS_RHYTHMS, "afib": ("AFIB",)}


@dataclass(frozen=True)
class SamplerRun:
    """One generation run: ``scheduler`` (see :func:`ecgaug.schedulers.make_scheduler`), its steps, and
    ``seed_stream``, which selects the per-condition seeds (runs with the same stream start from the same noise)."""

    name: str
    scheduler: str
    num_inference_steps: int
    seed_stream: int = 0


@torch.no_grad()
def reconstruct(vae, signals: torch.Tensor, *, batch_size: int = 64, show_progress: bool = True) -> torch.Tensor:
    """VAE round trip (posterior mean) of ECGs ``(N, 12, 1000)`` in PTB-XL order at 100 Hz, returned in the same format."""
    if signals.ndim != 3 or tuple(signals.shape[1:]) != (12, SAMPLING_RATE * 10):
        raise ValueError(f"signals should have shape (N, 12, {SAMPLING_RATE * 10}) (PTB-XL at 100 Hz), but got {tuple(signals.shape)}.")
    device = next(vae.parameters()).device
    out = []
    for start in tqdm(range(0, len(signals), batch_size), desc="VAE round trip", disable=not show_progress):
        x = convert_ecg(signals[start:start + batch_size], source_leads="ptbxl", target_leads="model", num_samples=MODEL_NUM_SAMPLES)
        decoded = vae.decode(vae.encode(x.to(device)).mode()).float().cpu()
        out.append(convert_ecg(decoded, source_leads="model", target_leads="ptbxl", num_samples=signals.shape[-1]))
    return torch.cat(out)


def _generators(count: int, seed: int, stream: int) -> list[torch.Generator]:
    """One generator per condition; seeds depend only on (seed, stream, condition index)."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, i]).generate_state(1)[0])) for i in range(count)]


def generate_for_conditions(pipe, conditions: TestConditions, run: SamplerRun, *, seed: int, batch_size: int = 64,
                            show_progress: bool = True) -> tuple[torch.Tensor, float]:
    """One ECG per condition with ``run``'s sampler; returns ``(ecgs (N, 12, 1000) PTB-XL order at 100 Hz, seconds)``.

    The pipeline's sampler is restored afterwards.
    """
    previous = pipe.scheduler
    pipe.set_scheduler(run.scheduler)
    try:
        start = time.perf_counter()
        ecgs = pipe(conditions.reports, list(conditions.age), conditions.sex, list(conditions.heart_rate),
                    num_inference_steps=run.num_inference_steps, generator=_generators(len(conditions), seed, run.seed_stream),
                    lead_order="ptbxl", sampling_rate=SAMPLING_RATE, batch_size=batch_size, show_progress=show_progress).ecgs
        seconds = time.perf_counter() - start
    finally:
        pipe.set_scheduler(previous)
    return ecgs, seconds


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def _model_description(pipe) -> dict:
    schedule = pipe.training_scheduler_config
    return {
        "model_id": pipe.model_id,
        "name": pipe.info.get("name"),
        "vae_parameters": pipe.vae.num_parameters,
        "unet_parameters": pipe.unet.num_parameters,
        "vae_config": config_to_dict(pipe.vae.config),
        "unet_config": config_to_dict(pipe.unet.config),
        "text_encoder": pipe.info.get("text_encoder"),
        "text_encoder_name": getattr(pipe.text_encoder, "name", None),
        "training_schedule": {key: schedule[key] for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type") if key in schedule},
    }


def evaluate_model(
    pipe,
    ptbxl_root,
    *,
    work_dir,
    test_folds: Sequence[int] = (9,),
    train_folds: Sequence[int] = (1, 2, 3, 4, 5, 6, 7),
    val_folds: Sequence[int] = (8,),
    num_conditions: int = 1000,
    ddpm_conditions: int = 64,
    tstr_per_class: int = 300,
    seed: int = 0,
    scheduler: str = DEFAULT_SCHEDULER,
    num_inference_steps: int | None = None,
    ddpm_steps: int = 1000,
    classifier_epochs: int = 5,
    tstr_epochs: int = 10,
    classifier_batch_size: int = 128,
    batch_size: int = 64,
    show_progress: bool = True,
) -> dict:
    """Measure ``pipe`` on held-out PTB-XL folds (see the module docstring for what is measured).

    Args:
        pipe: a :class:`ecgaug.pipeline.DiffuSETSPipeline` whose ``info["training"]`` folds exclude ``test_folds``.
        ptbxl_root: PTB-XL 1.0.3 folder.
        work_dir: cache of the real-data classifiers (reruns reuse them).
        test_folds: folds of the conditions and of every real reference.
        train_folds, val_folds: folds the classifiers train and early-stop on, and TSTR's conditions come from.
        num_conditions: test conditions (records with a measurable heart rate) generated with the default sampler.
        ddpm_conditions: the first this many are also generated twice with DDPM (the noise floor).
        tstr_per_class: training-fold conditions per superclass for TSTR (and the real records of TRTR).
        seed: seeds the draws, the per-condition generators and the classifiers.
        scheduler, num_inference_steps: the sampler under test (default: the package's, with its default steps).
        ddpm_steps: steps of the DDPM reference.
        classifier_epochs, tstr_epochs, classifier_batch_size: classifier training.
        batch_size: ECGs per forward pass when generating and reconstructing.
    """
    test_folds, train_folds, val_folds = (check_folds(test_folds, "test_folds"), check_folds(train_folds, "train_folds"),
                                          check_folds(val_folds, "val_folds"))
    check_held_out(pipe.info, test_folds)
    leaked = sorted(set(test_folds) & (set(train_folds) | set(val_folds)))
    if leaked:
        raise ValueError(f"train_folds and val_folds of the classifiers should not include the test folds, but both contain {leaked}.")
    for name, value in (("num_conditions", num_conditions), ("ddpm_conditions", ddpm_conditions), ("tstr_per_class", tstr_per_class),
                        ("ddpm_steps", ddpm_steps), ("batch_size", batch_size)):
        check_positive_int(name, value)
    if ddpm_conditions > num_conditions:
        raise ValueError(f"ddpm_conditions should be at most num_conditions={num_conditions}, but got ddpm_conditions={ddpm_conditions}.")

    num_inference_steps = GenerationSettings(scheduler=scheduler, num_inference_steps=num_inference_steps).num_inference_steps
    started = time.perf_counter()
    timing: dict = {"device": _device_description(pipe.device)}
    settings = {"ptbxl_root": str(ptbxl_root), "test_folds": list(test_folds), "train_folds": list(train_folds), "val_folds": list(val_folds),
                "num_conditions": num_conditions, "ddpm_conditions": ddpm_conditions, "tstr_per_class": tstr_per_class, "seed": seed,
                "scheduler": scheduler, "num_inference_steps": num_inference_steps, "ddpm_steps": ddpm_steps, "classifier_epochs": classifier_epochs, "tstr_epochs": tstr_epochs,
                "batch_size": batch_size}
    device = str(pipe.device)

    tick = time.perf_counter()
    common = dict(train_folds=train_folds, val_folds=val_folds, work_dir=work_dir, epochs=classifier_epochs,
                  batch_size=classifier_batch_size, seed=seed, device=device, show_progress=show_progress)
    superclass_model, classes, superclass_info = train_or_load_classifier(ptbxl_root, task="superdiagnostic", classes=SUPERCLASSES, **common)
    rhythm_model, rhythm_classes, rhythm_info = train_or_load_classifier(ptbxl_root, task="rhythm", classes=RHYTHM_CLASSES, **common)
    timing["classifiers_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    conditions = load_test_conditions(ptbxl_root, test_folds, num_conditions, seed=seed, classes=classes, show_progress=show_progress)
    subset = conditions.subset(ddpm_conditions)
    timing["load_conditions_s"] = time.perf_counter() - tick

    # 1. VAE reconstruction and its ceiling
    tick = time.perf_counter()
    real = conditions.signals
    reconstructed = reconstruct(pipe.vae, real, batch_size=batch_size, show_progress=show_progress)
    reconstruction = metrics.reconstruction_metrics(real.numpy(), reconstructed.numpy(), seed=seed)
    real_scores = classify(superclass_model, real)
    real_recognition = metrics.class_recognition(real_scores, conditions.labels, classes, seed=seed)
    through_vae = metrics.class_recognition(classify(superclass_model, reconstructed), conditions.labels, classes, seed=seed)
    original_auc = real_recognition["macro_auc"]
    reconstruction["ceiling"] = {"original_macro_auc": original_auc, "reconstructed_macro_auc": through_vae["macro_auc"],
                                 "ratio": through_vae["macro_auc"] / original_auc if original_auc else None}
    timing["vae_reconstruction_s"] = time.perf_counter() - tick

    # 2. generation
    dpm = SamplerRun(f"{scheduler}_{num_inference_steps}", scheduler, num_inference_steps, seed_stream=0)
    ddpm = SamplerRun(f"ddpm_{ddpm_steps}", "ddpm", ddpm_steps, seed_stream=0)
    ddpm_reseeded = SamplerRun(f"ddpm_{ddpm_steps}_reseeded", "ddpm", ddpm_steps, seed_stream=1)
    generated, timing["samplers"] = {}, {}
    for run, run_conditions in ((dpm, conditions), (ddpm, subset), (ddpm_reseeded, subset)):
        ecgs, seconds = generate_for_conditions(pipe, run_conditions, run, seed=seed, batch_size=batch_size, show_progress=show_progress)
        generated[run.name] = ecgs
        timing["samplers"][run.name] = {"scheduler": run.scheduler, "num_inference_steps": run.num_inference_steps,
                                        "num_ecgs": len(ecgs), "seconds": seconds, "ecgs_per_second": len(ecgs) / seconds}

    # 3. rhythm, recognition and lead consistency of every run, beside the real ECGs of the same conditions
    tick = time.perf_counter()
    # every run scored once: classifier scores, heart rate and RR-interval CV per condition
    real_hr, real_cv = metrics.measure_rhythm(real.numpy(), SAMPLING_RATE)
    scored = {"real": {"superclass_scores": real_scores, "rhythm_scores": classify(rhythm_model, real), "heart_rate": real_hr, "rr_cv": real_cv}}
    run_conditions = {"real": conditions, dpm.name: conditions, ddpm.name: subset, ddpm_reseeded.name: subset}
    for name in (dpm.name, ddpm.name, ddpm_reseeded.name):
        scored[name] = per_condition_values(generated[name].numpy(), run_conditions[name], superclass_model, rhythm_model)
    heart_rate, rhythm, rhythm_recognition, consistency = {}, {}, {}, {}
    recognition = {"real": real_recognition}  # scored once, in the reconstruction ceiling
    for name, values in scored.items():
        these = run_conditions[name]
        if name != "real":
            heart_rate[name] = metrics.heart_rate_metrics(these.heart_rate, values["heart_rate"], seed=seed)
            recognition[name] = metrics.class_recognition(values["superclass_scores"], these.labels, classes, seed=seed)
        rhythm[name] = metrics.rhythm_regularity(values["rr_cv"], these.rhythm_labels, RHYTHM_CLASSES, groups=RHYTHM_GROUPS, seed=seed)
        rhythm_recognition[name] = metrics.class_recognition(values["rhythm_scores"], these.rhythm_labels, rhythm_classes, seed=seed)
        consistency[name] = metrics.lead_consistency((real if name == "real" else generated[name]).numpy())
    heart_rate["ddpm_run_to_run"] = metrics.run_to_run(scored[ddpm.name]["heart_rate"], scored[ddpm_reseeded.name]["heart_rate"])
    # the default sampler against DDPM on the DDPM subset: same conditions, same initial noise (seed stream 0)
    subset_values = {name: {key: value[:len(subset)] for key, value in scored[name].items()} for name in (dpm.name, ddpm.name, ddpm_reseeded.name)}
    sampler_comparison = compare_runs(subset_values, subset, reference=ddpm.name, noise_floor=ddpm_reseeded.name, seed=seed)
    recognition["real_ddpm_subset"] = metrics.class_recognition(real_scores[:len(subset)], subset.labels, classes, seed=seed)
    timing["measurements_s"] = time.perf_counter() - tick

    # 4. TSTR and TRTR on the same balanced training-fold conditions
    tick = time.perf_counter()
    balanced = load_balanced_conditions(ptbxl_root, train_folds, tstr_per_class, seed=seed, classes=classes, show_progress=show_progress)
    synthetic, _ = generate_for_conditions(pipe, balanced, SamplerRun("tstr", scheduler, num_inference_steps, seed_stream=2), seed=seed,
                                           batch_size=batch_size, show_progress=show_progress)
    tstr = {}
    for name, ecgs in (("tstr", synthetic), ("trtr", balanced.signals)):
        scores, labels, info = train_and_test(ecgs, balanced.labels, ptbxl_root, val_folds=val_folds, test_folds=test_folds, classes=classes,
                                              epochs=tstr_epochs, batch_size=min(classifier_batch_size, len(balanced)), seed=seed, device=device,
                                              show_progress=show_progress)
        tstr[name] = {**metrics.class_recognition(scores, labels, classes, seed=seed), "classifier": info}
    timing["tstr_s"] = time.perf_counter() - tick
    timing["total_s"] = time.perf_counter() - started

    results = {
        "model": _model_description(pipe),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "samplers": {"default": dpm.name, "ddpm": ddpm.name, "ddpm_reseeded": ddpm_reseeded.name},
        "classifiers": {"superclass": superclass_info, "rhythm": rhythm_info},
        "vae_reconstruction": reconstruction,
        "heart_rate": heart_rate,
        "rhythm_regularity": rhythm,
        "class_recognition": recognition,
        "rhythm_recognition": rhythm_recognition,
        "tstr": tstr,
        "lead_consistency": consistency,
        "sampler_comparison": sampler_comparison,
        "timing": timing,
    }
    results["summary"] = summarize(results)
    return results


def summarize(results: dict) -> dict:
    """The flat headline of ``results`` (all for the default sampler), as ``card.json``'s ``summary``."""
    default = results["samplers"]["default"]
    rec, rhythm, consistency = results["vae_reconstruction"], results["rhythm_regularity"], results["lead_consistency"]
    real_residual = consistency["real"]["residual_mv"]
    return {
        "vae_pearson_r_mean": rec["overall"]["pearson"],
        "vae_pearson_r_min_lead": rec["overall"]["pearson_min_lead"],
        "reconstruction_ceiling_ratio": rec["ceiling"]["ratio"],
        "class_recognition_macro_auc": results["class_recognition"][default]["macro_auc"],
        "real_class_recognition_macro_auc": results["class_recognition"]["real"]["macro_auc"],
        "rhythm_recognition_macro_auc": results["rhythm_recognition"][default]["macro_auc"],
        "real_rhythm_recognition_macro_auc": results["rhythm_recognition"]["real"]["macro_auc"],
        "tstr_macro_auc": results["tstr"]["tstr"]["macro_auc"],
        "trtr_macro_auc": results["tstr"]["trtr"]["macro_auc"],
        "hr_mae_bpm": results["heart_rate"][default]["mae_bpm"],
        "sinus_rr_cv_median": rhythm[default]["groups"]["sinus"]["median_cv"],
        "afib_rr_cv_median": rhythm[default]["groups"]["afib"]["median_cv"],
        "real_sinus_rr_cv_median": rhythm["real"]["groups"]["sinus"]["median_cv"],
        "real_afib_rr_cv_median": rhythm["real"]["groups"]["afib"]["median_cv"],
        "limb_lead_residual_ratio": consistency[default]["residual_mv"] / real_residual if real_residual else None,
        "num_conditions": results["settings"]["num_conditions"],
        "train_folds": results["settings"]["train_folds"],
        "test_folds": results["settings"]["test_folds"],
    }


def save_results(results: dict, path) -> Path:
    """Write ``results`` as JSON (strict: a NaN would be a bug, since missing values are ``None``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    return path
