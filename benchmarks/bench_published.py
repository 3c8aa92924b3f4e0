"""Seconds per ECG on the CPU: the published DiffuSETS code against ecgaug's ``DiffuSETSPipeline``.

Both sides run the same published-size weights (random, under a fixed seed: timing does not
depend on them) on the same batch, with the same text embeddings and patient information
(female, 60 years, 75 bpm):

* published: the authors' own modules (``unet/unet_conditional.py``: ``ECGconditional``,
  ``vae/vae_model.py``: ``VAE_Decoder``), imported at run time from ``--published_code``, and
  their sampling loop (``utils/inference.py``: ``generation_from_net``; an equivalent loop when
  that module's imports are missing here): DDPM over ``--published_steps`` (1000, as published),
  then one decoding. The published script decodes with autograd enabled; that is timed as
  published, and again under ``torch.no_grad()``.
* ecgaug: ``DiffuSETSPipeline`` with the package defaults (sampler and steps of
  ``GenerationSettings()``), including the conversion to PTB-XL format at 100 Hz.

Before timing, the published weights are converted into ecgaug's modules (``ecgaug.models.convert``)
and both UNets and both decoders are checked to give the same outputs on random inputs.
Runs are interleaved (published, then ecgaug, ``--repeats`` times per batch size) after a
short warm-up; the best (smallest) time of each is reported. The last lines are
``published_speedup_batch{B}: X``: the faster published variant divided by ecgaug.

Get the published code with ``git clone https://github.com/PKUDigitalHealth/DiffuSETS``, then:

    OMP_NUM_THREADS=1 python benchmarks/bench_published.py --published_code DiffuSETS [--batch_sizes 4 8] [--repeats 2]
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import diffusers
import torch

from ecgaug.models import ECGVAE, ConditionalUNet1D
from ecgaug.models.convert import convert_unet_state_dict, convert_vae_state_dict, unet_config_from_upstream
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.schedulers import make_scheduler, published_ddpm_scheduler
from ecgaug.settings import GenerationSettings

TEXT_EMBED_DIM = 1536
LATENT_SHAPE = (4, 128)  # published latent: channels, length
AGE, SEX, HEART_RATE = 60.0, "F", 75.0
TOLERANCE = 1e-4  # largest allowed |ours - published| / max |published|


@dataclass
class Published:
    """The published networks and sampling loop ``sample(scheduler, net, batch_size, device, text_embed, condition)``."""

    unet: torch.nn.Module
    encoder: torch.nn.Module
    decoder: torch.nn.Module
    sample: Callable[..., torch.Tensor]
    loop_source: str


def _import(root: Path, name: str) -> ModuleType:
    module = importlib.import_module(name)
    if not Path(module.__file__).resolve().is_relative_to(root):
        raise SystemExit(f"{name} was imported from {module.__file__}, not from the published code at {root}.")
    return module


def _equivalent_loop(scheduler, net, batch_size, device, text_embed, condition) -> torch.Tensor:
    """The published DDPM loop: noise, then one UNet call (no autograd) and one scheduler step per timestep."""
    latents = torch.randn(batch_size, *LATENT_SHAPE).to(device)
    for t in scheduler.timesteps:
        with torch.no_grad():
            noise_pred = net(latents, torch.full((batch_size,), int(t), dtype=torch.long), text_embed, condition)
        latents = scheduler.step(model_output=noise_pred, timestep=t, sample=latents)["prev_sample"]
    return latents


def load_published(path: str, seed: int) -> Published:
    """Import the published modules from ``path`` and build them, published size, with random weights."""
    root = Path(path).resolve()
    if not (root / "unet" / "unet_conditional.py").is_file() or not (root / "vae" / "vae_model.py").is_file():
        raise SystemExit(f"{root} does not hold the published DiffuSETS code (unet/unet_conditional.py, vae/vae_model.py); "
                         "get it with: git clone https://github.com/PKUDigitalHealth/DiffuSETS")
    sys.path.insert(0, str(root))
    unet_module, vae_module = _import(root, "unet.unet_conditional"), _import(root, "vae.vae_model")
    try:
        inference = _import(root, "utils.inference")
        inference.tqdm = lambda iterable, **_: iterable  # their loop's progress bar, silenced
        sample, source = inference.generation_from_net, "published utils/inference.py: generation_from_net"
    except ImportError as error:
        sample, source = _equivalent_loop, f"equivalent loop (utils/inference.py not importable here: {error})"
    torch.manual_seed(seed)
    unet = unet_module.ECGconditional(number_of_diffusions=1000, kernel_size=7, num_levels=7, n_channels=4,
                                      text_embed_dim=TEXT_EMBED_DIM)
    return Published(unet.eval(), vae_module.VAE_Encoder().eval(), vae_module.VAE_Decoder().eval(), sample, source)


def ecgaug_pipeline(published: Published) -> DiffuSETSPipeline:
    """ecgaug's pipeline holding the published weights, converted and loaded strictly; default sampler."""
    state = published.unet.state_dict()
    unet = ConditionalUNet1D(unet_config_from_upstream(state))
    unet.load_state_dict(convert_unet_state_dict(state), strict=True)
    vae = ECGVAE()
    vae.load_state_dict(convert_vae_state_dict({"encoder": published.encoder.state_dict(),
                                                "decoder": published.decoder.state_dict()}), strict=True)
    training = published_ddpm_scheduler().config
    return DiffuSETSPipeline(vae, unet, make_scheduler(GenerationSettings().scheduler, training), None,
                             training_scheduler_config=training, model_id="published-size")


