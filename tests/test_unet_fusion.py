"""ConditionalUNet1D.fuse_projections: the same function, faster; never in the weights, undone by training."""
import pytest
import torch

from ecgaug.models import ConditionalUNet1D, UNetConfig

from conftest import TINY_UNET


def _inputs(unet: ConditionalUNet1D, batch: int = 3):
    cfg = unet.config
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, cfg.in_channels, cfg.latent_length, generator=g)
    embeds = torch.randn(batch, cfg.text_embed_dim, generator=g)
    patient = torch.tensor([[1.0, 60.0, 70.0], [0.0, 30.0, float("nan")], [1.0, 80.0, 120.0]])[:batch]
    return sample, torch.tensor([0, 417, 999])[:batch], embeds, patient


def _tiny(seed: int = 0) -> ConditionalUNet1D:
    torch.manual_seed(seed)
    unet = ConditionalUNet1D(UNetConfig(**{**TINY_UNET.__dict__, "patient_missing_indicators": True, "null_condition": True}))
    with torch.no_grad():  # zero-initialised parts (e.g. the null embedding) would hide mistakes
        for p in unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return unet.eval()


@torch.no_grad()
def test_fused_unet_computes_the_same_function():
    unet = _tiny()
    sample, t, embeds, patient = _inputs(unet)
    drop = torch.tensor([False, True, False])
    expected = unet(sample, t, embeds, patient, drop_condition=drop)
    unet.fuse_projections()
    fused = unet(sample, t, embeds, patient, drop_condition=drop)
    assert unet.fused and not torch.equal(fused, expected)  # a different computation...
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)  # ...of the same function


def test_fused_weights_stay_out_of_the_state_dict():
    unet = _tiny()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    unet.fuse_projections()
    after = unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


@torch.no_grad()
def test_training_unfuses_and_loading_weights_refuses():
    unet = _tiny().fuse_projections()
    unet.train()
    assert not unet.fused and unet.down_blocks[0].block.self_attention.fused_qkv_weight is None

    other = _tiny(seed=1)
    sample, t, embeds, patient = _inputs(other)
    expected = other(sample, t, embeds, patient)
    unet.eval().fuse_projections()
    unet.load_state_dict(other.state_dict())  # the fused weights follow the loaded ones
    torch.testing.assert_close(unet(sample, t, embeds, patient), expected, rtol=1e-5, atol=1e-6)


def test_gradients_flow_in_training_mode_after_fusing():
    unet = _tiny().fuse_projections().train()
    sample, t, embeds, patient = _inputs(unet)
    unet(sample, t, embeds, patient).square().mean().backward()
    assert unet.down_blocks[0].block.self_attention.to_q.weight.grad is not None


@torch.no_grad()
def test_condition_embeddings_computed_once_give_the_same_steps():
    unet = _tiny().fuse_projections()
    sample, t, embeds, patient = _inputs(unet)
    drop = torch.tensor([False, True, False])
    once = unet.condition_embeddings(embeds, patient, drop)
    assert len(once) == len(unet.down_blocks) + 1 + len(unet.up_blocks)
    torch.testing.assert_close(unet(sample, t, condition_embeddings=once), unet(sample, t, embeds, patient, drop_condition=drop))
    with pytest.raises(ValueError, match="condition_embeddings"):
        unet(sample, t)
