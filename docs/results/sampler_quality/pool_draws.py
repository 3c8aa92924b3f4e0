"""How docs/results/sampler_quality/pooled.{md,json} were made: the ECGs cached by the two runs of
experiments/sampler_quality.py (draw 0: --seed 0, work dir ~/eval/base; draw 1: --seed 1, ~/eval/seed1) scored
together with ecgaug.evaluation.samplers.compare_runs over the 1,024 conditions. Paths are those of that run.

    OMP_NUM_THREADS=1 python docs/results/sampler_quality/pool_draws.py
"""
import json, sys
from pathlib import Path

import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / 'experiments'))
from pathlib import Path
from ecgaug.evaluation.classifiers import train_or_load_classifier
from ecgaug.evaluation.conditions import RHYTHM_CLASSES, SUPERCLASSES, load_test_conditions, TestConditions
from ecgaug.evaluation.samplers import compare_runs, per_condition_values, FIDELITY_METRICS
ptbxl = "datasets/ptbxl"
common = dict(train_folds=(1,2,3,4,5,6,7), val_folds=(8,), work_dir=Path('/root/eval/base'), seed=0, show_progress=False)
sup, _, _ = train_or_load_classifier(ptbxl, task="superdiagnostic", classes=SUPERCLASSES, **common)
rhy, _, _ = train_or_load_classifier(ptbxl, task="rhythm", classes=RHYTHM_CLASSES, **common)
draws = {0: ('/root/eval/base/ecgs', {"unipc12": "unipc_12_bf16", "unipc15": "unipc_15_bf16", "sde15": "sde-dpmsolver++_15_bf16", "sde20": "sde-dpmsolver++_20", "dpm25": "dpmsolver++_25", "ddpm": "ddpm_1000", "ddpm_re": "ddpm_1000_reseeded"}),
         1: ('/root/eval/seed1/ecgs', {"unipc12": "unipc_12_bf16", "unipc15": "unipc_15_bf16", "sde15": "sde-dpmsolver++_15_bf16", "sde20": "sde-dpmsolver++_20_bf16", "dpm25": "dpmsolver++_25_bf16", "ddpm": "ddpm_1000", "ddpm_re": "ddpm_1000_reseeded"})}
conds, vals = [], {}
for seed, (folder, files) in draws.items():
    c = load_test_conditions(ptbxl, (8,), 512, seed=seed, classes=SUPERCLASSES, show_progress=False)
    conds.append(c)
    for name, f in files.items():
        d = np.load(f"{folder}/{f}.npz"); assert list(d["ecg_ids"]) == list(c.ecg_ids), (seed, f)
        v = per_condition_values(d["ecgs"], c, sup, rhy)
        vals.setdefault(name, []).append(v)
pooled = TestConditions(conds[0].ecg_ids + conds[1].ecg_ids, conds[0].reports + conds[1].reports, np.concatenate([c.age for c in conds]),
                        conds[0].sex + conds[1].sex, np.concatenate([c.heart_rate for c in conds]), torch.cat([c.signals for c in conds]),
                        np.concatenate([c.labels for c in conds]), conds[0].classes, np.concatenate([c.rhythm_labels for c in conds]))
values = {n: {k: np.concatenate([v[k] for v in vs]) for k in vs[0]} for n, vs in vals.items()}
r = compare_runs(values, pooled, reference="ddpm", noise_floor="ddpm_re", num_resamples=300)
print("bound", {k: round(v, 3) for k, v in r["noise_bound"].items()})
for n, e in r["runs"].items():
    print(n, " | ".join(f"{m} {e['metrics'][m]['value']:.3f} ({e['metrics'][m]['difference']:+.3f} [{e['metrics'][m]['ci'][0]:+.3f}, {e['metrics'][m]['ci'][1]:+.3f}]) {'Y' if e['within_noise'][m] else 'N'}" for m in FIDELITY_METRICS))
json.dump(r, open('/root/eval/sampler/pooled.json', 'w'), indent=1, default=float)
