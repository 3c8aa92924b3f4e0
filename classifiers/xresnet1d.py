"""xresnet1d: the 1-D XResNet of the PTB-XL benchmark.

Rebuilt from the architecture of helme/ecg_ptbxl_benchmarking (``code/models/xresnet1d.py``, MIT),
which is fastai's XResNet ("bag of tricks", He et al. 2019) in one dimension, with the settings
the benchmark trains it with (``code/models/fastai_model.py``):

* stem: three ``Conv(k=5) → BN → ReLU`` layers with 32, 32, 64 channels (the first with stride 2),
  then ``MaxPool(3, stride 2)``;
* four stages of bottleneck blocks (expansion 4). Unlike the 2-D XResNet, every stage has the
  same width, 64 (so 256 output channels); stages 2-4 halve the length;
* a strided shortcut is ``AvgPool(2) → Conv1x1 → BN`` (the "D" trick), the identity otherwise;
* kernel size 5 in the stem and the blocks;
* head: concat pooling, ``BN → Dropout(0.25) → Linear(512, 128) → ReLU → BN → Dropout(0.5) → Linear``.

The benchmark re-initialises every model with Kaiming-normal convs and BatchNorm weight 1 before
training from scratch, which undoes fastai's zero-initialised last BatchNorm of each block; the
default ``zero_init_last=False`` reproduces that.

Total down-sampling is 32: a 10 s record at 100 Hz (1000 samples) reaches the head as 32 steps.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from classifiers.layers import ClassifierBase1d, ClassifierHead1d, PoolType
from classifiers.registry import register_model

__all__ = ["ConvNormAct1d", "Bottleneck1d", "XResNet1d"]


class ConvNormAct1d(nn.Sequential):
    """``Conv1d(bias=False) → BatchNorm1d → ReLU`` (no ReLU when ``activation=False``); "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, activation: bool = True):
        layers: list[nn.Module] = [
            nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
            nn.BatchNorm1d(out_channels),
        ]
        if activation:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Bottleneck1d(nn.Module):
    """Bottleneck residual block: ``1x1 → k (strided) → 1x1`` convolutions plus a shortcut.

    ``(B, in_channels, L)`` → ``(B, out_channels, ceil(L / stride))``.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvNormAct1d(in_channels, mid_channels, 1)
        self.conv2 = ConvNormAct1d(mid_channels, mid_channels, kernel_size, stride=stride)
        self.conv3 = ConvNormAct1d(mid_channels, out_channels, 1, activation=False)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(ConvNormAct1d(in_channels, out_channels, 1, activation=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class XResNet1d(ClassifierBase1d):
    """1-D XResNet with bottleneck blocks.

    Args:
        layers: number of blocks per stage, e.g. ``(3, 4, 23, 3)`` for xresnet1d101.
        num_classes: number of output logits.
        in_chans: number of input leads.
        widths: bottleneck (mid) width per stage; the stage outputs ``width * expansion`` channels.
        expansion: ratio of block output to bottleneck width.
        stem_channels: output channels of the three stem convolutions.
        stem_kernel_size: kernel size of the stem convolutions.
        kernel_size: kernel size of the middle convolution of each block (must be odd).
        head_hidden_dims: hidden layer widths of the head; ``()`` for a single linear layer.
        drop_rate: dropout before the last linear layer (half of it before hidden layers).
        global_pool: ``"catavgmax"``, ``"avg"`` or ``"max"``.
        zero_init_last: zero the last BatchNorm of every block (fastai's default; the benchmark's
            re-initialisation sets it back to one, hence ``False``).

    Shapes:
        input ``(batch, in_chans, num_samples)`` → logits ``(batch, num_classes)``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int,
        in_chans: int = 12,
        widths: Sequence[int] = (64, 64, 64, 64),
        expansion: int = 4,
        stem_channels: Sequence[int] = (32, 32, 64),
        stem_kernel_size: int = 5,
        kernel_size: int = 5,
        head_hidden_dims: Sequence[int] = (128,),
        drop_rate: float = 0.5,
        global_pool: PoolType = "catavgmax",
        zero_init_last: bool = False,
    ):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers and widths should have one entry per stage, but got {len(layers)} and {len(widths)}.")
        if kernel_size % 2 == 0 or stem_kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes should be odd to keep lengths aligned, but got kernel_size={kernel_size}, stem_kernel_size={stem_kernel_size}.")
        self.num_classes = num_classes
        self.in_chans = in_chans

        stem: list[nn.Module] = []
        channels = in_chans
        for index, out_channels in enumerate(stem_channels):
            stem.append(ConvNormAct1d(channels, out_channels, stem_kernel_size, stride=2 if index == 0 else 1))
            channels = out_channels
        stem.append(nn.MaxPool1d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)

        stages = []
        for stage_index, (num_blocks, width) in enumerate(zip(layers, widths)):
            blocks = []
            for block_index in range(num_blocks):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(Bottleneck1d(channels, width, width * expansion, kernel_size, stride=stride))
                channels = width * expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels

        self.head = ClassifierHead1d(channels, num_classes, hidden_dims=head_hidden_dims, drop_rate=drop_rate, pool_type=global_pool)
        self.init_weights(zero_init_last=zero_init_last)

    def init_weights(self, zero_init_last: bool = False) -> None:
        """Kaiming initialisation (see :meth:`ClassifierBase1d.init_weights`); optionally zero each block's last BatchNorm."""
        super().init_weights()
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, Bottleneck1d):
                    nn.init.zeros_(module.conv3[1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, L)`` → feature map ``(B, num_features, ceil(L / 32))``."""
        return self.stages(self.stem(x))


@register_model
def xresnet1d50(**kwargs) -> XResNet1d:
    """xresnet1d50: bottleneck blocks ``(3, 4, 6, 3)``."""
    return XResNet1d(layers=(3, 4, 6, 3), **kwargs)


@register_model
def xresnet1d101(**kwargs) -> XResNet1d:
    """xresnet1d101: bottleneck blocks ``(3, 4, 23, 3)``, one of the strongest PTB-XL benchmark models."""
    return XResNet1d(layers=(3, 4, 23, 3), **kwargs)
