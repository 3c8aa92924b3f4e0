"""Sampling cost per ECG of the published-size DiffuSETS, by setting, at batch 4 and 8.

Random weights (timing does not depend on them), text embeddings given directly (every setting
embeds the same reports once). Printed:

1. Component costs per ECG at each batch size: one UNet step as built (layer by layer, the condition
   recomputed at every step, as the published loop does); with fused projections
   (:meth:`ConditionalUNet1D.fuse_projections`); fused and with the condition computed once per ECG
   (:meth:`ConditionalUNet1D.condition_embeddings`): the pipeline's step; the same under bf16 autocast;
   one VAE decoding in float32 and in bfloat16 (the pipeline's default on CPUs with native bf16,
   ``pipe.cpu_decode_dtype``), both with fused upsampling (:meth:`ECGVAE.fuse_upsampling`, the
   pipeline's), and in bfloat16 without it.
2. Per sampler setting: steps x the pipeline's UNet step + decoding at the pipeline's default precision.
3. The error of bfloat16 decoding on a *trained* model (the shipped ``ptbxl-base``): latents of 32
   generated ECGs decoded in float32 and in bfloat16, relative RMS difference and largest difference in mV.
4. Whole pipeline (denoising loop + decoding + conversion to PTB-XL format at 100 Hz), measured at
   ``--batch_size``: DDPM with 1000 steps (as published) and the package default (``GenerationSettings()``).

Last line: ``speedup: X`` = DDPM-1000 time / default time, same model, batch and precision.
The side-by-side comparison with the published code itself is ``benchmarks/bench_published.py``.

    python benchmarks/bench_sampling.py [--batch_size 8] [--device cuda]
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from ecgaug.models import ECGVAE, ConditionalUNet1D
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.schedulers import make_scheduler, published_ddpm_scheduler
from ecgaug.settings import DEFAULT_MODEL, GenerationSettings

SETTINGS = (("ddpm", 1000), ("dpmsolver++", 25), ("unipc", 12), ("sde-dpmsolver++", 15))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, device: torch.device, repeats: int, warm_up=None) -> float:
    """Best of ``repeats`` timed calls of ``fn``, after one call of ``warm_up`` (default ``fn``): allocations, kernel selection."""
    (warm_up or fn)()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def component_costs(pipe: DiffuSETSPipeline, batch_size: int, repeats: int) -> dict[str, float]:
    """Milliseconds per ECG of one UNet step (as built, fused, the pipeline's, its bf16) and of one decoding (float32, bfloat16)."""
    cfg, device = pipe.unet.config, pipe.device
    latents = torch.randn(batch_size, cfg.in_channels, cfg.latent_length, device=device)
    embeds = torch.randn(batch_size, cfg.text_embed_dim, device=device)
    patient = torch.tensor([[1.0, 60.0, 70.0]] * batch_size, device=device)
    timesteps = torch.full((batch_size,), 500, device=device)

    def per_ecg(fn, autocast_dtype=None) -> float:
        def run():
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                fn()
        return best_seconds(run, device, repeats) / batch_size * 1000

    step = lambda: pipe.unet(latents, timesteps, embeds, patient)  # noqa: E731
    decode = lambda: pipe.vae.decode(latents)  # noqa: E731
    pipe.unet.unfuse_projections()
    costs = {"unet_step_as_built": per_ecg(step)}
    pipe.unet.fuse_projections()
    costs["unet_step_fused"] = per_ecg(step)
    condition = pipe.unet.condition_embeddings(embeds, patient)
    pipeline_step = lambda: pipe.unet(latents, timesteps, condition_embeddings=condition)  # noqa: E731
    costs["unet_step_pipeline"] = per_ecg(pipeline_step)
    costs["unet_step_pipeline_bf16"] = per_ecg(pipeline_step, torch.bfloat16)
    costs["decode_float32"] = per_ecg(decode)
    costs["decode_bfloat16"] = per_ecg(decode, torch.bfloat16)
    pipe.vae.unfuse_upsampling()
    costs["decode_bfloat16_unfused"] = per_ecg(decode, torch.bfloat16)
    pipe.vae.fuse_upsampling()
    return costs


@torch.inference_mode()
def bf16_decoding_error(device: str, num_ecgs: int = 32) -> tuple[float, float]:
    """Relative RMS and largest absolute difference (mV) between float32 and bfloat16 decoding on the shipped model."""
    pipe = DiffuSETSPipeline.from_pretrained(DEFAULT_MODEL, device=device)
    reports = ["sinus rhythm. normal ecg", "atrial fibrillation", "sinus rhythm. left bundle branch block", "sinus bradycardia"]
    latents = pipe([reports[i % len(reports)] for i in range(num_ecgs)], 60.0, "M", 70.0, generator=torch.Generator().manual_seed(0),
                   show_progress=False).latents.to(device)
    full = pipe.vae.decode(latents).float()
    with torch.autocast(pipe.device.type, dtype=torch.bfloat16):
        fast = pipe.vae.decode(latents).float()
    return float((fast - full).pow(2).mean().sqrt() / full.pow(2).mean().sqrt()), float((fast - full).abs().max())


def time_pipeline(pipe: DiffuSETSPipeline, scheduler: str, steps: int, batch_size: int, repeats: int) -> float:
    """Seconds per ECG of the whole pipeline."""
    pipe.set_scheduler(scheduler)
    embeds = torch.randn(batch_size, pipe.unet.config.text_embed_dim, generator=torch.Generator().manual_seed(0))
    kwargs = dict(prompt_embeds=embeds, age=60.0, sex="F", heart_rate=75.0, num_inference_steps=steps, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(0), show_progress=False)
    warm_up = lambda: pipe(**{**kwargs, "num_inference_steps": 2})  # noqa: E731  (not a whole DDPM-1000 run)
    return best_seconds(lambda: pipe(**kwargs), pipe.device, repeats, warm_up) / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8, help="batch of the whole-pipeline runs (default 8)")
    parser.add_argument("--component_batch_sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--ddpm_steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="timed whole-pipeline runs per setting (best is reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no_progress", action="store_true", help="accepted for uniformity (no bars are shown)")
    args = parser.parse_args()

    torch.manual_seed(0)
    training = published_ddpm_scheduler().config
    default = GenerationSettings()
    pipe = DiffuSETSPipeline(ECGVAE(), ConditionalUNet1D(), make_scheduler(default.scheduler, training), None,
                             training_scheduler_config=training, model_id="random-published-size").to(args.device)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {args.device} ({device_name}), threads: {torch.get_num_threads()}, torch {torch.__version__}, precision: {pipe.precision}")
    print(f"unet parameters: {pipe.unet.num_parameters / 1e6:.2f} M, vae decoder parameters: "
          f"{sum(p.numel() for p in pipe.vae.decoder.parameters()) / 1e6:.2f} M")
    print(f"default: {default.sampler_name} x{default.num_inference_steps}")

    costs = {batch: component_costs(pipe, batch, repeats=5) for batch in args.component_batch_sizes}
    print("\n| batch | UNet step as built | fused | fused, condition once (pipeline) | pipeline, bf16 | decoding float32 | decoding bfloat16 "
          "| bfloat16, upsampling unfused |  (ms per ECG)")
    print("|---|---|---|---|---|---|---|---|")
    for batch, c in costs.items():
        print(f"| {batch} | {c['unet_step_as_built']:.2f} | {c['unet_step_fused']:.2f} | {c['unet_step_pipeline']:.2f} | "
              f"{c['unet_step_pipeline_bf16']:.2f} | {c['decode_float32']:.1f} | {c['decode_bfloat16']:.1f} | {c['decode_bfloat16_unfused']:.1f} |")

    decode_key = "decode_bfloat16" if pipe.precision != "cpu-float32" else "decode_float32"
    print("\n| setting | " + " | ".join(f"batch {b}: UNet + decoding = ms/ECG" for b in costs) + " |")
    print("|---|" + "---|" * len(costs))
    settings = list(dict.fromkeys([*SETTINGS, (default.sampler_name, default.num_inference_steps)]))
    for scheduler, steps in settings:
        cells = [f"{steps * c['unet_step_pipeline']:.0f} + {c[decode_key]:.0f} = {steps * c['unet_step_pipeline'] + c[decode_key]:.0f}"
                 for c in costs.values()]
        print(f"| {scheduler} x{steps} | " + " | ".join(cells) + " |")

    relative, largest = bf16_decoding_error(args.device)
    print(f"\nbfloat16 decoding on {DEFAULT_MODEL} (32 generated ECGs): relative RMS difference {relative:.2%}, largest {largest:.3f} mV")

    print(f"\nwhole pipeline, batch {args.batch_size}:")
    fast = time_pipeline(pipe, default.sampler_name, default.num_inference_steps, args.batch_size, args.repeats)
    print(f"{default.sampler_name} x{default.num_inference_steps} (default): {fast * 1000:.1f} ms/ECG, {1 / fast:.0f} ECGs/s")
    slow = time_pipeline(pipe, "ddpm", args.ddpm_steps, args.batch_size, 1)
    print(f"ddpm x{args.ddpm_steps}: {slow * 1000:.0f} ms/ECG")
    print(f"speedup: {slow / fast:.1f}")


if __name__ == "__main__":
    main()
