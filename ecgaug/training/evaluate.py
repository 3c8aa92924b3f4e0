"""Measurements of a trained DiffuSETS model on held-out PTB-XL folds, for its model card.

:func:`evaluate_model` measures, on the test folds only (which the generator must not have been
trained on; :func:`check_held_out` refuses otherwise):

1. **VAE reconstruction.** Test records at 100 Hz are converted to the model's format (model
   lead order, 1024 samples), encoded (posterior mean), decoded and converted back; per-lead
   RMSE (mV) and Pearson correlation, averaged over records.
2. **Heart-rate control.** Each condition is a test record with a measurable heart rate: its
   templated report (the training templating), age, sex and measured heart rate. One ECG per
   condition is generated with a generator seeded per condition, its heart rate is measured with
   the same QRS detector (:mod:`ecgaug.data.heart_rate`), and the absolute error is reported.
   Samplers: DPM-Solver++ (25 steps, on all conditions), DDPM (1000 steps) and DDPM with other
   seeds (the run-to-run noise floor), both on the first ``ddpm_conditions`` conditions (the
   "DDPM subset", on which DPM-Solver++ is reported too, with the same seeds).
3. **Class recognition.** A ``resnet1d_small`` trained on real ``train_folds`` (early stopping
   on ``val_folds``, cached in ``work_dir``) scores the generated ECGs and the real ECGs of the
   same conditions: per diagnostic superclass, the fraction of conditions of that class whose
   ECG gets a probability above 0.5, and the macro AUC against the conditions' labels.
4. **Timings** of each part and sampler speed (ECGs per second) on the device used.

The result is a JSON-able dict; missing values (no measurable ECG, a class without conditions)
are ``None``, never invented.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from ecgaug.data.heart_rate import measure_heart_rates
from ecgaug.data.ptbxl import HEART_RATE_METHOD, PTBXL, compute_labels, load_scp_statements
from ecgaug.models.modeling_utils import config_to_dict
from ecgaug.signal import MODEL_NUM_SAMPLES, PTBXL_LEADS, convert_ecg

__all__ = [
    "CLASSIFIER_NAME",
    "RECOGNITION_THRESHOLD",
    "SamplerRun",
    "TestConditions",
    "check_held_out",
    "class_recognition",
    "evaluate_model",
    "generate_for_conditions",
    "heart_rate_metrics",
    "load_test_conditions",
    "save_results",
    "train_or_load_classifier",
    "vae_reconstruction",
]

CLASSIFIER_NAME = "resnet1d_small"
CLASSIFIER_TASK = "superdiagnostic"
RECOGNITION_THRESHOLD = 0.5
SAMPLING_RATE = 100  # PTB-XL's 100 Hz records: 1000 samples per 10 s


@dataclass(frozen=True)
class SamplerRun:
    """One generation run over a set of conditions.

    Attributes:
        name: key in the results, e.g. ``"dpmsolver++_25"``.
        scheduler: ``"dpmsolver++"`` or ``"ddpm"`` (see :func:`ecgaug.schedulers.make_scheduler`).
        num_inference_steps: sampler steps.
        seed_stream: selects the per-condition seeds; runs with the same stream start from the same noise.
    """

    name: str
    scheduler: str
    num_inference_steps: int
    seed_stream: int = 0


@dataclass
class TestConditions:
    """Test-fold records used as generation conditions (one row each).

    Attributes:
        ecg_ids: PTB-XL ``ecg_id`` of each record.
        reports: templated report of each record's ``scp_codes``.
        age: ``(N,)`` float64 years, NaN when unknown.
        sex: ``'M'``, ``'F'`` or ``None`` per record.
        heart_rate: ``(N,)`` float64 bpm measured on the record (finite).
        signals: ``(N, 12, 1000)`` float32 mV, the real ECGs, PTB-XL lead order at 100 Hz.
        labels: ``(N, len(classes))`` float32 multi-hot diagnostic superclasses (rows may be all zero).
        classes: superclass names, the columns of ``labels``.
    """

    ecg_ids: list[int]
    reports: list[str]
    age: np.ndarray
    sex: list
    heart_rate: np.ndarray
    signals: torch.Tensor
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.ecg_ids)

    def subset(self, count: int) -> "TestConditions":
        """The first ``count`` conditions."""
        return TestConditions(self.ecg_ids[:count], self.reports[:count], self.age[:count], self.sex[:count],
                              self.heart_rate[:count], self.signals[:count], self.labels[:count], self.classes)


# --------------------------------------------------------------------------------------- checks

def _check_folds(folds: Sequence[int], name: str) -> tuple[int, ...]:
    folds = tuple(int(fold) for fold in folds)
    if not folds or any(not 1 <= fold <= 10 for fold in folds):
        raise ValueError(f"{name} should be a non-empty sequence of PTB-XL strat_folds in 1..10, but got {folds}.")
    return tuple(sorted(set(folds)))


def check_held_out(info: dict, test_folds: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``info`` (``model_index.json``) shows the model never saw ``test_folds``.

    Checks ``info["training"]["folds"]`` (the UNet's folds) and, when recorded,
    ``info["training"]["vae"]["folds"]``.
    """
    test_folds = _check_folds(test_folds, "test_folds")
    training = info.get("training")
    if not isinstance(training, dict) or "folds" not in training:
        raise ValueError(
            f"The model's model_index.json has no training['folds'], so it cannot be checked that test folds {list(test_folds)} "
            "were held out. Evaluate a model trained with `ecgaug train unet`, which records its folds."
        )
    stages = {"UNet": training["folds"]}
    if isinstance(training.get("vae"), dict) and "folds" in training["vae"]:
        stages["VAE"] = training["vae"]["folds"]
    for stage, folds in stages.items():
        seen = sorted(set(test_folds) & {int(fold) for fold in folds})
        if seen:
            raise ValueError(
                f"test_folds should be folds the model was not trained on, but the {stage} was trained on folds {list(folds)}, "
                f"which include {seen}. Pass --test_folds outside them (e.g. 9 or 10)."
            )


