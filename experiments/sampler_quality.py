"""Which fast sampler settings keep DDPM-1000's fidelity: a sweep on validation records.

Each candidate (sampler, steps, decoding precision) generates one ECG per validation-fold
condition (report, age, sex, heart rate of a real record), from the same initial noise as the
reference, DDPM with 1000 steps as trained. DDPM-1000 runs a second time from other noise: the
difference between the two DDPM runs is the run-to-run noise floor. Per candidate and metric the
table gives the paired difference to the reference, with a bootstrap 95 % CI over conditions, and
whether it lies within the noise floor (``|difference| <=`` the larger end of the DDPM run-to-run
CI). Metrics are the model card's: superclass and rhythm recognition (macro-AUC of real-data
classifiers), heart-rate MAE against the condition, median RR-interval CV in sinus rhythm and in AF.

Generated ECGs are cached per candidate and seed in ``--work_dir``, so adding a candidate or a seed
reruns only it. Several ``--seeds`` pool independent draws of conditions (and of their noise) into
one comparison: more conditions, narrower CIs. Validation folds only (default 8): the choice of the
default sampler must not see the test fold.

    python experiments/sampler_quality.py --ptbxl datasets/ptbxl --work_dir runs/sampler_quality \\
        --output_dir docs/results/sampler_quality --seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecgaug.data.folds import parse_folds
from ecgaug.evaluation.classifiers import train_or_load_classifier
from ecgaug.evaluation.conditions import RHYTHM_CLASSES, SUPERCLASSES, TestConditions, check_held_out, load_test_conditions
from ecgaug.evaluation.evaluate import SamplerRun, generate_for_conditions
from ecgaug.evaluation.samplers import FIDELITY_METRICS as METRICS
from ecgaug.evaluation.samplers import compare_runs, per_condition_values
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.settings import DEFAULT_MODEL

DEFAULT_CANDIDATES = ("dpmsolver++:25", "dpmsolver++:15", "dpmsolver++:10", "dpmsolver++:10:bf16", "dpmsolver++:8", "unipc:15", "unipc:10",
                      "unipc:10:bf16", "unipc:8", "sde-dpmsolver++:20", "sde-dpmsolver++:10", "ddpm:100")
REFERENCE, NOISE_FLOOR = "ddpm:1000", "ddpm:1000:reseeded"


@dataclass(frozen=True)
class Candidate:
    """``scheduler:steps[:bf16][:reseeded]``: bf16 decodes in bfloat16 on the CPU; reseeded starts from other noise."""

    spec: str
    scheduler: str
    steps: int
    bf16_decoding: bool
    seed_stream: int

    @classmethod
    def parse(cls, spec: str) -> "Candidate":
        parts = spec.split(":")
        if len(parts) < 2 or not parts[1].isdigit() or set(parts[2:]) - {"bf16", "reseeded"}:
            raise argparse.ArgumentTypeError(f"a candidate is scheduler:steps[:bf16][:reseeded], e.g. unipc:10:bf16, but got {spec!r}")
        scheduler, steps, flags = parts[0], parts[1], set(parts[2:])
        return cls(spec, scheduler, int(steps), "bf16" in flags, 1 if "reseeded" in flags else 0)


def generate_cached(pipe, conditions, candidate: Candidate, work_dir: Path, seed: int, show_progress: bool) -> tuple[np.ndarray, float]:
    """One ECG per condition with ``candidate``'s setting; reused from ``work_dir`` when the same model made it for the same conditions and seed."""
    path = work_dir / "ecgs" / f"seed{seed}" / f"{candidate.spec.replace(':', '_')}.npz"
    if path.is_file():
        cached = np.load(path)
        same = (list(cached["ecg_ids"]) == list(conditions.ecg_ids) and str(cached.get("model_id", "")) == pipe.model_id
                and int(cached.get("seed", -1)) == seed)
        if same:
            return cached["ecgs"], float(cached["seconds"])
    previous, pipe.cpu_decode_dtype = pipe.cpu_decode_dtype, torch.bfloat16 if candidate.bf16_decoding else torch.float32
    try:
        run = SamplerRun(candidate.spec, candidate.scheduler, candidate.steps, seed_stream=candidate.seed_stream)
        ecgs, seconds = generate_for_conditions(pipe, conditions, run, seed=seed, show_progress=show_progress)
    finally:
        pipe.cpu_decode_dtype = previous
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ecgs=ecgs.numpy(), seconds=seconds, ecg_ids=np.asarray(conditions.ecg_ids), model_id=pipe.model_id, seed=seed)
    return ecgs.numpy(), seconds


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in results["candidates"] if c != REFERENCE]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 0.45 * len(names) + 1.5), sharey=True)
    for ax, metric in zip(axes, METRICS):
        bound = results["noise_bound"][metric]
        if bound is not None:
            ax.axvspan(-bound, bound, color="0.85", label="DDPM-1000 run-to-run")
        for y, name in enumerate(names):
            d = results["candidates"][name]["vs_reference"][metric]
            low, high = d["ci"]
            if low is None or d["difference"] is None:
                continue
            color = "tab:green" if results["candidates"][name]["within_noise"][metric] else "tab:red"
            ax.errorbar(d["difference"], y, xerr=[[d["difference"] - low], [high - d["difference"]]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(metric)
        ax.set_yticks(range(len(names)), names)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{results['model']}: difference to DDPM-1000 on {results['num_conditions']} conditions of fold(s) {', '.join(map(str, results['folds']))} "
                 f"(seeds {', '.join(map(str, results['seeds']))}; 95 % CI; green = within run-to-run noise)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict) -> str:
    header = "| candidate | ms/ECG | " + " | ".join(METRICS) + " | all within noise |"
    lines = [header, "|" + "---|" * (len(METRICS) + 3)]
    for name, row in results["candidates"].items():
        cells = []
        for metric in METRICS:
            d = row["vs_reference"][metric]
            mark = {None: "", True: " ✓", False: " ✗"}[None if name == REFERENCE else row["within_noise"][metric]]
            value = "n/a" if d["value"] is None else f"{d['value']:.3f}"
            low, high = d["ci"]
            ci = "" if low is None else f" [{low:+.3f}, {high:+.3f}]"
            cells.append(value + ("" if name == REFERENCE or d["difference"] is None else f" ({d['difference']:+.3f}{ci}){mark}"))
        lines.append(f"| {name} | {row['ms_per_ecg']:.0f} | " + " | ".join(cells) + f" | {'' if name == REFERENCE else ('yes' if all(v is not False for v in row['within_noise'].values()) else 'no')} |")
    bounds = ", ".join(f"{m} ±{results['noise_bound'][m]:.3f}" if results["noise_bound"][m] is not None else f"{m} undefined" for m in METRICS)
    return "\n".join(lines) + f"\n\nDifference to {REFERENCE} [95 % CI]. Noise bound (larger end of the DDPM-1000 run-to-run 95 % CI): {bounds}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ptbxl", required=True, type=Path)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--folds", type=parse_folds, default=parse_folds("8"), help="validation folds of the conditions (default 8)")
    parser.add_argument("--train_folds", type=parse_folds, default=parse_folds("1-7"), help="the classifiers' training folds")
    parser.add_argument("--classifier_val_folds", type=parse_folds, default=parse_folds("8"), help="the classifiers' early-stopping folds")
    parser.add_argument("--num_conditions", type=int, default=512, help="conditions per seed")
    parser.add_argument("--candidates", nargs="+", type=Candidate.parse, default=[Candidate.parse(c) for c in DEFAULT_CANDIDATES],
                        help=f"scheduler:steps[:bf16][:reseeded]; {REFERENCE} and {NOISE_FLOOR} are always added")
    parser.add_argument("--num_resamples", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="each draws --num_conditions conditions and their noise (a new validation sample); the draws are pooled")
    parser.add_argument("--classifier_seed", type=int, default=0, help="seeds the measuring classifiers (shared with ecgaug evaluate's)")
    parser.add_argument("--work_dir", required=True, type=Path, help="cached classifiers and generated ECGs")
    parser.add_argument("--output_dir", required=True, type=Path, help="results.json, table.md and sampler_quality.png")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args()
    show = not args.no_progress

    pipe = DiffuSETSPipeline.from_pretrained(args.model)
    check_held_out(pipe.info, args.folds)
    # the cheap candidates first, so their ECGs are cached early
    candidates = {c.spec: c for c in [*args.candidates, Candidate.parse(REFERENCE), Candidate.parse(NOISE_FLOOR)]}
    common = dict(train_folds=args.train_folds, val_folds=args.classifier_val_folds, work_dir=args.work_dir, seed=args.classifier_seed, show_progress=show)
    superclass_model, _, _ = train_or_load_classifier(args.ptbxl, task="superdiagnostic", classes=SUPERCLASSES, **common)
    rhythm_model, _, _ = train_or_load_classifier(args.ptbxl, task="rhythm", classes=RHYTHM_CLASSES, **common)
    draws = {seed: load_test_conditions(args.ptbxl, args.folds, args.num_conditions, seed=seed, classes=SUPERCLASSES, show_progress=show)
             for seed in dict.fromkeys(args.seeds)}
    conditions = TestConditions.concatenate(list(draws.values()))

    values, seconds = {}, {}
    for spec, candidate in candidates.items():
        tick = time.perf_counter()
        per_draw = [generate_cached(pipe, draw, candidate, args.work_dir, seed, show) for seed, draw in draws.items()]
        ecgs, seconds[spec] = np.concatenate([e for e, _ in per_draw]), sum(s for _, s in per_draw)
        values[spec] = per_condition_values(ecgs, conditions, superclass_model, rhythm_model)
        print(f"{spec}: {seconds[spec] / len(conditions) * 1000:.0f} ms/ECG ({time.perf_counter() - tick:.0f} s)", flush=True)

    comparison = compare_runs(values, conditions, reference=REFERENCE, noise_floor=NOISE_FLOOR, num_resamples=args.num_resamples, seed=min(draws))
    results = {
        "model": pipe.model_id, "folds": args.folds, "num_conditions": len(conditions), "seeds": list(draws),
        "device": f"CPU, {torch.get_num_threads()} torch threads" if pipe.device.type == "cpu" else str(pipe.device),
        "reference": REFERENCE, "noise_floor": NOISE_FLOOR, "noise_bound": comparison["noise_bound"],
        "candidates": {spec: {"scheduler": c.scheduler, "num_inference_steps": c.steps, "bf16_decoding": c.bf16_decoding,
                              "seed_stream": c.seed_stream, "ms_per_ecg": seconds[spec] / len(conditions) * 1000,
                              "vs_reference": comparison["runs"][spec]["metrics"], "within_noise": comparison["runs"][spec]["within_noise"]}
                       for spec, c in candidates.items()},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output_dir / "table.md").write_text(table(results))
    plot(results, args.output_dir / "sampler_quality.png")
    print(table(results))


if __name__ == "__main__":
    main()
