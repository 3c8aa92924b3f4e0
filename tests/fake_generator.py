"""Fakes for the augmentation tests: a deterministic ECG generator, a report templater, small plans.

``FakeGenerator`` satisfies ``ecgaug.augment.builder.ECGGenerator``. Its ECG for one job depends
only on the job's report, heart rate and seed (never on batching), so a test can recompute the
exact expected signal of every cached row with :func:`expected_signal` and prove that nothing
was lost, duplicated or shuffled.
"""
from __future__ import annotations

import time
import zlib
from typing import Sequence

import numpy as np
import torch

from ecgaug.augment.patients import PatientSampler
from ecgaug.augment.plan import GenerationPlan, PlanConfig, make_plan
from ecgaug.signal import PTBXL_LEADS, reorder_leads

CLASSES = ["NORM", "MI", "STTC", "SBRAD"]


def expected_signal(report: str, heart_rate: float, seed: int, *, sampling_rate: float = 100.0, lead_order: str = "ptbxl") -> torch.Tensor:
    """``(12, 10 * sampling_rate)`` float32: a heart-rate sine, a report-dependent offset, seeded noise."""
    num_samples = int(round(10 * sampling_rate))
    t = torch.arange(num_samples, dtype=torch.float64) / sampling_rate
    offset = (zlib.crc32(report.encode()) % 1000) / 1000.0
    leads = torch.arange(len(PTBXL_LEADS), dtype=torch.float64)[:, None]
    wave = torch.sin(2 * torch.pi * heart_rate / 60.0 * t)[None, :] * (0.5 + 0.1 * leads) + offset + 0.05 * leads
    noise = torch.randn(12, num_samples, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    signal = (wave + 0.1 * noise).to(torch.float32)
    return reorder_leads(signal, "ptbxl", lead_order)


class FakeTextEncoder:
    def __init__(self, name: str):
        self.name = name


class FakeScheduler:
    def __init__(self, config: dict):
        self.config = config


class FakeGenerator:
    """A deterministic stand-in for ``DiffuSETSPipeline``.

    Args:
        model_id, sampler_name: Identity reported to the cache.
        fail_after_calls: Raise ``RuntimeError`` on every ``generate`` call after this many (a crash).
        delay: Seconds to sleep in each ``generate`` call (to make builders overlap).
        text_encoder, scheduler_config: The text encoder's name and the sampler config that
            ``generator_key`` reads (None: the fake has no ``text_encoder`` / ``scheduler``).
    """

    def __init__(self, model_id: str = "fake-1", sampler_name: str = "FakeScheduler", fail_after_calls: int | None = None,
                 delay: float = 0.0, text_encoder: str | None = None, scheduler_config: dict | None = None):  # fmt: skip
        self.model_id = model_id
        self._sampler_name = sampler_name
        self.text_encoder = None if text_encoder is None else FakeTextEncoder(text_encoder)
        self.scheduler = None if scheduler_config is None else FakeScheduler(scheduler_config)
        self.fail_after_calls = fail_after_calls
        self.delay = delay
        self.calls = []  # (num_reports, num_inference_steps, guidance_scale, lead_order, sampling_rate, batch_size) per call

    @property
    def sampler_name(self) -> str:
        return self._sampler_name

    def to(self, device):
        return self

    def generate(self, reports: Sequence[str], age: Sequence[float], sex: Sequence[str], heart_rate: Sequence[float], *,
                 num_inference_steps=None, guidance_scale=1.0, generator=None, lead_order="ptbxl", sampling_rate=100.0,
                 batch_size=None, show_progress=False) -> torch.Tensor:  # fmt: skip
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("FakeGenerator: simulated crash")
        if not (len(reports) == len(age) == len(sex) == len(heart_rate)):
            raise ValueError("reports, age, sex and heart_rate should have the same length")
        if not isinstance(generator, list) or len(generator) != len(reports):
            raise ValueError(f"generator should be a list of {len(reports)} torch.Generator, but got {generator!r}")
        self.calls.append((len(reports), num_inference_steps, guidance_scale, lead_order, sampling_rate, batch_size))
        time.sleep(self.delay)
        signals = []
        for report, rate, g in zip(reports, heart_rate, generator):
            seed = g.initial_seed()
            signals.append(expected_signal(report, rate, seed, sampling_rate=sampling_rate, lead_order=lead_order))
        return torch.stack(signals) if signals else torch.zeros(0, 12, int(round(10 * sampling_rate)))


def slow_generator() -> FakeGenerator:
    """Factory for ``ecgaug cache build --model_factory fake_generator:slow_generator``."""
    return FakeGenerator(delay=0.05)


class FakeTemplater:
    """Writes ``"<description> (<variant>)"`` reports; SBRAD says "sinus bradycardia"."""

    DESCRIPTIONS = {"NORM": "normal ECG", "MI": "myocardial infarction", "STTC": "ST-T change", "SBRAD": "sinus bradycardia"}

    def report_for_class(self, label: str, *, rng: np.random.Generator, co_occurring=None) -> str:
        parts = [self.DESCRIPTIONS.get(label, label)] + [self.DESCRIPTIONS.get(other, other) for other in co_occurring or ()]
        return ", ".join(parts) + f" (variant {int(rng.integers(1000))})"


def real_labels(num_records: int = 40) -> tuple[np.ndarray, dict]:
    """Multi-label targets ``(N, 4)`` over :data:`CLASSES` and joint patient columns.

    NORM is the largest class; MI and STTC co-occur; SBRAD records have rates below 60 bpm.
    """
    rng = np.random.default_rng(0)
    targets = np.zeros((num_records, len(CLASSES)), dtype=np.float32)
    for i in range(num_records):
        kind = i % 8
        if kind < 4:
            targets[i, 0] = 1  # NORM
        elif kind < 6:
            targets[i, [1, 2]] = 1  # MI + STTC
        elif kind == 6:
            targets[i, 2] = 1  # STTC
        else:
            targets[i, 3] = 1  # SBRAD
    age = rng.uniform(30, 80, num_records).round(0)
    sex = np.array(["M" if i % 3 else "F" for i in range(num_records)], dtype=object)
    heart_rate = np.where(targets[:, 3] > 0, rng.uniform(45, 58, num_records), rng.uniform(62, 95, num_records))
    return targets, {"age": age, "sex": sex, "heart_rate": heart_rate}


def small_plan(num_records: int = 40, seed: int = 0, strategy: str = "balance", **config) -> GenerationPlan:
    """A plan over :func:`real_labels` (balance: 20 + 20 + 15 ... synthetic jobs for 40 records)."""
    targets, patients = real_labels(num_records)
    sampler = PatientSampler(CLASSES, targets, **patients)
    return make_plan(targets, CLASSES, reports=FakeTemplater(), patients=sampler,
                     config=PlanConfig(strategy=strategy, seed=seed, **config))  # fmt: skip
