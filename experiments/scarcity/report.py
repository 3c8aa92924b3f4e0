"""Evaluation of saved test predictions: bootstrap CIs, paired differences, the markdown table and plots.

How seeds are pooled: every number is the **mean over seeds of a single classifier's metric**
(what a user gets from training once), not the metric of an ensemble of the seeds. Its 95 % CI
is a percentile bootstrap over test records: the test folds are resampled
(:func:`classifiers.metrics.bootstrap_indices`, one set of resamples shared by every cell, so all
comparisons are paired), each seed's metric is computed on each resample, and the mean over
seeds is taken per resample. The interval therefore reflects the finite test set; the spread
over seeds (subset, initialisation, synthetic draw) is reported separately as ``per_seed``.

The difference of an arm to ``real`` is paired twice: by seed (both trained on the same real
subset) and by resample (both scored on the same test records). An interval above 0 means the arm
beat real-only training on this test set at the chosen level. ``vs`` gives the same paired
differences against every *non-generative* arm of the regime (``real``, ``weighted``, ``classic``,
``balanced``: the cheap alternatives a synthetic arm has to beat).

The *reference* (the ``real`` arm on every training record: an existing ``fraction_1`` regime, or
the extra ``all_real`` regime) is reported in ``results["reference"]`` and as the first row of
every regime's table.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm.auto import tqdm

from .config import REFERENCE_REGIME, Arm, ExperimentConfig

__all__ = ["REFERENCE_REGIME", "bootstrap_scores", "summarize", "write_table", "write_json", "plot_auc_vs_fraction", "plot_per_class_gain", "plot_sweep"]

METRICS = ("macro_auc", "rare_auc", "rare_auprc")

SEED_POOLING = (
    "mean over seeds of each single classifier's metric; 95% CI: percentile bootstrap over test records of that mean "
    "(shared resamples, so differences are paired by record and by seed)"
)


def bootstrap_scores(y_true: np.ndarray, y_score: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AUC and AUPRC on each bootstrap resample.

    Args:
        y_true: ``(N, C)`` multi-hot test targets.
        y_score: ``(N, C)`` scores.
        indices: ``(B, N)`` resamples (every class with a positive and a negative in each).

    Returns:
        ``(auc, auprc)``, each ``(B, C)`` float64.
    """
    auc = np.empty((len(indices), y_true.shape[1]))
    auprc = np.empty_like(auc)
    for b, ids in enumerate(indices):
        auc[b] = roc_auc_score(y_true[ids], y_score[ids], average=None)
        auprc[b] = average_precision_score(y_true[ids], y_score[ids], average=None)
    return auc, auprc


def _interval(point: float, values: np.ndarray, alpha: float, per_seed: Sequence[float] | None = None) -> dict:
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    result = {"point": float(point), "low": float(low), "high": float(high)}
    if per_seed is not None:
        result["per_seed"] = [float(v) for v in per_seed]
    return result


