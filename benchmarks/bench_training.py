"""Training speed of the VAE and the UNet on this machine, per option: steps/s and ECGs/s.

Options measured (one training step = forward, backward, AdamW step, as ``ecgaug train`` runs it):
float32 vs bf16 autocast, batch size, torch threads per process, and ``torch.compile``. Options are
interleaved round by round (each round times every option once; the best round counts), so a
neighbour's load on the shared cores hits all options alike. Random data and weights: speed does
not depend on them. A 2-process DDP run is one process per core at the per-process figures below
(the gradient all-reduce of these small models is cheap against a step), so its ECGs/s is about
twice the 1-thread figure on an idle 2-core machine.

    python benchmarks/bench_training.py [--size base] [--rounds 3] [--steps 3] [--compile]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import time

import torch
import torch.nn.functional as F

from ecgaug.models import ECGVAE, ConditionalUNet1D
from ecgaug.training.stages import MODEL_SIZES


def vae_step_fn(size: str, batch_size: int):
    config = MODEL_SIZES[size][0]
    model = ECGVAE(config)
    x = torch.randn(batch_size, 12, config.num_samples)

    def loss():
        recon, posterior = model(x)
        return F.mse_loss(recon.float(), x) + 1e-4 * posterior.kl().mean()

    return model, loss


def unet_step_fn(size: str, batch_size: int):
    vae_config, unet_config = MODEL_SIZES[size]
    config = dataclasses.replace(unet_config, text_embed_dim=384, in_channels=vae_config.latent_channels, latent_length=vae_config.latent_length)
    model = ConditionalUNet1D(config)
    x = torch.randn(batch_size, config.in_channels, config.latent_length)
    embeds, patient, t = torch.randn(batch_size, 384), torch.randn(batch_size, 3), torch.randint(0, 1000, (batch_size,))

    def loss():
        return F.mse_loss(model(x, t, embeds, patient).float(), x)

    return model, loss


def make_option(stage: str, size: str, batch_size: int, bf16: bool, compiled: bool):
    model, loss_fn = (vae_step_fn if stage == "vae" else unet_step_fn)(size, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if compiled:
        model.forward = torch.compile(model.forward)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (and compilation)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=sorted(MODEL_SIZES))
    parser.add_argument("--batch_sizes", default="32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps timed per option and round")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    args = parser.parse_args()

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"native bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, size {args.size}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    options = [dict(stage=stage, batch_size=b, bf16=bf16, compiled=compiled, threads=n)
               for stage, b, bf16, compiled, n in itertools.product(("vae", "unet"), batch_sizes, (False, True),
                                                                     (False, True) if args.compile else (False,), threads)]
    steps = {}
    for option in options:
        torch.set_num_threads(option["threads"])
        steps[id(option)] = make_option(option["stage"], args.size, option["batch_size"], option["bf16"], option["compiled"])
    best = {id(option): float("inf") for option in options}
    for _ in range(args.rounds):
        for option in options:
            torch.set_num_threads(option["threads"])
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[id(option)]()
            best[id(option)] = min(best[id(option)], (time.perf_counter() - start) / args.steps)

    print("| stage | batch | precision | compile | threads | steps/s | ECGs/s |")
    print("|---|---|---|---|---|---|---|")
    for option in options:
        seconds = best[id(option)]
        print(f"| {option['stage']} | {option['batch_size']} | {'bf16' if option['bf16'] else 'fp32'} | "
              f"{'yes' if option['compiled'] else 'no'} | {option['threads']} | {1 / seconds:.2f} | {option['batch_size'] / seconds:.0f} |")


if __name__ == "__main__":
    main()
