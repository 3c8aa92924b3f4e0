"""Real-guided generation: ``init_ecgs`` + ``strength``, as diffusers' img2img."""
import dataclasses

import numpy as np
import pytest
import torch

from ecgaug.signal import reorder_leads, resample

REPORTS = ["sinus rhythm", "atrial fibrillation"]
PATIENTS = dict(age=[60, 70], sex=["M", "F"], heart_rate=[70, 110])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def seeds(tiny_pipeline):
    """Two ECGs the tiny VAE can represent (decoded from latents), as a user passes real ones: (2, 12, 1000), PTB-XL order.

    The VAE's latents are then scaled to unit variance, as training calibrates them, so that the
    noise of a strength is measured against a latent of the size the UNet is trained on.
    """
    ecgs = tiny_pipeline.generate(REPORTS, **PATIENTS, num_inference_steps=2, generator=gen(9))
    vae = tiny_pipeline.vae
    with torch.no_grad():
        means = vae.encode(reorder_leads(resample(ecgs, 1024), "ptbxl", "model")).mean
    vae.config = dataclasses.replace(vae.config, scaling_factor=float(1 / means.std()), shift_factor=tuple(means.mean((0, 2)).tolist()))
    return ecgs


def correlation(a, b):
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()


def test_small_strength_stays_closer_to_the_seed_than_pure_noise(tiny_pipeline, seeds):
    # The tiny VAE is untrained, so "the seed" is what the model makes of it: its latent and that latent decoded.
    seed_latents = tiny_pipeline.encode_ecgs(seeds)
    seed_as_decoded = resample(reorder_leads(tiny_pipeline.vae.decode(seed_latents), "model", "ptbxl"), 1000)
    kwargs = dict(init_ecgs=seeds, num_inference_steps=20, show_progress=False)
    close = tiny_pipeline(REPORTS, **PATIENTS, **kwargs, strength=0.1, generator=gen(1))
    from_noise = tiny_pipeline(REPORTS, **PATIENTS, **kwargs, strength=1.0, generator=gen(1))
    assert close.ecgs.shape == from_noise.ecgs.shape == (2, 12, 1000)
    assert correlation(close.latents, seed_latents) > 0.7 > correlation(from_noise.latents, seed_latents) + 0.5  # measured 0.80, 0.01
    assert correlation(close.ecgs, seed_as_decoded) > correlation(from_noise.ecgs, seed_as_decoded) + 0.4  # measured 0.85, 0.16


@pytest.mark.parametrize("scheduler", ["dpmsolver++", "ddim", "ddpm"])
def test_strength_runs_the_last_part_of_the_schedule(tiny_pipeline, seeds, scheduler):
    tiny_pipeline.set_scheduler(scheduler)
    calls = []
    forward = tiny_pipeline.unet.forward
    tiny_pipeline.unet.forward = lambda x, t, *a, **k: calls.append(int(t)) or forward(x, t, *a, **k)
    tiny_pipeline.generate(REPORTS, **PATIENTS, init_ecgs=seeds, strength=0.3, num_inference_steps=10, generator=gen())
    tiny_pipeline.scheduler.set_timesteps(10)
    assert calls == tiny_pipeline.scheduler.timesteps[-3:].tolist()  # int(10 * 0.3) = 3 steps, the last ones


def test_strength_one_is_pure_noise_generation(tiny_pipeline, seeds):
    plain = tiny_pipeline.generate(REPORTS, **PATIENTS, num_inference_steps=4, generator=gen(3))
    seeded = tiny_pipeline.generate(REPORTS, **PATIENTS, num_inference_steps=4, generator=gen(3), init_ecgs=seeds, strength=1.0)
    torch.testing.assert_close(plain, seeded)


def test_seeded_generation_is_deterministic_and_batch_independent(tiny_pipeline, seeds):
    kwargs = dict(init_ecgs=seeds, strength=0.5, num_inference_steps=6, num_samples=2)
    a = tiny_pipeline.generate(REPORTS, **PATIENTS, **kwargs, generator=gen(4))
    b = tiny_pipeline.generate(REPORTS, **PATIENTS, **kwargs, generator=gen(4))
    c = tiny_pipeline.generate(REPORTS, **PATIENTS, **kwargs, generator=gen(5))
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 12, 1000) and not torch.allclose(a, c)
    per_ecg = lambda: [gen(s) for s in range(4)]  # noqa: E731
    whole = tiny_pipeline.generate(REPORTS, **PATIENTS, **kwargs, generator=per_ecg())
    one_by_one = tiny_pipeline.generate(REPORTS, **PATIENTS, **kwargs, generator=per_ecg(), batch_size=1)
    torch.testing.assert_close(whole, one_by_one, rtol=1e-4, atol=1e-5)


def test_seeds_are_read_in_the_callers_lead_order_and_rate(tiny_pipeline, seeds):
    native = reorder_leads(resample(seeds, 1024), "ptbxl", "model")  # the same ECGs, model order at 102.4 Hz
    kwargs = dict(strength=0.4, num_inference_steps=5, generator=gen(6))
    a = tiny_pipeline.generate(REPORTS, **PATIENTS, init_ecgs=seeds, **kwargs)
    b = tiny_pipeline.generate(REPORTS, **PATIENTS, init_ecgs=native.numpy(), lead_order="model", sampling_rate=102.4,
                               **{**kwargs, "generator": gen(6)})
    torch.testing.assert_close(a, resample(reorder_leads(b, "model", "ptbxl"), 1000), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("init, kwargs, match", [
    (np.zeros((2, 12, 5000)), {}, r"shape \(num_ecgs, 12, 1000\): 10 s at 100 Hz in mV, leads in the order I, II, III, aVR, aVL, aVF"),
    (np.zeros((2, 8, 1000)), {}, r"shape \(num_ecgs, 12, 1000\)"),
    (np.zeros((12, 1000)), {}, "one seed ECG per report"),
    (np.zeros((3, 12, 1000)), {}, r"one seed ECG per report \(2\)"),
    (np.full((2, 12, 1000), np.nan), {}, "finite"),
    (np.zeros((2, 12, 1000)), {"lead_order": ["I", "II"]}, "need all 12 leads"),
    (np.zeros((2, 12, 1000)), {"strength": 0.0}, r"strength should be in \(0, 1\]"),
    (np.zeros((2, 12, 1000)), {"strength": 0.05, "num_inference_steps": 10}, "leaves no denoising step"),
    (None, {"strength": 0.5}, "needs init_ecgs"),
])
def test_bad_seed_ecgs_are_refused_naming_the_expected_format(tiny_pipeline, init, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipeline.generate(REPORTS, **PATIENTS, init_ecgs=init, **{"strength": 0.5, "num_inference_steps": 4, **kwargs})
