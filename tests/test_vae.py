"""The VAE's derived-limb-lead option (networks on I, II, V1-V6, the other four limb leads exact), its
one-row channels-last layout for decoding on CPUs (same numbers as the 1-D layout), and fused upsampling."""
import pytest
import torch

from ecgaug.models import ECGVAE
from ecgaug.models import vae as vae_module
from ecgaug.models.vae import VAEConfig
from ecgaug.signal import MODEL_LEADS, derive_limb_leads, limb_lead_residual

DERIVED = VAEConfig(in_channels=8, block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, derive_limb_leads=True)


def test_derived_vae_takes_and_returns_twelve_leads_that_obey_einthoven_and_goldberger():
    torch.manual_seed(0)
    vae = ECGVAE(DERIVED)
    x = torch.randn(3, 12, 1024)
    decoded = vae.decode(vae.encode(x).mode())
    assert decoded.shape == (3, 12, 1024) and vae.num_leads == 12
    assert limb_lead_residual(decoded).max() < 1e-5 < limb_lead_residual(x).min()
    lead = {name: decoded[:, MODEL_LEADS.index(name)] for name in MODEL_LEADS}
    torch.testing.assert_close(lead["III"], lead["II"] - lead["I"])
    torch.testing.assert_close(lead["aVF"], lead["II"] - lead["I"] / 2)


@torch.no_grad()
def test_derived_leads_stay_exact_when_decoding_runs_in_bfloat16():
    torch.manual_seed(0)
    vae = ECGVAE(DERIVED).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoded = vae.decode(torch.randn(2, DERIVED.latent_channels, 128))
    assert decoded.dtype == torch.float32 and limb_lead_residual(decoded).max() < 1e-6


def test_derived_vae_ignores_the_derived_input_leads():
    torch.manual_seed(0)
    vae = ECGVAE(DERIVED)
    x = torch.randn(2, 12, 1024)
    changed = x.clone()
    changed[:, [MODEL_LEADS.index(name) for name in ("III", "aVR", "aVL", "aVF")]] = 5.0
    torch.testing.assert_close(vae.encode(x).mean, vae.encode(changed).mean)


def test_derived_vae_needs_eight_input_channels_and_twelve_lead_ecgs():
    with pytest.raises(ValueError, match="in_channels=8"):
        ECGVAE(VAEConfig(in_channels=12, derive_limb_leads=True))
    with pytest.raises(ValueError, match=r"\(batch, 12, length\)"):
        ECGVAE(DERIVED).encode(torch.randn(1, 8, 1024))


def test_derive_limb_leads_from_any_order_of_source_leads():
    ptbxl = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    x = torch.randn(2, 12, 50)
    out = derive_limb_leads(x, source_leads=ptbxl, target_leads="ptbxl")
    torch.testing.assert_close(out[:, 4], x[:, 0] - x[:, 1] / 2)  # aVL = I - II/2
    torch.testing.assert_close(out[:, 6:], x[:, 6:])
    with pytest.raises(ValueError, match="needs leads I and II"):
        derive_limb_leads(x[:, 2:], source_leads=ptbxl[2:])


def _fused(upsample: vae_module.Upsample) -> vae_module.Upsample:
    upsample.fuse()
    return upsample


@pytest.mark.parametrize("make_layer", [
    lambda: vae_module.Conv1d(16, 32, 3, padding=1),
    lambda: vae_module.Conv1d(16, 16, 1),
    lambda: vae_module.Downsample(16),
    lambda: vae_module.Upsample(16),
    lambda: _fused(vae_module.Upsample(16)),
    lambda: vae_module.GroupNorm(4, 16),  # 4 channels per group: the one-row layout takes the sums path
    lambda: vae_module.SelfAttention(16),
    lambda: vae_module.ResidualBlock(16, 32, norm_num_groups=8),
])
def test_decoder_layers_give_the_same_numbers_on_one_row_channels_last_images(make_layer):
    torch.manual_seed(0)
    layer = make_layer().eval()
    x = torch.randn(3, 16, 24)
    image = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(layer(image).squeeze(2), layer(x), rtol=1e-5, atol=1e-5)


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # GroupNorm's unit weights and zero biases would hide mistakes
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def test_group_norm_sums_path_matches_pytorch_in_value_and_gradient(monkeypatch):
    torch.manual_seed(0)
    norm = _perturbed(vae_module.GroupNorm(8, 64))  # 8 channels per group, length under 1024: the sums path
    reference = torch.nn.GroupNorm(8, 64)
    reference.load_state_dict(norm.state_dict())
    x = (3.0 + 2.0 * torch.randn(2, 64, 1, 40)).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    expected = reference(x_ref)
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "group_norm", None)  # PyTorch's kernel must not run
        out = norm(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    (out * torch.arange(40.0)).sum().backward()
    (expected * torch.arange(40.0)).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = norm(x.detach().bfloat16().contiguous(memory_format=torch.channels_last))
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), expected.detach(), rtol=0.02, atol=0.05)


@torch.no_grad()
def test_fused_upsampling_decodes_the_same_stays_out_of_the_weights_and_follows_training_and_loading():
    torch.manual_seed(0)
    vae = _perturbed(ECGVAE(DERIVED)).eval()
    latents = torch.randn(2, DERIVED.latent_channels, 128)
    expected = vae.decode(latents)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    vae.fuse_upsampling()
    after = vae.state_dict()
    assert vae.fused and after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    fused = vae.decode(latents)
    assert not torch.equal(fused, expected)  # a different computation...
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)  # ...of the same function

    other = _perturbed(ECGVAE(DERIVED)).eval()
    vae.load_state_dict(other.state_dict())  # the fused weights follow the loaded ones
    torch.testing.assert_close(vae.decode(latents), other.decode(latents), rtol=1e-5, atol=1e-5)
    vae.train()
    assert not vae.fused and all(m.fused_weight is None for m in vae.modules() if isinstance(m, vae_module.Upsample))