def published_condition(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Patient features ``(B, 3)`` (sex is male, age, heart rate) as the published UNet takes them."""
    return {name: features[:, i].reshape(-1, 1, 1) for i, name in enumerate(("sex", "age", "heart rate"))}


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@torch.no_grad()
def check_equivalence(published: Published, pipe: DiffuSETSPipeline, batch_size: int = 4) -> tuple[float, float]:
    """Relative errors of ecgaug's UNet and decoder against the published ones; exits when above TOLERANCE."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(batch_size, *LATENT_SHAPE, generator=g)
    timesteps = torch.randint(0, 1000, (batch_size,), generator=g)
    embeds = torch.randn(batch_size, TEXT_EMBED_DIM, generator=g)
    features = torch.stack([torch.randint(0, 2, (batch_size,), generator=g).float(),
                            20 + 70 * torch.rand(batch_size, generator=g),
                            50 + 70 * torch.rand(batch_size, generator=g)], dim=1)
    unet_error = _relative_error(pipe.unet(latents, timesteps, embeds, features),
                                 published.unet(latents, timesteps, embeds[:, None, :], published_condition(features)))
    # The published decoder divides its input in place and returns (B, L, 12); ours returns (B, 12, L).
    decoder_error = _relative_error(pipe.vae.decode(latents), published.decoder(latents.clone()).transpose(1, 2))
    if max(unet_error, decoder_error) > TOLERANCE:
        raise SystemExit(f"ecgaug does not reproduce the published networks (UNet relative error {unet_error:.1e}, "
                         f"decoder {decoder_error:.1e}, tolerance {TOLERANCE:.0e}): the timings would not compare the same model.")
    return unet_error, decoder_error


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_published(published: Published, embeds: torch.Tensor, steps: int) -> tuple[float, float, float]:
    """Seconds of the sampling loop, of decoding as published (autograd on) and of decoding under no_grad."""
    batch_size = embeds.shape[0]
    features = torch.tensor([[1.0 if SEX == "M" else 0.0, AGE, HEART_RATE]] * batch_size)
    scheduler = published_ddpm_scheduler()
    scheduler.set_timesteps(steps)
    latents = []
    loop = _timed(lambda: latents.append(published.sample(scheduler, published.unet, batch_size, "cpu",
                                                          embeds[:, None, :], published_condition(features))))
    latent = latents[0]
    decode = _timed(lambda: published.decoder(latent.clone()))  # clone: the decoder divides its input in place
    with torch.no_grad():
        decode_no_grad = _timed(lambda: published.decoder(latent.clone()))
    return loop, decode, decode_no_grad


def time_ecgaug(pipe: DiffuSETSPipeline, embeds: torch.Tensor, **overrides) -> float:
    """Seconds of one pipeline call with the package defaults (sampler, steps)."""
    kwargs = dict(prompt_embeds=embeds, age=AGE, sex=SEX, heart_rate=HEART_RATE, batch_size=embeds.shape[0],
                  generator=torch.Generator().manual_seed(0), show_progress=False)
    return _timed(lambda: pipe(**kwargs, **overrides))


def benchmark_batch(published: Published, pipe: DiffuSETSPipeline, batch_size: int, steps: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Best seconds per ECG of each variant: (total, of which decoding; NaN where not measured apart)."""
    embeds = torch.randn(batch_size, TEXT_EMBED_DIM, generator=torch.Generator().manual_seed(0))
    time_published(published, embeds, 2)  # warm-up (allocations, kernel selection) of both sides
    time_ecgaug(pipe, embeds, num_inference_steps=2)
    runs: dict[str, list[tuple[float, float]]] = {"published": [], "published_no_grad": [], "ecgaug": []}
    for _ in range(repeats):
        loop, decode, decode_no_grad = time_published(published, embeds, steps)
        runs["published"].append((loop + decode, decode))
        runs["published_no_grad"].append((loop + decode_no_grad, decode_no_grad))
        runs["ecgaug"].append((time_ecgaug(pipe, embeds), float("nan")))
    return {name: tuple(s / batch_size for s in min(times)) for name, times in runs.items()}


def print_table(best: dict[str, tuple[float, float]], batch_size: int, repeats: int, labels: dict[str, str]) -> None:
    width = max(map(len, labels.values()))
    print(f"\n{f'batch {batch_size} (best of {repeats})':<{width}}    s/ECG  decoding s/ECG")
    for name, (total, decode) in best.items():
        decoding = "" if decode != decode else f"{decode:15.3f}"  # NaN: not measured apart
        print(f"{labels[name]:<{width}}  {total:7.3f}{decoding}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published_code", required=True, help="checkout of github.com/PKUDigitalHealth/DiffuSETS")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side and batch size (best is reported)")
    parser.add_argument("--published_steps", type=int, default=1000, help="DDPM steps of the published loop (1000 as published)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random weights")
    parser.add_argument("--no_progress", action="store_true", help="accepted; no progress bars are shown")
    args = parser.parse_args()

    published = load_published(args.published_code, args.seed)
    pipe = ecgaug_pipeline(published)
    settings = GenerationSettings()
    print(f"device: cpu ({platform.processor() or platform.machine()}), threads: {torch.get_num_threads()}, "
          f"torch {torch.__version__}, diffusers {diffusers.__version__}")
    print(f"published code: {Path(args.published_code).resolve()}; sampling loop: {published.loop_source}")
    count = lambda module: sum(p.numel() for p in module.parameters()) / 1e6  # noqa: E731
    print(f"unet parameters: published {count(published.unet):.2f} M, ecgaug {count(pipe.unet):.2f} M "
          "(published also counts its fixed time tables and weights its forward never uses)")
    print(f"vae decoder parameters: published {count(published.decoder):.2f} M, ecgaug {count(pipe.vae.decoder):.2f} M")
    unet_error, decoder_error = check_equivalence(published, pipe)
    print(f"equivalence (max |ecgaug - published| / max |published|): unet {unet_error:.1e}, decoder {decoder_error:.1e}")
    print(f"ecgaug default sampler: {settings.sampler_name} x{settings.num_inference_steps} (pipeline: {pipe.sampler_name})")

    labels = {"published": f"published (ddpm x{args.published_steps}, decoding as published: autograd on)",
              "published_no_grad": f"published (ddpm x{args.published_steps}, decoding under no_grad)",
              "ecgaug": f"ecgaug default ({settings.sampler_name} x{settings.num_inference_steps}, PTB-XL 100 Hz)"}
    speedups = {}
    for batch_size in args.batch_sizes:
        best = benchmark_batch(published, pipe, batch_size, args.published_steps, args.repeats)
        print_table(best, batch_size, args.repeats, labels)
        speedups[batch_size] = min(best["published"][0], best["published_no_grad"][0]) / best["ecgaug"][0]
    print()
    for batch_size, speedup in speedups.items():
        print(f"published_speedup_batch{batch_size}: {speedup:.1f}")


if __name__ == "__main__":
    main()