def summarize(config: ExperimentConfig, *, y_true: np.ndarray, predictions: dict, cells: dict, classes: list[str],
              rare_classes: list[str], indices: np.ndarray, generator: dict | None, show_progress: bool = True) -> dict:  # fmt: skip
    """Metrics with CIs for every (regime, arm) that has predictions.

    Args:
        y_true: ``(N, C)`` test targets.
        predictions: ``{(regime, arm, seed): (N, C) scores}`` of the finished cells.
        cells: ``{(regime, arm, seed): cell.json dict}`` of the same cells.
        classes, rare_classes: Class names; the rare ones are averaged into ``rare_auc``/``rare_auprc``.
        indices: ``(B, N)`` bootstrap resamples.
        generator: The generator's card summary (``None`` without synthetic arms).

    Returns:
        The JSON-able results (see ``experiments/README.md``).
    """
    alpha = config.alpha
    rare = [classes.index(name) for name in rare_classes]
    scored = {}  # (regime, arm) -> {seed: (point_auc (C,), point_auprc (C,), boot_auc (B, C), boot_auprc (B, C))}
    bar = tqdm(sorted(predictions, key=str), desc="bootstrap", unit="cell", disable=not show_progress)
    for key in bar:
        regime, arm, seed = key
        score = predictions[key]
        point = (roc_auc_score(y_true, score, average=None), average_precision_score(y_true, score, average=None))
        scored.setdefault((regime, arm), {})[seed] = (*point, *bootstrap_scores(y_true, score, indices))

    def stack(seed_scores: dict, seeds: list[int]) -> list[np.ndarray]:
        return [np.stack([seed_scores[s][part] for s in seeds]) for part in range(4)]

    def reduce(values: np.ndarray, columns) -> np.ndarray:
        return values[..., columns].mean(axis=-1)

    all_columns = list(range(len(classes)))

    def paired(seed_scores: dict, other_scores: dict) -> dict | None:
        """Differences (arm - other) paired by seed and by resample; None without common seeds."""
        common = [s for s in sorted(seed_scores) if s in other_scores]
        if not common:
            return None
        a, b = stack(seed_scores, common), stack(other_scores, common)
        diff_point_auc, diff_point_auprc = a[0] - b[0], a[1] - b[1]
        diff_boot_auc, diff_boot_auprc = a[2] - b[2], a[3] - b[3]
        difference: dict = {"seeds": common}
        for name, point, boot, columns in (("macro_auc", diff_point_auc, diff_boot_auc, all_columns),
                                           ("rare_auc", diff_point_auc, diff_boot_auc, rare),
                                           ("rare_auprc", diff_point_auprc, diff_boot_auprc, rare)):  # fmt: skip
            per_seed = reduce(point, columns)
            difference[name] = _interval(per_seed.mean(), reduce(boot, columns).mean(axis=0), alpha, per_seed)
        difference["per_class_auc"] = {
            name: _interval(diff_point_auc[:, c].mean(), diff_boot_auc[:, :, c].mean(axis=0), alpha) for c, name in enumerate(classes)
        }
        return difference

    results: dict = {}
    for regime in config.all_regimes:
        regime_results = {}
        for arm in config.arms:
            seed_scores = scored.get((regime.name, arm.name))
            if not seed_scores:
                continue
            seeds = sorted(seed_scores)
            point_auc, point_auprc, boot_auc, boot_auprc = stack(seed_scores, seeds)
            metric = {}
            for name, point, boot, columns in (("macro_auc", point_auc, boot_auc, all_columns), ("rare_auc", point_auc, boot_auc, rare),
                                               ("rare_auprc", point_auprc, boot_auprc, rare)):  # fmt: skip
                per_seed = reduce(point, columns)
                metric[name] = _interval(per_seed.mean(), reduce(boot, columns).mean(axis=0), alpha, per_seed)
            per_class = {
                name: {
                    "auc": _interval(point_auc[:, c].mean(), boot_auc[:, :, c].mean(axis=0), alpha, point_auc[:, c]),
                    "auprc": _interval(point_auprc[:, c].mean(), boot_auprc[:, :, c].mean(axis=0), alpha, point_auprc[:, c]),
                }
                for c, name in enumerate(classes)
            }
            infos = [cells[(regime.name, arm.name, s)] for s in seeds]
            entry = {
                "seeds": seeds,
                "num_train_real": float(np.mean([info["num_real"] for info in infos])),
                "num_train_synthetic": float(np.mean([info["num_synthetic"] for info in infos])),
                "best_epoch": [info["best_epoch"] for info in infos],
                "synthetic_shortfall": int(sum(sum((info["synthetic"] or {}).get("shortfall", [])) for info in infos)),
                **metric,
                "per_class": per_class,
            }
            baselines = [other for other in config.arms if not other.synthetic and other.name != arm.name
                         and scored.get((regime.name, other.name))]  # fmt: skip
            vs = {}
            for other in baselines:
                difference = paired(seed_scores, scored[(regime.name, other.name)])
                if difference is not None:
                    vs[other.name] = difference
            if vs:
                entry["vs"] = {name: {key: value for key, value in difference.items() if key in (*METRICS, "seeds")}
                               for name, difference in vs.items()}  # fmt: skip
            if "real" in vs:
                entry["vs_real"] = vs["real"]
            regime_results[arm.name] = entry
        if regime_results:
            results[regime.name] = regime_results
    reference_regime, reference = config.reference_regime, None
    if reference_regime is not None and reference_regime.name in results:
        extra = reference_regime not in config.regimes  # trained for the reference only: not a regime of the tables
        reference = (results.pop(reference_regime.name) if extra else results[reference_regime.name]).get("real")
    return {
        "task": config.task,
        "classifier": config.classifier,
        "classes": classes,
        "rare_classes": rare_classes,
        "folds": {"train": list(config.train_folds), "val": list(config.val_folds), "test": list(config.test_folds)},
        "num_test_records": int(len(y_true)),
        "n_bootstrap": int(len(indices)),
        "alpha": alpha,
        "seed_pooling": SEED_POOLING,
        "generator": generator,
        "regimes": [{"name": r.name, "fraction": r.fraction, "rare_k": r.rare_k} for r in config.regimes],
        "arms": [dataclasses.asdict(a) for a in config.arms],
        "results": results,
        "reference": reference,
    }


