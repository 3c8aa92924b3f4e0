"""Shared test fixtures: tiny seeded DiffuSETS components and a deterministic text encoder."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ecgaug.models import ECGVAE, ConditionalUNet1D, UNetConfig, VAEConfig
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.schedulers import DEFAULT_SCHEDULER, make_scheduler, published_ddpm_scheduler
from ecgaug.text.encoders import TextEncoder

TINY_VAE = VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4)
TINY_UNET = UNetConfig(
    block_out_channels=(8, 16), kernel_size=3, num_heads=2, bottleneck_num_heads=2, bottleneck_attention_dim=8,
    text_embed_dim=16, time_hidden_dim=16, patient_missing_indicators=True, null_condition=True,
)


class HashTextEncoder(TextEncoder):
    """Deterministic embeddings from a hash of the text; counts the texts it embeds."""

    name = "hash:test"

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.calls: list[str] = []

    @property
    def embedding_dim(self) -> int:
        return self.dim

    def _encode(self, texts, show_progress=False):
        self.calls.extend(texts)
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little") for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]).astype(np.float32)


def make_tiny_pipeline(scheduler: str = DEFAULT_SCHEDULER, seed: int = 0, **unet_overrides) -> DiffuSETSPipeline:
    torch.manual_seed(seed)
    vae = ECGVAE(TINY_VAE)
    unet = ConditionalUNet1D(UNetConfig(**{**TINY_UNET.__dict__, **unet_overrides}))
    training = published_ddpm_scheduler(clip_sample=False).config
    return DiffuSETSPipeline(vae, unet, make_scheduler(scheduler, training), HashTextEncoder(),
                             training_scheduler_config=training, model_id="tiny-test",
                             info={"name": "tiny-test", "text_encoder": {"type": "hash"}})


@pytest.fixture(autouse=True, scope="session")
def single_torch_thread():
    """One intra-op thread: on a shared 2-core machine, busy-waiting OpenMP threads slow tests 10-40x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_pipeline() -> DiffuSETSPipeline:
    return make_tiny_pipeline()
