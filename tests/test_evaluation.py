"""Fidelity evaluation and model card on a fake PTB-XL with a tiny model: the CLI end to end, the
held-out check, the metrics and the classifier cache."""
import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ecgaug.cli import main
from ecgaug.data.ptbxl import load_database
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.signal import PTBXL_LEADS
from ecgaug.text.prompt import build_prompt
from ecgaug.text.reports import ReportTemplater
from ecgaug.evaluation.classifiers import train_or_load_classifier
from ecgaug.evaluation.conditions import check_held_out, load_balanced_conditions, load_test_conditions
from ecgaug.evaluation.evaluate import evaluate_model, reconstruct
from ecgaug.evaluation.metrics import (bootstrap_ci, class_recognition, heart_rate_metrics, lead_consistency, reconstruction_metrics,
                                       rhythm_regularity)
from ecgaug.signal import derive_limb_leads

from conftest import HashTextEncoder, make_tiny_pipeline
from ptbxl_fixture import make_ptbxl

TRAINING = {
    "data": "PTB-XL 1.0.3 (fake fixture)",
    "folds": [1, 2, 3, 4, 5, 6, 7],
    "records": 84,
    "vae": {"steps": 4, "max_steps": 4, "wall_seconds": 12.5, "world_size": 1, "folds": [1, 2, 3, 4, 5, 6, 7], "batch_size": 8, "learning_rate": 1e-3},
    "unet": {"steps": 3, "max_steps": 3, "wall_seconds": 3725.0, "world_size": 2, "batch_size": 8, "learning_rate": 1e-3, "condition_dropout": 0.1},
}
# 120 fixture records: folds 9+10 hold every figure code, fold 8 every superclass (for early stopping).
CLI_ARGS = ["--test_folds", "9,10", "--train_folds", "1-7", "--val_folds", "8", "--num_conditions", "6", "--ddpm_conditions", "3",
            "--tstr_per_class", "4", "--tstr_epochs", "1", "--scheduler", "dpmsolver++", "--num_inference_steps", "3", "--ddpm_steps", "4", "--classifier_epochs", "1",
            "--classifier_batch_size", "16", "--batch_size", "4", "--seed", "0", "--device", "cpu", "--no_progress"]


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl"), num_records=120)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, ptbxl_root):
    """A tiny model folder whose text encoder is a table of the fixture's report embeddings."""
    root = tmp_path_factory.mktemp("model")
    templater = ReportTemplater.from_ptbxl(ptbxl_root)
    prompts = sorted({build_prompt(templater.report(codes)) for codes in load_database(ptbxl_root)["scp_codes"]})
    vectors = HashTextEncoder().encode(prompts).numpy()
    pd.DataFrame({"text": prompts, "embed": [str(v.tolist()) for v in vectors]}).to_csv(root / "embeddings.csv", index=False)
    make_tiny_pipeline().save_pretrained(root / "model", text_encoder_spec={"type": "table", "path": str(root / "embeddings.csv")},
                                         extra={"training": TRAINING})
    return root / "model"