# ----------------------------------------------------------------------------------------- table
def _ci(value: dict | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    sign = "+" if signed else ""

    def number(x: float) -> str:
        return f"{round(x, digits) + 0.0:{sign}.{digits}f}"  # + 0.0 turns -0.0 into 0.0

    return f"{number(value['point'])} [{number(value['low'])}, {number(value['high'])}]"


def write_table(results: dict, path, *, notes: Sequence[str] = ()) -> Path:
    """``table.md``: macro-AUC and rare-class AUC/AUPRC with CIs per regime and arm, then per-class tables."""
    classes, rare = results["classes"], results["rare_classes"]
    level = round(100 * (1 - results["alpha"]))
    lines = [
        f"# Data-scarcity gain of synthetic ECGs: PTB-XL {results['task']}, {results['classifier']}",
        "",
        f"Test folds {results['folds']['test']} ({results['num_test_records']} records), validation folds {results['folds']['val']}, "
        f"training folds {results['folds']['train']}. Rare classes: {', '.join(rare)}.",
        f"Each value: {results['seed_pooling']}; {results['n_bootstrap']} resamples, {level}% intervals in brackets.",
        "",
        f"## Macro-AUC and rare-class metrics ({level}% CI)",
        "",
        "| regime | arm | seeds | real + synthetic records | macro-AUC | Δ macro-AUC vs real | rare AUC | Δ rare AUC | rare AUPRC | Δ rare AUPRC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = results.get("reference")
    for regime, arms in results["results"].items():
        if reference is not None:
            records = f"{reference['num_train_real']:.0f} + 0"
            lines.append(f"| {regime} | *all real records (reference)* | {len(reference['seeds'])} | {records} | {_ci(reference['macro_auc'])} | – | "
                         f"{_ci(reference['rare_auc'])} | – | {_ci(reference['rare_auprc'])} | – |")  # fmt: skip
        for arm, entry in arms.items():
            vs = entry.get("vs_real", {})
            records = f"{entry['num_train_real']:.0f} + {entry['num_train_synthetic']:.0f}"
            lines.append(
                f"| {regime} | {arm} | {len(entry['seeds'])} | {records} | {_ci(entry['macro_auc'])} | {_ci(vs.get('macro_auc'), signed=True)} | "
                f"{_ci(entry['rare_auc'])} | {_ci(vs.get('rare_auc'), signed=True)} | {_ci(entry['rare_auprc'])} | {_ci(vs.get('rare_auprc'), signed=True)} |"
            )
    baselines = list(dict.fromkeys(name for arms in results["results"].values() for entry in arms.values() for name in entry.get("vs", {})))
    if baselines:
        lines += ["", f"## Δ macro-AUC / Δ rare AUC / Δ rare AUPRC against each non-generative arm ({level}% CI, paired)", "",
                  "| regime | arm | " + " | ".join(f"vs {name}" for name in baselines) + " |", "|---|---|" + "---|" * len(baselines)]  # fmt: skip
        for regime, arms in results["results"].items():
            for arm, entry in arms.items():
                cells = []
                for name in baselines:
                    difference = entry.get("vs", {}).get(name)
                    cells.append("–" if difference is None else " / ".join(_ci(difference[m], signed=True) for m in METRICS))
                lines.append(f"| {regime} | {arm} | " + " | ".join(cells) + " |")
    for title, key in (("Per-class AUC", "auc"), ("Per-class AUPRC", "auprc")):
        lines += ["", f"## {title} (mean over seeds, {level}% CI)", "", "| regime | arm | " + " | ".join(classes) + " |",
                  "|---|---|" + "---|" * len(classes)]  # fmt: skip
        for regime, arms in results["results"].items():
            if reference is not None:
                lines.append(f"| {regime} | *all real records (reference)* | " + " | ".join(_ci(reference["per_class"][c][key]) for c in classes) + " |")
            for arm, entry in arms.items():
                lines.append(f"| {regime} | {arm} | " + " | ".join(_ci(entry["per_class"][c][key]) for c in classes) + " |")
    lines += ["", f"## Per-class AUC gain over real-only training ({level}% CI, paired)", "",
              "| regime | arm | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]  # fmt: skip
    for regime, arms in results["results"].items():
        for arm, entry in arms.items():
            if "vs_real" in entry:
                gains = entry["vs_real"]["per_class_auc"]
                lines.append(f"| {regime} | {arm} | " + " | ".join(_ci(gains[c], signed=True) for c in classes) + " |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, x, entries, key, label, offset=0.0):
    values = [entry[key] for entry in entries]
    y = np.array([v["point"] for v in values])
    err = np.array([[v["point"] - v["low"] for v in values], [v["high"] - v["point"] for v in values]])
    ax.errorbar(np.asarray(x) * (1 + offset), y, yerr=err, marker="o", capsize=3, label=label)


def plot_auc_vs_fraction(results: dict, path) -> Path | None:
    """Macro-AUC and rare-class AUC against the fraction of training patients, one line per arm."""
    regimes = [r for r in results["regimes"] if r["rare_k"] is None and r["name"] in results["results"]]
    if not regimes:
        return None
    plt = _pyplot()
    arms = list(dict.fromkeys(arm for r in regimes for arm in results["results"][r["name"]]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, arm in enumerate(arms):
        present = [r for r in regimes if arm in results["results"][r["name"]]]
        entries = [results["results"][r["name"]][arm] for r in present]
        fractions = [r["fraction"] for r in present]
        offset = 0.03 * (i - (len(arms) - 1) / 2)  # spread the error bars of one fraction
        for ax, key in zip(axes, ("macro_auc", "rare_auc")):
            _errorbar(ax, fractions, entries, key, arm, offset)
    ticks = sorted({r["fraction"] for r in regimes})
    for ax, title in zip(axes, ("macro-AUC", f"rare-class AUC ({', '.join(results['rare_classes'])})")):
        if len(regimes) > 1:
            ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{100 * f:g}%" for f in ticks])
        ax.minorticks_off()
        ax.set_xlabel("fraction of training patients")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs training data")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    level = round(100 * (1 - results["alpha"]))
    fig.suptitle(f"PTB-XL {results['task']}, {results['classifier']}: mean over seeds, {level}% bootstrap CI")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_per_class_gain(results: dict, path) -> Path | None:
    """Per-class AUC gain over real-only training, one panel per regime, one bar per arm."""
    regimes = [name for name, arms in results["results"].items() if any("vs_real" in e for e in arms.values())]
    if not regimes:
        return None
    plt = _pyplot()
    classes = results["classes"]
    fig, axes = plt.subplots(len(regimes), 1, figsize=(max(6, 1.2 * len(classes) + 3), 3 * len(regimes)), squeeze=False)
    for ax, regime in zip(axes[:, 0], regimes):
        arms = [(arm, e) for arm, e in results["results"][regime].items() if "vs_real" in e]
        width = 0.8 / len(arms)
        x = np.arange(len(classes))
        for i, (arm, entry) in enumerate(arms):
            gains = [entry["vs_real"]["per_class_auc"][c] for c in classes]
            y = np.array([g["point"] for g in gains])
            err = np.array([[g["point"] - g["low"] for g in gains], [g["high"] - g["point"] for g in gains]])
            ax.bar(x + (i - (len(arms) - 1) / 2) * width, y, width, yerr=err, capsize=2, label=arm)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [f"{c}*" if c in results["rare_classes"] else c for c in classes])
        ax.set_ylabel("Δ AUC vs real")
        ax.set_title(regime)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("Per-class AUC gain over real-only training (* rare class; paired 95% CI)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


SWEEP_FIELDS = ("synthetic_per_real", "synthetic_cap", "guidance_scale")


def plot_sweep(results: dict, arms: Sequence[Arm], path) -> Path | None:
    """Δ macro-AUC and Δ rare AUC vs real for the sweep's arms: one panel per varied setting."""
    base = next((arm for arm in arms if arm.name == "synthetic"), None)
    regime = next(iter(results["results"]), None)
    if base is None or regime is None:
        return None
    entries = results["results"][regime]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SWEEP_FIELDS) + 1, figsize=(4 * (len(SWEEP_FIELDS) + 1), 3.8), sharey=True)
    for ax, field in zip(axes, SWEEP_FIELDS):
        points = [(getattr(arm, field), entries[arm.name]) for arm in arms if arm.synthetic and arm.name in entries and "vs_real" in entries[arm.name]
                  and all(getattr(arm, other) == getattr(base, other) for other in (*SWEEP_FIELDS, "synthetic_classes") if other != field)]  # fmt: skip
        points.sort(key=lambda item: item[0])
        for key, label in (("macro_auc", "macro-AUC"), ("rare_auc", "rare AUC")):
            if points:
                _errorbar(ax, [p[0] for p in points], [p[1]["vs_real"] for p in points], key, label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.axvline(getattr(base, field), color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel(field)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Δ vs real (paired)")
    axes[0].legend(fontsize=8)
    ax = axes[-1]  # which classes get synthetic ECGs
    bars = [(arm.synthetic_classes, entries[arm.name]["vs_real"]) for arm in arms
            if arm.synthetic and arm.name in entries and "vs_real" in entries[arm.name]
            and all(getattr(arm, f) == getattr(base, f) for f in SWEEP_FIELDS)]  # fmt: skip
    for i, (key, label) in enumerate((("macro_auc", "macro-AUC"), ("rare_auc", "rare AUC"))):
        y = np.array([b[1][key]["point"] for b in bars])
        err = np.array([[b[1][key]["point"] - b[1][key]["low"] for b in bars], [b[1][key]["high"] - b[1][key]["point"] for b in bars]])
        ax.bar(np.arange(len(bars)) + (i - 0.5) * 0.4, y, 0.4, yerr=err.reshape(2, -1), capsize=3, label=label)
    ax.set_xticks(np.arange(len(bars)), [f"{b[0]} classes" for b in bars])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("synthetic_classes")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"What makes synthetic data help ({regime}; one setting varied at a time from the dotted default)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_json(results: dict, path) -> Path:
    path = Path(path)

    def default(value):
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, (np.floating,)):
            return None if math.isnan(value) else float(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    path.write_text(json.dumps(results, indent=2, default=default) + "\n")
    return path
