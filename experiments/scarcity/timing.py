"""A time estimate before the long work: short measurements on this machine, multiplied out.

The classifier's training and inference speed are measured on a few random batches, the
generator's on a few ECGs, and the bootstrap's on a few resamples; the estimate sums them over
the work still to do (pending cells, missing pool ECGs). Training time is an upper bound when
early stopping (``patience``) is on. On a shared machine the numbers move with the load.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from classifiers import create_model

__all__ = ["Estimate", "measure_classifier", "measure_generation", "measure_bootstrap"]

# Seconds per record for heart-rate detection on one core (PTB-XL, 100 Hz; benchmarks/bench_heart_rate.py).
HEART_RATE_SECONDS_PER_RECORD = 0.001
# Whole epochs (data loading, augmentation, validation bookkeeping) took about 1.15x the time of the
# bare classifier steps measured here (resnet1d_small, 100 Hz PTB-XL, 2 CPU cores).
LOADING_OVERHEAD = 1.2


def measure_classifier(name: str, *, num_classes: int, num_samples: int, batch_size: int, device: str) -> tuple[float, float]:
    """``(training, inference)`` records per second of classifier ``name`` on random batches."""
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = create_model(name, num_classes=num_classes).to(device)
        x = torch.randn(batch_size, 12, num_samples, device=device)
        y = (torch.rand(batch_size, num_classes, device=device) > 0.5).float()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step():
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def timed(fn, warmup: int = 3, repeats: int = 5) -> float:
            """Median seconds of one call after ``warmup`` calls (the first steps set up kernels and run slowly)."""
            seconds = []
            for i in range(warmup + repeats):
                start = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= warmup:
                    seconds.append(time.perf_counter() - start)
            return float(np.median(seconds))

        model.train()
        train_seconds = timed(step)
        model.eval()
        with torch.no_grad():
            eval_seconds = timed(lambda: model(x))
    return batch_size / train_seconds, batch_size / eval_seconds


def measure_generation(generator, *, num_inference_steps: int, guidance_scale: float, sampling_rate: float, num_ecgs: int = 16) -> float:
    """ECGs per second of ``generator`` at these settings (one batch of ``num_ecgs``, after a one-step warm-up)."""

    def generate(count: int, steps: int) -> None:
        generator.generate(["sinus rhythm"] * count, [60.0] * count, ["M"] * count, [70.0] * count, num_inference_steps=steps,
                           guidance_scale=guidance_scale, generator=[torch.Generator().manual_seed(i) for i in range(count)],
                           lead_order="ptbxl", sampling_rate=sampling_rate)  # fmt: skip

    generate(2, 1)  # loads the text encoder and sets up kernels
    start = time.perf_counter()
    generate(num_ecgs, num_inference_steps)
    return num_ecgs / (time.perf_counter() - start)


def measure_bootstrap(num_records: int, num_classes: int, repeats: int = 5) -> float:
    """Seconds to score one resample of one cell (per-class AUC and AUPRC)."""
    from .report import bootstrap_scores

    rng = np.random.default_rng(0)
    y_true = (rng.random((num_records, num_classes)) < 0.3).astype(np.int64)
    y_true[0], y_true[1] = 1, 0
    indices = np.tile(np.arange(num_records), (repeats, 1))
    start = time.perf_counter()
    bootstrap_scores(y_true, rng.random((num_records, num_classes)), indices)
    return (time.perf_counter() - start) / repeats


@dataclass
class Estimate:
    """Seconds of each part of the remaining work."""

    heart_rates: float = 0.0
    pool: float = 0.0
    training: float = 0.0
    evaluation: float = 0.0
    pool_ecgs: int = 0
    cells: int = 0
    generation_rate: float | None = None
    train_rate: float | None = None
    eval_rate: float | None = None

    @property
    def total(self) -> float:
        return self.heart_rates + self.pool + self.training + self.evaluation

    def describe(self) -> str:
        def minutes(seconds: float) -> str:
            return f"{seconds / 60:.1f} min"

        lines = [f"Time estimate (measured on this machine just now; training is an upper bound with early stopping): {minutes(self.total)}"]
        if self.heart_rates:
            lines.append(f"  heart rates of PTB-XL (first run only, then cached): up to {minutes(self.heart_rates)}")
        if self.pool_ecgs:
            lines.append(f"  synthetic pool: {self.pool_ecgs} ECGs at {self.generation_rate:.2f} ECG/s: {minutes(self.pool)}")
        if self.cells:
            lines.append(f"  training: {self.cells} cells (classifier {self.train_rate:.0f} records/s training, "
                         f"{self.eval_rate:.0f} records/s inference): {minutes(self.training)}")  # fmt: skip
        lines.append(f"  evaluation (bootstrap): {minutes(self.evaluation)}")
        return "\n".join(lines)
