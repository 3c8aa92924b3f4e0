"""The rebuilt DiffuSETS matches the published architecture's outputs (upstream_golden.npz).

The published layout (upstream_layout.json) is filled deterministically as described in
shared/diffusets/README.md, converted with ecgaug.models.convert, and run in eval mode on the
CPU in float32. Matching every golden array to 1e-4 relative is how we know the real weights
will load and run correctly.
"""
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgaug.models.convert import (
    convert_unet_state_dict,
    convert_vae_state_dict,
    load_upstream_unet,
    load_upstream_vae,
    unet_config_from_upstream,
)
from ecgaug.models.unet import ConditionalUNet1D, sinusoidal_time_table
from ecgaug.models.vae import ECGVAE

DATA = Path(__file__).parent / "data"


def fill(name: str, shape: list[int]) -> torch.Tensor:
    if name.endswith("time_emb.embeddings"):
        return sinusoidal_time_table(*shape)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
    r = torch.randn(shape, dtype=torch.float64, generator=generator)
    if len(shape) >= 2:
        value = r / math.sqrt(math.prod(shape[1:]))
    elif name.endswith("weight"):
        value = 1 + 0.1 * r
    else:
        value = 0.1 * r
    return value.float()


@pytest.fixture(scope="module")
def layout():
    return json.loads((DATA / "upstream_layout.json").read_text())


@pytest.fixture(scope="module")
def golden():
    with np.load(DATA / "upstream_golden.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def upstream_files(layout, tmp_path_factory):
    """The filled layout saved as the published files are (vae_model.pth, unet_all.pth)."""
    root = tmp_path_factory.mktemp("upstream")
    vae = {part: {k: fill(k, v) for k, v in layout[f"vae_{part}"].items()} for part in ("encoder", "decoder")}
    unet = {k: fill(k, v) for k, v in layout["unet_conditional_k7_l7_c4_t1000"].items()}
    torch.save(vae, root / "vae_model.pth")
    torch.save(unet, root / "unet_all.pth")
    return root


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max().item()
    np.testing.assert_allclose(actual.detach().numpy(), expected.numpy(), rtol=1e-4, atol=1e-4 * scale)


def test_every_published_entry_is_used_or_knowingly_dropped(layout):
    vae = {part: {k: torch.zeros(v) for k, v in layout[f"vae_{part}"].items()} for part in ("encoder", "decoder")}
    converted = convert_vae_state_dict(vae)
    assert set(converted) == set(ECGVAE().state_dict())
    unet_layout = {k: torch.zeros(v) for k, v in layout["unet_conditional_k7_l7_c4_t1000"].items()}
    model = ConditionalUNet1D(unet_config_from_upstream(unet_layout))
    assert set(convert_unet_state_dict(unet_layout)) == set(model.state_dict())


def test_published_unet_config_is_inferred(layout):
    config = unet_config_from_upstream({k: torch.zeros(v) for k, v in layout["unet_conditional_k7_l7_c4_t1000"].items()})
    assert config.kernel_size == 7 and config.in_channels == 4 and config.text_embed_dim == 1536
    assert config.num_train_timesteps == 1000 and len(config.block_out_channels) + 1 == 7  # 7 levels: 6 down + bottleneck


def test_vae_encoder_matches_golden(upstream_files, golden):
    vae = load_upstream_vae(upstream_files / "vae_model.pth")
    with torch.no_grad():
        posterior = vae.encode(golden["x_ecg"].transpose(1, 2))  # published VAE input is (B, 1024, 12)
        latent = posterior.sample(noise=golden["enc_noise"])
    assert_close(posterior.mean, golden["enc_mean"])
    assert_close(posterior.logvar, golden["enc_logvar"])
    assert_close(latent, golden["enc_latent"])


def test_vae_decoder_matches_golden(upstream_files, golden):
    vae = load_upstream_vae(upstream_files / "vae_model.pth")
    with torch.no_grad():
        out = vae.decode(golden["z"]).transpose(1, 2)
    assert_close(out, golden["dec_out"])


def test_unet_matches_golden(upstream_files, golden):
    unet = load_upstream_unet(upstream_files / "unet_all.pth")
    patient = torch.stack([golden["gender"], golden["age"], golden["hr"]], dim=1)
    with torch.no_grad():
        out = unet(golden["x_lat"], golden["t"], golden["text"][:, 0], patient)
    assert_close(out, golden["unet_out"])


def test_wrong_file_is_refused_with_its_name(tmp_path, upstream_files):
    torch.save({"encoder": {}, "decoder": {}}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="empty.pth"):
        load_upstream_vae(tmp_path / "empty.pth")
    with pytest.raises((ValueError, KeyError), match="vae_model.pth"):
        load_upstream_unet(upstream_files / "vae_model.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_upstream_unet(tmp_path / "junk.pth")


def test_truncated_layout_is_refused(upstream_files, tmp_path):
    state = torch.load(upstream_files / "unet_all.pth", weights_only=True)
    state.pop("output_conv.2.bias")
    torch.save(state, tmp_path / "unet_all.pth")
    with pytest.raises(ValueError, match="missing"):
        load_upstream_unet(tmp_path / "unet_all.pth")
