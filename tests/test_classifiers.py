"""Contract tests over the whole classifier registry, plus architecture facts from the PTB-XL benchmark."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from classifiers import create_model, list_models
from classifiers.inception1d import Inception1d, InceptionBlock1d
from classifiers.xresnet1d import Bottleneck1d

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 12, 1000, generator=torch.Generator().manual_seed(0))


def test_registry_lists_benchmark_models():
    assert {"xresnet1d50", "xresnet1d101", "inception1d", "resnet1d_small"} <= set(list_models())
    assert list_models("xresnet*") == ["xresnet1d101", "xresnet1d50"]


@pytest.mark.parametrize("name", list_models())
def test_model_forward(name, batch):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        logits = model(batch)
        features = model.forward_features(batch)
        embedding = model.forward_head(features, pre_logits=True)
        logits_from_parts = model.forward_head(features)
    assert logits.shape == (2, NUM_CLASSES)
    assert not torch.isnan(logits).any()
    assert features.shape[:2] == (2, model.num_features)
    assert embedding.shape == (2, model.get_classifier().in_features)
    torch.testing.assert_close(logits_from_parts, logits)

    model.reset_classifier(3)
    with torch.no_grad():
        assert model(batch).shape == (2, 3)


@pytest.mark.parametrize("num_samples", [250, 5000])
def test_small_model_accepts_other_lengths_and_trains(num_samples):
    torch.manual_seed(0)
    model = create_model("resnet1d_small", num_classes=NUM_CLASSES)
    x = torch.randn(4, 12, num_samples)
    loss = model(x).square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_resnet1d_small_is_cpu_sized():
    num_params = sum(p.numel() for p in create_model("resnet1d_small", num_classes=NUM_CLASSES).parameters())
    assert 200_000 <= num_params <= 500_000


def test_create_model_drops_none_kwargs_and_passes_others():
    model = create_model("resnet1d_small", num_classes=2, drop_rate=None, in_chans=8)
    dropout = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropout] == [0.2]  # the model's default survived drop_rate=None
    assert model(torch.randn(2, 8, 300)).shape == (2, 2)
    model = create_model("resnet1d_small", num_classes=2, drop_rate=0.4)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.4]


def test_unknown_model_names_valid_ones():
    with pytest.raises(ValueError, match="Unknown model 'xresnet1d999'.*resnet1d_small"):
        create_model("xresnet1d999", num_classes=2)


def test_xresnet1d101_matches_benchmark_layout():
    model = create_model("xresnet1d101", num_classes=NUM_CLASSES)
    assert [len(stage) for stage in model.stages] == [3, 4, 23, 3]
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck1d)]
    assert {block.conv3[0].out_channels for block in blocks} == {256}  # width 64, expansion 4, every stage
    assert {block.conv2[0].kernel_size for block in blocks} == {(5,)}
    assert [layer[0].kernel_size for layer in model.stem[:3]] == [(5,), (5,), (5,)]
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 12, 1000)).shape == (1, 256, 32)
    # Head: concat pool → BN → Dropout(0.25) → Linear(512, 128) → ReLU → BN → Dropout(0.5) → Linear(128, classes)
    linear = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(512, 128), (128, NUM_CLASSES)]
    assert [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.5]


def test_inception1d_matches_benchmark_layout():
    model = create_model("inception1d", num_classes=NUM_CLASSES)
    assert isinstance(model, Inception1d)
    assert model.kernel_sizes == (39, 19, 9)
    blocks = [m for m in model.modules() if isinstance(m, InceptionBlock1d)]
    assert len(blocks) == 6 and len(model.shortcuts) == 2
    assert blocks[0].bottleneck.out_channels == 32 and blocks[0].out_channels == 128
    with pytest.raises(ValueError, match="multiple of 3"):
        create_model("inception1d", num_classes=2, depth=4)
