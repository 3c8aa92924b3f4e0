"""inception1d: the InceptionTime-style network of the PTB-XL benchmark.

Rebuilt from the architecture of helme/ecg_ptbxl_benchmarking (``code/models/inception1d.py``, MIT),
itself after InceptionTime (Fawaz et al. 2020), with the settings the benchmark trains it with
(``kernel_size=40``, head as in :mod:`classifiers.layers`):

* an inception block runs a 1x1 bottleneck (32 channels), then three parallel convolutions with
  kernel sizes 39, 19 and 9 (from ``kernel_size`` 40, 20, 10, made odd), plus a
  ``MaxPool(3) → Conv1x1`` branch on the block input; the four branches (32 channels each) are
  concatenated → BN → ReLU, giving 128 channels at full temporal resolution;
* six blocks; every third block's output is added to a ``Conv1x1 → BN`` projection of the input
  of that group of three, followed by ReLU.

No layer is strided, so the head pools over the full input length.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from classifiers.layers import ClassifierBase1d, ClassifierHead1d, PoolType
from classifiers.registry import register_model

__all__ = ["InceptionBlock1d", "InceptionShortcut1d", "Inception1d"]


class InceptionBlock1d(nn.Module):
    """One inception block: ``(B, in_channels, L)`` → ``(B, (len(kernel_sizes) + 1) * num_filters, L)``.

    Args:
        in_channels: input channels.
        num_filters: output channels of each branch.
        kernel_sizes: odd kernel sizes of the convolution branches.
        bottleneck_channels: width of the 1x1 bottleneck before the convolution branches; 0 for none.
    """

    def __init__(self, in_channels: int, num_filters: int, kernel_sizes: Sequence[int], bottleneck_channels: int = 32):
        super().__init__()
        if bottleneck_channels > 0:
            self.bottleneck = nn.Conv1d(in_channels, bottleneck_channels, 1, bias=False)
            branch_in = bottleneck_channels
        else:
            self.bottleneck = nn.Identity()
            branch_in = in_channels
        self.branches = nn.ModuleList(
            nn.Conv1d(branch_in, num_filters, kernel_size, padding=kernel_size // 2, bias=False) for kernel_size in kernel_sizes
        )
        self.pool_branch = nn.Sequential(
            nn.MaxPool1d(3, stride=1, padding=1),
            nn.Conv1d(in_channels, num_filters, 1, bias=False),
        )
        self.out_channels = (len(kernel_sizes) + 1) * num_filters
        self.norm = nn.BatchNorm1d(self.out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottled = self.bottleneck(x)
        out = torch.cat([branch(bottled) for branch in self.branches] + [self.pool_branch(x)], dim=1)
        return self.act(self.norm(out))


class InceptionShortcut1d(nn.Module):
    """Residual connection around a group of inception blocks: ``relu(out + BN(Conv1x1(group_input)))``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, group_input: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.act(out + self.norm(self.conv(group_input)))


class Inception1d(ClassifierBase1d):
    """InceptionTime-style 1-D network.

    Args:
        num_classes: number of output logits.
        in_chans: number of input leads.
        kernel_size: longest branch kernel; the branches use ``kernel_size``, ``kernel_size // 2`` and
            ``kernel_size // 4``, each reduced by one when even (40 → 39, 19, 9).
        depth: number of inception blocks; a multiple of 3 when ``use_residual``.
        bottleneck_channels: width of each block's 1x1 bottleneck (0 for none).
        num_filters: channels per branch; blocks output ``4 * num_filters`` channels.
        use_residual: add a shortcut around every group of three blocks.
        head_hidden_dims, drop_rate, global_pool: see :class:`classifiers.layers.ClassifierHead1d`.

    Shapes:
        input ``(batch, in_chans, num_samples)`` → logits ``(batch, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 12,
        kernel_size: int = 40,
        depth: int = 6,
        bottleneck_channels: int = 32,
        num_filters: int = 32,
        use_residual: bool = True,
        head_hidden_dims: Sequence[int] = (128,),
        drop_rate: float = 0.5,
        global_pool: PoolType = "catavgmax",
    ):
        super().__init__()
        if kernel_size < 4:
            raise ValueError(f"kernel_size should be at least 4 so that kernel_size // 4 >= 1, but got {kernel_size}.")
        if use_residual and depth % 3 != 0:
            raise ValueError(f"depth should be a multiple of 3 when use_residual=True (one shortcut per 3 blocks), but got depth={depth}.")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.use_residual = use_residual
        self.kernel_sizes = tuple(k - 1 if k % 2 == 0 else k for k in (kernel_size, kernel_size // 2, kernel_size // 4))

        block_channels = (len(self.kernel_sizes) + 1) * num_filters
        self.blocks = nn.ModuleList(
            InceptionBlock1d(in_chans if index == 0 else block_channels, num_filters, self.kernel_sizes, bottleneck_channels)
            for index in range(depth)
        )
        num_shortcuts = depth // 3 if use_residual else 0
        self.shortcuts = nn.ModuleList(
            InceptionShortcut1d(in_chans if index == 0 else block_channels, block_channels) for index in range(num_shortcuts)
        )
        self.num_features = block_channels
        self.head = ClassifierHead1d(block_channels, num_classes, hidden_dims=head_hidden_dims, drop_rate=drop_rate, pool_type=global_pool)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, L)`` → feature map ``(B, num_features, L)``."""
        group_input = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if self.use_residual and index % 3 == 2:
                x = self.shortcuts[index // 3](group_input, x)
                group_input = x
        return x


@register_model
def inception1d(**kwargs) -> Inception1d:
    """inception1d of the PTB-XL benchmark: 6 blocks, kernels 39/19/9, residual every 3 blocks."""
    return Inception1d(**kwargs)