@pytest.fixture(scope="module")
def cli_run(model_dir, ptbxl_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("work")
    figure = model_dir / "generated_vs_real.png"
    notes = work_dir / "notes.md"
    notes.write_text("Trained for a test; **not** a real model.\n")
    code = main(["evaluate", str(model_dir), "--ptbxl", str(ptbxl_root), *CLI_ARGS, "--work_dir", str(work_dir), "--write_card",
                 "--figure", str(figure), "--card_notes", str(notes)])
    assert code == 0
    return work_dir, json.loads((work_dir / "results.json").read_text())


def _in_unit_interval(value):
    return value is None or 0.0 <= value <= 1.0


def test_cli_results_have_every_measure_with_valid_ranges(cli_run):
    _, results = cli_run
    assert {"model", "settings", "vae_reconstruction", "heart_rate", "rhythm_regularity", "class_recognition", "rhythm_recognition",
            "tstr", "lead_consistency", "timing", "summary"} <= set(results)
    assert results["model"]["unet_parameters"] > 0 and results["settings"]["test_folds"] == [9, 10]

    reconstruction = results["vae_reconstruction"]
    assert reconstruction["num_records"] == 6 and reconstruction["leads"] == list(PTBXL_LEADS)
    assert all(value > 0 for value in reconstruction["rmse_mv"].values())
    assert all(-1.0 <= value <= 1.0 for value in reconstruction["pearson"].values())
    ceiling = reconstruction["ceiling"]
    assert ceiling["ratio"] == pytest.approx(ceiling["reconstructed_macro_auc"] / ceiling["original_macro_auc"])

    samplers = results["samplers"]
    assert samplers == {"default": "dpmsolver++_3", "ddpm": "ddpm_4", "ddpm_reseeded": "ddpm_4_reseeded"}
    hr = results["heart_rate"]
    assert hr["dpmsolver++_3"]["num_conditions"] == 6 and hr["ddpm_4"]["num_conditions"] == 3
    for name in samplers.values():
        assert _in_unit_interval(hr[name]["fraction_measurable"])
        assert hr[name]["mae_bpm"] is None or (hr[name]["mae_bpm"] >= 0 and hr[name]["median_ae_bpm"] >= 0)
    assert hr["ddpm_run_to_run"]["num_pairs"] <= 3

    for key, classes in (("class_recognition", ["CD", "HYP", "MI", "NORM", "STTC"]), ("rhythm_recognition", ["AFIB", "SBRAD", "SR", "STACH"])):
        for name in ["real", *samplers.values()]:
            recognition = results[key][name]
            assert list(recognition["per_class"]) == classes
            assert all(_in_unit_interval(c["fraction_recognized"]) and _in_unit_interval(c["auc"]) for c in recognition["per_class"].values())
            assert _in_unit_interval(recognition["macro_auc"])
    assert results["classifiers"]["superclass"]["cached"] is False and results["classifiers"]["rhythm"]["task"] == "rhythm"
    assert results["tstr"]["tstr"]["classifier"]["num_train"] == 5 * 4 == results["tstr"]["trtr"]["classifier"]["num_train"]

    # the tiny model derives no limb leads, so it breaks the relations far more than the fixture's noisy real ECGs
    consistency = results["lead_consistency"]
    assert 0 < 2 * consistency["real"]["residual_mv"] < consistency["dpmsolver++_3"]["residual_mv"]

    summary = results["summary"]
    assert summary["num_conditions"] == 6 and summary["test_folds"] == [9, 10] and summary["train_folds"] == list(range(1, 8))
    assert summary["vae_pearson_r_mean"] == reconstruction["overall"]["pearson"]
    assert summary["tstr_macro_auc"] == results["tstr"]["tstr"]["macro_auc"]
    assert summary["limb_lead_residual_ratio"] == pytest.approx(consistency["dpmsolver++_3"]["residual_mv"] / consistency["real"]["residual_mv"])
    assert {"hr_mae_bpm", "sinus_rr_cv_median", "afib_rr_cv_median", "real_sinus_rr_cv_median", "real_afib_rr_cv_median",
            "class_recognition_macro_auc", "real_class_recognition_macro_auc", "trtr_macro_auc", "reconstruction_ceiling_ratio",
            "vae_pearson_r_min_lead"} <= set(summary)

    # the default sampler against DDPM on DDPM's 3 conditions; every metric present, DDPM against itself exactly 0
    comparison = results["sampler_comparison"]
    assert comparison["reference"] == "ddpm_4" and comparison["num_conditions"] == 3
    assert set(comparison["runs"]) == {"dpmsolver++_3", "ddpm_4", "ddpm_4_reseeded"}
    assert all(entry["difference"] in (0.0, None) for entry in comparison["runs"]["ddpm_4"]["metrics"].values())

    timing = results["timing"]
    assert timing["samplers"]["dpmsolver++_3"]["num_ecgs"] == 6 and timing["samplers"]["ddpm_4"]["num_ecgs"] == 3
    assert all(entry["ecgs_per_second"] > 0 for entry in timing["samplers"].values())


def test_cli_writes_model_card_and_figure(cli_run, model_dir):
    _, results = cli_run
    card = json.loads((model_dir / "card.json").read_text())
    assert card["training"] == TRAINING and card["summary"] == results["summary"]
    readme = (model_dir / "README.md").read_text()
    for text in ("PTB-XL 1.0.3", "Wagner", "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/", "strat_folds 1, 2, 3, 4, 5, 6, 7",
                 "### Summary", "### Rhythm regularity", "### Default sampler against DDPM-1000", "## Notes from the model's authors", "**not** a real model", "### Train on synthetic, test on real", "### Lead consistency",
                 "## Limitations", "## Intended use", "![Generated (left) and real (right) ECGs](generated_vs_real.png)",
                 f"{results['model']['unet_parameters']:,}", f"{results['vae_reconstruction']['overall']['rmse_mv']:.3f}",
                 "1.0 h", "8 × 2 processes"):
        assert text in readme, text
    image = matplotlib.image.imread(model_dir / "generated_vs_real.png")
    assert image.ndim == 3 and image.shape[0] > image.shape[1] > 500  # six rows of two 12-lead plots


def test_classifier_is_cached_and_keyed_on_its_settings(cli_run, ptbxl_root):
    work_dir, results = cli_run
    _, classes, info = train_or_load_classifier(ptbxl_root, train_folds=range(1, 8), val_folds=(8,), work_dir=work_dir, epochs=1,
                                                batch_size=16, seed=0, show_progress=False)
    assert info["cached"] is True and classes == results["classifiers"]["superclass"]["classes"]
    assert info["best_val_macro_auc"] == results["classifiers"]["superclass"]["best_val_macro_auc"]
    assert len(list(work_dir.glob("classifier-*"))) == 2  # superclasses and rhythm
    with pytest.raises(ValueError, match="should not overlap"):
        train_or_load_classifier(ptbxl_root, train_folds=(1, 2), val_folds=(2,), work_dir=work_dir)


def test_conditions_are_measurable_test_records_and_too_many_is_an_error(ptbxl_root):
    conditions = load_test_conditions(ptbxl_root, (9, 10), 5, seed=0)
    database = load_database(ptbxl_root)
    assert set(database.loc[conditions.ecg_ids, "strat_fold"]) <= {9, 10} and np.isfinite(conditions.heart_rate).all()
    assert conditions.signals.shape == (5, 12, 1000) and conditions.labels.shape == (5, len(conditions.classes))
    assert conditions.subset(2).ecg_ids == conditions.ecg_ids[:2] and conditions.rhythm_labels.shape == (5, 4)
    with pytest.raises(ValueError, match="num_conditions should be at most"):
        load_test_conditions(ptbxl_root, (9,), 10_000)


def test_balanced_conditions_hold_every_superclass_equally(ptbxl_root):
    conditions = load_balanced_conditions(ptbxl_root, range(1, 8), 3, seed=0)
    assert len(conditions) == 15 and conditions.classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    for k in range(5):
        assert conditions.labels[3 * k:3 * k + 3, k].all()  # rows are grouped by the class they were drawn for


def test_refuses_a_test_fold_the_model_was_trained_on(model_dir, ptbxl_root, tmp_path):
    pipe = DiffuSETSPipeline.from_pretrained(model_dir, text_encoder=HashTextEncoder())
    with pytest.raises(ValueError, match=r"UNet was trained on folds \[1, 2, 3, 4, 5, 6, 7\], which include \[7\]"):
        evaluate_model(pipe, ptbxl_root, test_folds=(7,), work_dir=tmp_path)
    with pytest.raises(ValueError, match=r"VAE was trained on folds \[9\]"):
        check_held_out({"training": {"folds": [1], "vae": {"folds": [9]}}}, test_folds=(9,))
    with pytest.raises(ValueError, match="no training"):
        check_held_out({"name": "published"}, test_folds=(9,))
    with pytest.raises(ValueError, match="should not include the test folds"):
        evaluate_model(pipe, ptbxl_root, test_folds=(9,), train_folds=(1, 9), work_dir=tmp_path)
    with pytest.raises(ValueError, match="which include"):
        main(["evaluate", str(model_dir), "--ptbxl", str(ptbxl_root), "--test_folds", "7", "--work_dir", str(tmp_path / "cli")])
    assert not list(tmp_path.iterdir())  # refused before any work


class _IdentityVAE(nn.Module):
    """encode(x).mode() is x and decode is the identity: isolates the format round trip."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return type("Posterior", (), {"mode": lambda _: x})()

    def decode(self, latents):
        return latents


def test_reconstruction_of_a_perfect_autoencoder_is_exact():
    t = torch.linspace(0, 10, 1000)
    signals = torch.stack([torch.stack([torch.sin(2 * torch.pi * (lead + 1) * 0.3 * t + record) for lead in range(12)]) for record in range(3)])
    result = reconstruction_metrics(signals.numpy(), reconstruct(_IdentityVAE(), signals, batch_size=2, show_progress=False).numpy())
    assert result["num_records"] == 3 and result["overall"]["rmse_mv"] < 1e-4
    assert all(value > 0.9999 for value in result["pearson"].values()) and result["overall"]["pearson_min_lead"] > 0.9999
    with pytest.raises(ValueError, match=r"should have shape \(N, 12, 1000\)"):
        reconstruct(_IdentityVAE(), signals[..., :500])


def test_reconstruction_metrics_name_the_worst_lead():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 12, 200))
    noisy = real.copy()
    noisy[:, 2] += rng.normal(scale=1.0, size=(20, 200))  # lead III: r about 0.7
    result = reconstruction_metrics(real, noisy)
    assert result["pearson"]["III"] == result["overall"]["pearson_min_lead"] < 0.8 < result["pearson"]["II"] == pytest.approx(1.0)
    low, high = result["overall"]["pearson_ci"]
    assert low <= result["overall"]["pearson"] <= high


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=30), rng.normal(size=3000)
    ci_small = bootstrap_ci(lambda rows: small[rows].mean(), len(small))
    ci_large = bootstrap_ci(lambda rows: large[rows].mean(), len(large))
    assert ci_small[0] < small.mean() < ci_small[1] and ci_large[0] < large.mean() < ci_large[1]
    assert ci_large[1] - ci_large[0] < (ci_small[1] - ci_small[0]) / 5
    assert bootstrap_ci(lambda rows: 0.0, 0) == [None, None]


def test_rhythm_regularity_medians_per_class_and_group():
    cv = np.array([0.02, 0.03, np.nan, 0.25, 0.15])
    labels = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    result = rhythm_regularity(cv, labels, ["AFIB", "SBRAD", "SR", "STACH"], groups={"sinus": ("SR", "SBRAD", "STACH"), "afib": ("AFIB",)})
    assert result["groups"]["sinus"] == {**result["groups"]["sinus"], "num_conditions": 3, "num_measurable": 2, "median_cv": pytest.approx(0.025)}
    assert result["groups"]["afib"]["median_cv"] == pytest.approx(0.2) and result["per_class"]["STACH"]["median_cv"] is None


def test_lead_consistency_is_zero_for_derived_limb_leads_only():
    rng = np.random.default_rng(2)
    independent = rng.normal(size=(4, 8, 100))
    derived = derive_limb_leads(independent, source_leads=("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"), target_leads="ptbxl")
    assert lead_consistency(derived)["residual_mv"] < 1e-12
    broken = derived.copy()
    broken[:, 2] += 0.1  # lead III off by 0.1 mV
    assert lead_consistency(broken)["residual_mv"] == pytest.approx(0.1 / 2)  # RMS over the four derived leads


def test_heart_rate_metrics_count_only_measurable_ecgs():
    metrics = heart_rate_metrics(np.array([60.0, 80.0, 100.0, 70.0]), np.array([62.0, np.nan, 90.0, 70.0]))
    assert metrics["num_measurable"] == 3 and metrics["fraction_measurable"] == 0.75
    assert metrics["mae_bpm"] == pytest.approx(4.0) and metrics["median_ae_bpm"] == pytest.approx(2.0)
    assert metrics["mean_error_bpm"] == pytest.approx(-8.0 / 3)
    nothing = heart_rate_metrics(np.array([60.0]), np.array([np.nan]))
    assert nothing["fraction_measurable"] == 0.0 and nothing["mae_bpm"] is None and nothing["pearson_r"] is None


def test_class_recognition_fractions_and_auc():
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.1, 0.2], [0.4, 0.8]])
    result = class_recognition(scores, labels, ["A", "B"])
    assert result["per_class"]["A"] == {"num_conditions": 2, "fraction_recognized": 0.5, "auc": 0.75}
    assert result["per_class"]["B"]["fraction_recognized"] == 1.0 and result["per_class"]["B"]["auc"] == 1.0
    assert result["macro_auc"] == pytest.approx(0.875) and result["auc_classes"] == ["A", "B"]
    absent = class_recognition(scores, np.zeros_like(labels), ["A", "B"])
    assert absent["per_class"]["A"]["fraction_recognized"] is None and absent["macro_auc"] is None
