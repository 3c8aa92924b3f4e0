"""Seconds per ECG for the published-size DiffuSETS: DDPM with 1000 steps vs DPM-Solver++ with 25.

Random weights (timing does not depend on them), text embeddings given directly (both samplers
embed the same reports once). Whole pipeline: denoising loop + VAE decoding + conversion to
PTB-XL format (100 Hz). Also printed: the cost of one UNet step and of decoding per ECG (they set
the ratio: decoding is paid once by both samplers), and DPM-Solver++ with bfloat16 decoding on
the CPU (``pipe.cpu_decode_dtype``), which is fast where the CPU has bf16 matrix units (AMX).
Last line: ``speedup: X`` = DDPM-1000 time / DPM-Solver++-25 time, default (float32) pipeline.

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


def time_pipeline(pipe: DiffuSETSPipeline, scheduler: str, steps: int, batch_size: int, repeats: int) -> float:
    pipe.set_scheduler(scheduler)
    embeds = torch.randn(batch_size, pipe.unet.config.text_embed_dim, generator=torch.Generator().manual_seed(0))
    kwargs = dict(prompt_embeds=embeds, age=60.0, sex="F", heart_rate=75.0, num_inference_steps=steps, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(0), show_progress=False)
    pipe(**{**kwargs, "num_inference_steps": 2})  # warm-up (allocations, kernel selection)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(**kwargs)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best / batch_size


@torch.inference_mode()
def component_costs(pipe: DiffuSETSPipeline, batch_size: int, repeats: int = 3) -> tuple[float, float]:
    """Seconds per ECG of one UNet step and of one decoding."""
    cfg = pipe.unet.config
    latents = torch.randn(batch_size, cfg.in_channels, cfg.latent_length, device=pipe.device)
    embeds = torch.randn(batch_size, cfg.text_embed_dim, device=pipe.device)
    patient = torch.tensor([[1.0, 60.0, 70.0]] * batch_size, device=pipe.device)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if pipe.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return min(times) / batch_size

    return best(lambda: pipe.unet(latents, 500, embeds, patient)), best(lambda: pipe._decode(latents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--ddpm_steps", type=int, default=1000)
    parser.add_argument("--fast_steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per sampler (best is reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    training = published_ddpm_scheduler().config
    pipe = DiffuSETSPipeline(ECGVAE(), ConditionalUNet1D(), make_scheduler("ddpm", training), None,
                             training_scheduler_config=training, model_id="random-published-size").to(args.device)
    print(f"device: {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else platform.processor() or platform.machine()}), "
          f"threads: {torch.get_num_threads()}, torch {torch.__version__}, batch_size: {args.batch_size}")
    print(f"unet parameters: {pipe.unet.num_parameters / 1e6:.2f} M, vae decoder parameters: "
          f"{sum(p.numel() for p in pipe.vae.decoder.parameters()) / 1e6:.2f} M")
    step, decode = component_costs(pipe, args.batch_size)
    print(f"unet step: {step * 1000:.1f} ms/ECG, vae decoding: {decode * 1000:.1f} ms/ECG")
    if args.device == "cpu":
        pipe.cpu_decode_dtype = torch.bfloat16
        fast_bf16 = time_pipeline(pipe, "dpmsolver++", args.fast_steps, args.batch_size, args.repeats)
        print(f"dpmsolver++ x{args.fast_steps}, bfloat16 decoding: {fast_bf16:.3f} s/ECG "
              f"(decoding {component_costs(pipe, args.batch_size)[1] * 1000:.1f} ms/ECG)")
        slow_bf16 = time_pipeline(pipe, "ddpm", args.ddpm_steps, args.batch_size, 1)
        print(f"ddpm x{args.ddpm_steps}, bfloat16 decoding: {slow_bf16:.3f} s/ECG")
        print(f"speedup with bfloat16 decoding: {slow_bf16 / fast_bf16:.1f}")
        pipe.cpu_decode_dtype = torch.float32
    fast = time_pipeline(pipe, "dpmsolver++", args.fast_steps, args.batch_size, args.repeats)
    print(f"dpmsolver++ x{args.fast_steps}: {fast:.3f} s/ECG")
    slow = time_pipeline(pipe, "ddpm", args.ddpm_steps, args.batch_size, 1)
    print(f"ddpm x{args.ddpm_steps}: {slow:.3f} s/ECG")
    print(f"speedup: {slow / fast:.1f}")


if __name__ == "__main__":
    main()
