"""How much of a seed ECG real-guided generation keeps, per ``strength``, on validation records.

For validation-fold records (never a test fold), each record seeds one generated ECG under its own
report, age, sex and heart rate (``pipe.generate(init_ecgs=..., strength=...)``). Printed per
strength: Pearson r between generated and seed ECG (mean over records and leads), the real-data
superclass classifier's macro-AUC on the generated ECGs against the records' labels (the seeds
themselves: strength 0), and the heart-rate error against the condition.

    python experiments/guided_strength.py --ptbxl datasets/ptbxl --val_folds 8 --train_folds 1-7 --work_dir runs/eval
"""
from __future__ import annotations

import argparse

import torch

from ecgaug.data.folds import parse_folds
from ecgaug.evaluation import metrics
from ecgaug.evaluation.classifiers import classify, train_or_load_classifier
from ecgaug.evaluation.conditions import SAMPLING_RATE, SUPERCLASSES, load_test_conditions
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.settings import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ptbxl", required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--val_folds", type=parse_folds, default=parse_folds("8"), help="seed records come from these folds only")
    parser.add_argument("--train_folds", type=parse_folds, default=parse_folds("1-7"), help="the classifier's training folds")
    parser.add_argument("--work_dir", required=True, help="cache of the classifier (shared with ecgaug evaluate)")
    parser.add_argument("--num_records", type=int, default=300)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = DiffuSETSPipeline.from_pretrained(args.model)
    folds = set(args.val_folds)
    if folds & set(pipe.info.get("training", {}).get("folds", [])):
        parser.error(f"--val_folds {sorted(folds)} overlap the folds the model was trained on")
    # The classifier early-stops on the same validation folds the seeds come from: it measures, it is not tuned here.
    classifier, classes, _ = train_or_load_classifier(args.ptbxl, train_folds=args.train_folds, val_folds=args.val_folds,
                                                      work_dir=args.work_dir, classes=SUPERCLASSES, show_progress=False)
    records = load_test_conditions(args.ptbxl, args.val_folds, args.num_records, seed=args.seed, classes=classes, show_progress=False)
    seeds = records.signals
    print(f"{args.model}, {len(records)} records of folds {sorted(folds)}")
    print("| strength | Pearson r to the seed | superclass macro-AUC | HR MAE (bpm) |")
    print("|---|---|---|---|")
    real = metrics.class_recognition(classify(classifier, seeds), records.labels, classes)["macro_auc"]
    print(f"| 0 (the seeds) | 1.000 | {real:.3f} | – |")
    for strength in args.strengths:
        ecgs = pipe.generate(records.reports, list(records.age), records.sex, list(records.heart_rate), init_ecgs=seeds,
                             strength=strength, lead_order="ptbxl", sampling_rate=SAMPLING_RATE, show_progress=False,
                             generator=[torch.Generator().manual_seed(args.seed * 100_003 + i) for i in range(len(records))])
        r = metrics.reconstruction_metrics(seeds.numpy(), ecgs.numpy())["overall"]["pearson"]
        auc = metrics.class_recognition(classify(classifier, ecgs), records.labels, classes)["macro_auc"]
        hr = metrics.heart_rate_metrics(records.heart_rate, metrics.measure_rhythm(ecgs.numpy(), SAMPLING_RATE)[0])["mae_bpm"]
        print(f"| {strength:g} | {r:.3f} | {auc:.3f} | {hr:.1f} |", flush=True)


if __name__ == "__main__":
    main()
