"""resnet1d_small: a compact 1-D ResNet that trains on CPU in minutes.

Not from the PTB-XL benchmark; a plain ResNet (He et al. 2016) with basic blocks, sized for quick
experiments and tests on a few thousand 100 Hz records:

* stem: ``Conv(k=7, stride 2) → BN → ReLU`` with 32 channels, then ``MaxPool(3, stride 2)``;
* four stages of basic blocks (two ``Conv(k=5) → BN`` with ReLU between) with widths
  32, 64, 128, 128; stages 2-4 halve the length; a ``Conv1x1 → BN`` shortcut where the shape changes;
* head: concat pooling (max ‖ avg) → Dropout → Linear.

About 0.36 M parameters with the defaults; total down-sampling 32 (1000 samples → 32 steps).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from classifiers.layers import ClassifierBase1d, ClassifierHead1d, PoolType
from classifiers.registry import register_model

__all__ = ["BasicBlock1d", "ResNet1d"]


class BasicBlock1d(nn.Module):
    """``Conv(k, stride) → BN → ReLU → Conv(k) → BN`` plus shortcut, then ReLU.

    ``(B, in_channels, L)`` → ``(B, out_channels, ceil(L / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet1d(ClassifierBase1d):
    """1-D ResNet with basic blocks.

    Args:
        num_classes: number of output logits.
        in_chans: number of input leads.
        widths: output channels of each stage.
        blocks_per_stage: number of basic blocks in each stage.
        stem_channels: output channels of the stem convolution.
        stem_kernel_size: kernel size of the stem convolution (odd).
        kernel_size: kernel size inside the blocks (odd).
        drop_rate: dropout before the linear classifier.
        global_pool: ``"catavgmax"``, ``"avg"`` or ``"max"``.

    Shapes:
        input ``(batch, in_chans, num_samples)`` → logits ``(batch, num_classes)``; the head has no hidden
        layer, so ``forward_head(..., pre_logits=True)`` gives the pooled features ``(batch, 2 * num_features)``
        (``(batch, num_features)`` with ``"avg"`` or ``"max"`` pooling).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 12,
        widths: Sequence[int] = (32, 64, 128, 128),
        blocks_per_stage: Sequence[int] = (1, 1, 1, 1),
        stem_channels: int = 32,
        stem_kernel_size: int = 7,
        kernel_size: int = 5,
        drop_rate: float = 0.2,
        global_pool: PoolType = "catavgmax",
    ):
        super().__init__()
        if len(widths) != len(blocks_per_stage):
            raise ValueError(f"widths and blocks_per_stage should have one entry per stage, but got {len(widths)} and {len(blocks_per_stage)}.")
        if kernel_size % 2 == 0 or stem_kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes should be odd to keep lengths aligned, but got kernel_size={kernel_size}, stem_kernel_size={stem_kernel_size}.")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = nn.Sequential(
            nn.Conv1d(in_chans, stem_channels, stem_kernel_size, stride=2, padding=(stem_kernel_size - 1) // 2, bias=False),
            nn.BatchNorm1d(stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        stages = []
        channels = stem_channels
        for stage_index, (width, num_blocks) in enumerate(zip(widths, blocks_per_stage)):
            blocks = []
            for block_index in range(num_blocks):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock1d(channels, width, kernel_size, stride=stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = ClassifierHead1d(channels, num_classes, hidden_dims=(), drop_rate=drop_rate, use_batchnorm=False, pool_type=global_pool)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, L)`` → feature map ``(B, num_features, ceil(L / 32))``."""
        return self.stages(self.stem(x))


@register_model
def resnet1d_small(**kwargs) -> ResNet1d:
    """resnet1d_small: one basic block per stage, widths 32-64-128-128 (~0.36 M parameters)."""
    return ResNet1d(**kwargs)