def _check_positive(value: int, name: str) -> None:
    if not (isinstance(value, (int, np.integer)) and value > 0):
        raise ValueError(f"{name} should be a positive integer, but got {name}={value!r}.")


def _none_if_nan(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def _seeded_selection(count: int, available: int, seed: int) -> np.ndarray:
    """``count`` of ``range(available)`` in a seeded random order (so a prefix is a random subset too)."""
    return np.random.default_rng(seed).permutation(available)[:count]


# --------------------------------------------------------------------------------------- data

def load_test_conditions(
    ptbxl_root,
    test_folds: Sequence[int],
    num_conditions: int,
    *,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> TestConditions:
    """``num_conditions`` random test-fold records with a measurable heart rate, as conditions.

    Records are drawn in a seeded random order, so the first ``k`` conditions are a random subset too.
    Heart rates come from the PTB-XL heart-rate cache (built on first use).

    Args:
        ptbxl_root: PTB-XL folder.
        test_folds: ``strat_fold`` values of the test records.
        num_conditions: how many conditions; raises ``ValueError`` if the folds have fewer measurable records.
        seed: seed of the draw.
        classes: superclass columns of ``labels`` (default: every diagnostic superclass in ``scp_statements.csv``).
    """
    from ecgaug.text.reports import ReportTemplater

    _check_positive(num_conditions, "num_conditions")
    dataset = PTBXL(ptbxl_root, folds=_check_folds(test_folds, "test_folds"), sampling_rate=SAMPLING_RATE, task="all")
    heart_rates = dataset.heart_rates()
    measurable = np.flatnonzero(np.isfinite(heart_rates))
    if len(measurable) < num_conditions:
        raise ValueError(
            f"num_conditions should be at most the {len(measurable)} records of folds {list(dataset.folds)} with a measurable "
            f"heart rate, but got num_conditions={num_conditions}; lower it or add test folds."
        )
    rows = measurable[_seeded_selection(num_conditions, len(measurable), seed)]
    metadata = dataset.metadata.iloc[rows]
    templater = ReportTemplater.from_ptbxl(ptbxl_root)

    statements = load_scp_statements(ptbxl_root)
    superclasses = compute_labels(metadata["scp_codes"], statements, CLASSIFIER_TASK)
    if classes is None:
        classes = sorted(set(statements.loc[statements["diagnostic"] == 1.0, "diagnostic_class"].dropna()))
    classes = list(classes)
    labels = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for row, names in enumerate(superclasses):
        for name in names:
            if name in classes:
                labels[row, classes.index(name)] = 1.0

    signals = torch.stack([dataset[int(row)][0] for row in rows])
    return TestConditions(
        ecg_ids=[int(ecg_id) for ecg_id in metadata["ecg_id"]],
        reports=[templater.report(codes) for codes in metadata["scp_codes"]],
        age=metadata["age"].to_numpy(dtype=np.float64),
        sex=list(metadata["sex"]),
        heart_rate=heart_rates[rows].astype(np.float64),
        signals=signals,
        labels=labels,
        classes=classes,
    )


# --------------------------------------------------------------------------------------- 1. VAE

@torch.no_grad()
def vae_reconstruction(vae, signals: torch.Tensor, *, batch_size: int = 64, show_progress: bool = True) -> dict:
    """Round-trip error of the VAE on PTB-XL ECGs.

    Args:
        vae: :class:`ecgaug.models.ECGVAE`.
        signals: ``(N, 12, 1000)`` float32 mV, PTB-XL lead order at 100 Hz.

    Returns:
        ``num_records``, ``leads``, ``rmse_mv`` and ``pearson`` (lead -> mean over records), and
        ``overall`` (``rmse_mv``: mean over records of the RMSE over all leads; ``pearson``: mean over
        records and leads). A lead that is flat in a record has no correlation there and is left out
        of its mean (``num_flat_leads`` counts them).
    """
    if signals.ndim != 3 or tuple(signals.shape[1:]) != (12, SAMPLING_RATE * 10):
        raise ValueError(f"signals should have shape (N, 12, {SAMPLING_RATE * 10}) (PTB-XL at 100 Hz), but got {tuple(signals.shape)}.")
    device = next(vae.parameters()).device
    reconstructions = []
    for start in tqdm(range(0, len(signals), batch_size), desc="VAE round trip", disable=not show_progress):
        x = convert_ecg(signals[start:start + batch_size], source_leads="ptbxl", target_leads="model", num_samples=MODEL_NUM_SAMPLES)
        decoded = vae.decode(vae.encode(x.to(device)).mode()).float().cpu()
        reconstructions.append(convert_ecg(decoded, source_leads="model", target_leads="ptbxl", num_samples=signals.shape[-1]))
    real = signals.double().numpy()
    recon = torch.cat(reconstructions).double().numpy()
    error = recon - real
    rmse = np.sqrt((error ** 2).mean(axis=-1))  # (N, 12)
    overall_rmse = np.sqrt((error ** 2).mean(axis=(1, 2)))  # (N,)
    real_c = real - real.mean(axis=-1, keepdims=True)
    recon_c = recon - recon.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((real_c ** 2).sum(axis=-1) * (recon_c ** 2).sum(axis=-1))
    flat = denominator < 1e-12
    pearson = np.where(flat, np.nan, (real_c * recon_c).sum(axis=-1) / np.where(flat, 1.0, denominator))  # (N, 12)
    return {
        "num_records": len(signals),
        "leads": list(PTBXL_LEADS),
        "rmse_mv": {lead: float(rmse[:, i].mean()) for i, lead in enumerate(PTBXL_LEADS)},
        "pearson": {lead: _none_if_nan(np.nanmean(pearson[:, i])) if (~flat[:, i]).any() else None for i, lead in enumerate(PTBXL_LEADS)},
        "overall": {"rmse_mv": float(overall_rmse.mean()), "pearson": _none_if_nan(np.nanmean(pearson)) if (~flat).any() else None},
        "num_flat_leads": int(flat.sum()),
    }


# --------------------------------------------------------------------------------------- 2. generation and heart rate

def _generators(count: int, seed: int, stream: int) -> list[torch.Generator]:
    """One generator per condition; seeds depend only on (seed, stream, condition index)."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, i]).generate_state(1)[0])) for i in range(count)]


def generate_for_conditions(
    pipe, conditions: TestConditions, run: SamplerRun, *, seed: int, batch_size: int = 64, show_progress: bool = True
) -> tuple[torch.Tensor, float]:
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


def heart_rate_metrics(condition_hr: np.ndarray, generated_hr: np.ndarray) -> dict:
    """Errors of generated heart rates against the conditioning ones (bpm).

    Only ECGs whose heart rate is measurable count towards the errors; ``fraction_measurable``
    says how many that is. ``mean_error_bpm`` is the signed bias (generated minus condition).
    """
    condition_hr, generated_hr = np.asarray(condition_hr, dtype=np.float64), np.asarray(generated_hr, dtype=np.float64)
    if condition_hr.shape != generated_hr.shape or condition_hr.ndim != 1:
        raise ValueError(f"condition_hr and generated_hr should be 1-D of equal length, but got {condition_hr.shape} and {generated_hr.shape}.")
    measurable = np.isfinite(generated_hr) & np.isfinite(condition_hr)
    error = generated_hr[measurable] - condition_hr[measurable]
    correlated = measurable.sum() >= 3 and np.std(generated_hr[measurable]) > 0 and np.std(condition_hr[measurable]) > 0
    return {
        "num_conditions": len(condition_hr),
        "num_measurable": int(measurable.sum()),
        "fraction_measurable": float(measurable.mean()) if len(condition_hr) else None,
        "mae_bpm": float(np.abs(error).mean()) if error.size else None,
        "median_ae_bpm": float(np.median(np.abs(error))) if error.size else None,
        "mean_error_bpm": float(error.mean()) if error.size else None,
        "pearson_r": float(np.corrcoef(condition_hr[measurable], generated_hr[measurable])[0, 1]) if correlated else None,
    }


def _run_to_run(hr_a: np.ndarray, hr_b: np.ndarray) -> dict:
    both = np.isfinite(hr_a) & np.isfinite(hr_b)
    difference = np.abs(hr_a[both] - hr_b[both])
    return {
        "num_pairs": int(both.sum()),
        "mae_bpm": float(difference.mean()) if difference.size else None,
        "median_ae_bpm": float(np.median(difference)) if difference.size else None,
    }


# --------------------------------------------------------------------------------------- 3. classifier

def train_or_load_classifier(
    ptbxl_root,
    *,
    train_folds: Sequence[int],
    val_folds: Sequence[int],
    work_dir,
    epochs: int = 5,
    batch_size: int = 128,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
):
    """A ``resnet1d_small`` superdiagnostic classifier trained on real PTB-XL, cached in ``work_dir``.

    The cache folder ``work_dir/classifier-<hash>`` is named after everything that determines the
    weights (model, task, folds, epochs, batch size, seed, the SHA-256 of ``ptbxl_database.csv``), so
    changed settings train a new classifier instead of reusing a stale one.

    Returns:
        ``(model, classes, info)``: the model in eval mode on ``device``, its class names and a
        JSON-able dict (settings, ``best_val_macro_auc``, ``best_epoch``, ``train_seconds``, ``cached``).
    """
    from classifiers import create_model
    from classifiers.train import TrainConfig, fit, make_dataloader

    train_folds, val_folds = _check_folds(train_folds, "train_folds"), _check_folds(val_folds, "val_folds")
    if set(train_folds) & set(val_folds):
        raise ValueError(f"train_folds {list(train_folds)} and val_folds {list(val_folds)} should not overlap.")
    key = {
        "model": CLASSIFIER_NAME, "task": CLASSIFIER_TASK, "sampling_rate": SAMPLING_RATE, "train_folds": list(train_folds),
        "val_folds": list(val_folds), "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "ptbxl_database_sha256": _file_sha256(Path(ptbxl_root) / "ptbxl_database.csv"),
    }
    folder = Path(work_dir) / f"classifier-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]}"
    record_path = folder / "classifier.json"
    train_set = PTBXL(ptbxl_root, folds=train_folds, sampling_rate=SAMPLING_RATE, task=CLASSIFIER_TASK)
    classes = list(train_set.classes)

    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["key"] != key or record["classes"] != classes:
            raise ValueError(f"{record_path} does not match its folder's settings; delete {folder} to retrain.")
        model = create_model(CLASSIFIER_NAME, num_classes=len(classes))
        model.load_state_dict(torch.load(folder / "best.pt", map_location="cpu", weights_only=True)["state_dict"])
        return model.to(device).eval(), classes, {**record["info"], "cached": True}

    val_set = PTBXL(ptbxl_root, folds=val_folds, sampling_rate=SAMPLING_RATE, task=CLASSIFIER_TASK)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=show_progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(CLASSIFIER_NAME, num_classes=len(classes))
    start = time.perf_counter()
    result = fit(model, make_dataloader(train_set, config, shuffle=True, drop_last=True), make_dataloader(val_set, config), config,
                 out_dir=folder)
    info = {**key, "classes": classes, "num_train_records": len(train_set), "num_val_records": len(val_set),
            "best_val_macro_auc": result.best_val_auc, "best_epoch": result.best_epoch, "train_seconds": time.perf_counter() - start}
    record_path.write_text(json.dumps({"key": key, "classes": classes, "info": info}, indent=2) + "\n")  # last: marks the cache complete
    return model.to(device).eval(), classes, {**info, "cached": False}


@torch.no_grad()
def _classify(model, ecgs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    device = next(model.parameters()).device
    scores = [torch.sigmoid(model(ecgs[i:i + batch_size].to(device)).float()).cpu() for i in range(0, len(ecgs), batch_size)]
    return torch.cat(scores).numpy()


def class_recognition(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], threshold: float = RECOGNITION_THRESHOLD) -> dict:
    """How well classifier ``scores`` ``(N, C)`` recognise the conditions' ``labels`` ``(N, C)``.

    Returns:
        ``per_class``: class -> ``num_conditions`` (conditions with that class), ``fraction_recognized``
        (of those, the fraction scored above ``threshold``; ``None`` without conditions) and ``auc``
        (``None`` unless the class has positive and negative conditions); ``macro_auc`` over the
        classes with an AUC, listed in ``auc_classes``.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.shape != labels.shape or scores.shape[1:] != (len(classes),):
        raise ValueError(f"scores and labels should both have shape (N, {len(classes)}), but got {scores.shape} and {labels.shape}.")
    per_class, aucs = {}, {}
    for k, name in enumerate(classes):
        positive = labels[:, k] == 1
        auc = float(roc_auc_score(labels[:, k], scores[:, k])) if 0 < positive.sum() < len(labels) else None
        if auc is not None:
            aucs[name] = auc
        per_class[name] = {
            "num_conditions": int(positive.sum()),
            "fraction_recognized": float((scores[positive, k] > threshold).mean()) if positive.any() else None,
            "auc": auc,
        }
    return {"per_class": per_class, "macro_auc": float(np.mean(list(aucs.values()))) if aucs else None, "auc_classes": list(aucs)}


# --------------------------------------------------------------------------------------- 4. all together

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
    test_folds: Sequence[int] = (9,),
    train_folds: Sequence[int] = (1, 2, 3, 4, 5, 6, 7),
    val_folds: Sequence[int] = (8,),
    num_records: int = 500,
    num_conditions: int = 200,
    ddpm_conditions: int = 32,
    seed: int = 0,
    work_dir,
    dpm_steps: int = 25,
    ddpm_steps: int = 1000,
    classifier_epochs: int = 5,
    classifier_batch_size: int = 128,
    batch_size: int = 64,
    show_progress: bool = True,
) -> dict:
    """Measure ``pipe`` on held-out PTB-XL folds (see the module docstring for what is measured).

    Args:
        pipe: a :class:`ecgaug.pipeline.DiffuSETSPipeline` whose ``info["training"]["folds"]`` excludes ``test_folds``.
        ptbxl_root: PTB-XL 1.0.3 folder.
        test_folds: folds of the test records (reconstruction, conditions, real references).
        train_folds, val_folds: folds the recognition classifier trains and early-stops on; disjoint from ``test_folds``.
        num_records: VAE reconstruction on up to this many random test records.
        num_conditions: conditions (test records with measurable heart rate) generated with DPM-Solver++.
        ddpm_conditions: the first this many conditions are also generated with DDPM, twice (1 ≤ ddpm_conditions ≤ num_conditions).
        seed: seeds the record draws, the per-condition generators and the classifier.
        work_dir: cache of the classifier (reruns reuse it).
        dpm_steps, ddpm_steps: sampler steps (25 and 1000 by default; tests use fewer DDPM steps).
        classifier_epochs, classifier_batch_size: classifier training (few epochs: it is a measuring stick).
        batch_size: ECGs per forward pass when generating and reconstructing.
        show_progress: tqdm progress bars.

    Returns:
        JSON-able dict with ``model``, ``settings``, ``vae_reconstruction``, ``heart_rate``,
        ``classification`` and ``timing``.
    """
    test_folds, train_folds, val_folds = (_check_folds(test_folds, "test_folds"), _check_folds(train_folds, "train_folds"),
                                          _check_folds(val_folds, "val_folds"))
    check_held_out(pipe.info, test_folds)
    leaked = sorted(set(test_folds) & (set(train_folds) | set(val_folds)))
    if leaked:
        raise ValueError(f"train_folds and val_folds of the classifier should not include the test folds, but both contain {leaked}.")
    for name, value in (("num_records", num_records), ("num_conditions", num_conditions), ("ddpm_conditions", ddpm_conditions),
                        ("dpm_steps", dpm_steps), ("ddpm_steps", ddpm_steps), ("batch_size", batch_size)):
        _check_positive(value, name)
    if ddpm_conditions > num_conditions:
        raise ValueError(f"ddpm_conditions should be at most num_conditions={num_conditions}, but got ddpm_conditions={ddpm_conditions}.")

    started = time.perf_counter()
    timing: dict = {"device": _device_description(pipe.device)}
    settings = {"ptbxl_root": str(ptbxl_root), "test_folds": list(test_folds), "train_folds": list(train_folds), "val_folds": list(val_folds),
                "num_records": num_records, "num_conditions": num_conditions, "ddpm_conditions": ddpm_conditions, "seed": seed,
                "dpm_steps": dpm_steps, "ddpm_steps": ddpm_steps, "classifier_epochs": classifier_epochs, "batch_size": batch_size}

    # 1. VAE reconstruction on random test records
    tick = time.perf_counter()
    test_set = PTBXL(ptbxl_root, folds=test_folds, sampling_rate=SAMPLING_RATE, task="all")
    rows = np.sort(_seeded_selection(min(num_records, len(test_set)), len(test_set), seed))
    signals = torch.stack([test_set[int(row)][0] for row in rows])
    reconstruction = vae_reconstruction(pipe.vae, signals, batch_size=batch_size, show_progress=show_progress)
    timing["vae_reconstruction_s"] = time.perf_counter() - tick

    # 3a. the classifier (trained or loaded first: its classes are the label columns)
    tick = time.perf_counter()
    classifier, classes, classifier_info = train_or_load_classifier(
        ptbxl_root, train_folds=train_folds, val_folds=val_folds, work_dir=work_dir, epochs=classifier_epochs,
        batch_size=classifier_batch_size, seed=seed, device=str(pipe.device), show_progress=show_progress)
    timing["classifier_s"] = time.perf_counter() - tick

    # 2. generation on the conditions
    tick = time.perf_counter()
    conditions = load_test_conditions(ptbxl_root, test_folds, num_conditions, seed=seed, classes=classes)
    subset = conditions.subset(ddpm_conditions)
    timing["load_conditions_s"] = time.perf_counter() - tick
    dpm = SamplerRun(f"dpmsolver++_{dpm_steps}", "dpmsolver++", dpm_steps, seed_stream=0)
    ddpm = SamplerRun(f"ddpm_{ddpm_steps}", "ddpm", ddpm_steps, seed_stream=0)
    ddpm_reseeded = SamplerRun(f"ddpm_{ddpm_steps}_reseeded", "ddpm", ddpm_steps, seed_stream=1)
    plan = ((dpm, conditions), (ddpm, subset), (ddpm_reseeded, subset))

    generated, generated_hr, timing["samplers"] = {}, {}, {}
    for run, run_conditions in plan:
        ecgs, seconds = generate_for_conditions(pipe, run_conditions, run, seed=seed, batch_size=batch_size, show_progress=show_progress)
        generated[run.name] = ecgs
        generated_hr[run.name] = measure_heart_rates(ecgs.numpy(), SAMPLING_RATE, progress=False)
        timing["samplers"][run.name] = {"scheduler": run.scheduler, "num_inference_steps": run.num_inference_steps,
                                        "num_ecgs": len(ecgs), "seconds": seconds, "ecgs_per_second": len(ecgs) / seconds}

    heart_rate = {
        "detector": HEART_RATE_METHOD,
        "all": {"num_conditions": len(conditions), dpm.name: heart_rate_metrics(conditions.heart_rate, generated_hr[dpm.name])},
        "ddpm_subset": {
            "num_conditions": len(subset),
            dpm.name: heart_rate_metrics(subset.heart_rate, generated_hr[dpm.name][:len(subset)]),
            ddpm.name: heart_rate_metrics(subset.heart_rate, generated_hr[ddpm.name]),
            ddpm_reseeded.name: heart_rate_metrics(subset.heart_rate, generated_hr[ddpm_reseeded.name]),
            "ddpm_run_to_run": _run_to_run(generated_hr[ddpm.name], generated_hr[ddpm_reseeded.name]),
        },
    }

    # 3b. class recognition of generated and real ECGs of the same conditions
    real_scores = _classify(classifier, conditions.signals)
    scores = {name: _classify(classifier, ecgs) for name, ecgs in generated.items()}
    classification = {
        "classifier": classifier_info,
        "threshold": RECOGNITION_THRESHOLD,
        "all": {"num_conditions": len(conditions), "real": class_recognition(real_scores, conditions.labels, classes),
                dpm.name: class_recognition(scores[dpm.name], conditions.labels, classes)},
        "ddpm_subset": {"num_conditions": len(subset), "real": class_recognition(real_scores[:len(subset)], subset.labels, classes),
                        dpm.name: class_recognition(scores[dpm.name][:len(subset)], subset.labels, classes),
                        ddpm.name: class_recognition(scores[ddpm.name], subset.labels, classes),
                        ddpm_reseeded.name: class_recognition(scores[ddpm_reseeded.name], subset.labels, classes)},
    }
    timing["total_s"] = time.perf_counter() - started
    return {
        "model": _model_description(pipe),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "samplers": {"default": dpm.name, "ddpm": ddpm.name, "ddpm_reseeded": ddpm_reseeded.name},
        "vae_reconstruction": reconstruction,
        "heart_rate": heart_rate,
        "classification": classification,
        "timing": timing,
    }


def save_results(results: dict, path) -> Path:
    """Write ``results`` as JSON (strict: a NaN would be a bug, since missing values are ``None``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    return path

