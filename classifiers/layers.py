"""Layers shared by the 1-D classifiers: global pooling and the classification head.

The head follows ``create_head1d`` of the PTB-XL benchmark (helme/ecg_ptbxl_benchmarking,
``code/models/basic_conv1d.py``), which itself is fastai v1's ``create_head`` in one dimension:
concat pooling (max ‖ avg over time), then for each linear layer ``BatchNorm → Dropout → Linear``
with ReLU between layers. As in the benchmark, hidden layers use half the dropout of the final one.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

__all__ = ["GlobalPool1d", "ClassifierHead1d", "ClassifierBase1d", "init_weights_kaiming"]

PoolType = Literal["catavgmax", "avg", "max"]
_POOL_TYPES = ("catavgmax", "avg", "max")


class GlobalPool1d(nn.Module):
    """Pool ``(batch, channels, length)`` over time to ``(batch, feature_multiplier * channels)``.

    Args:
        pool_type: ``"catavgmax"`` (max and mean concatenated, the benchmark's concat pooling, in that
            order), ``"avg"`` or ``"max"``.
    """

    def __init__(self, pool_type: PoolType = "catavgmax"):
        super().__init__()
        if pool_type not in _POOL_TYPES:
            raise ValueError(f"pool_type should be one of {_POOL_TYPES}, but got {pool_type!r}.")
        self.pool_type = pool_type

    @property
    def feature_multiplier(self) -> int:
        return 2 if self.pool_type == "catavgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return x.mean(dim=-1)
        if self.pool_type == "max":
            return x.amax(dim=-1)
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}"


class ClassifierHead1d(nn.Module):
    """Global pooling, optional hidden layers, then the final linear classifier.

    Layout for ``hidden_dims=(128,)`` and ``drop_rate=0.5`` (the benchmark's setting), with
    ``C = in_features``::

        pool (B, C, L) -> (B, 2C) → BN → Dropout(0.25) → Linear(2C, 128) → ReLU
                                  → BN → Dropout(0.5)  → fc: Linear(128, num_classes)

    Args:
        in_features: channels of the feature map given to :meth:`forward`.
        num_classes: number of logits.
        hidden_dims: widths of hidden linear layers between pooling and ``fc``; ``()`` for none.
        drop_rate: dropout before ``fc``; hidden layers use ``drop_rate / 2``.
        use_batchnorm: put a BatchNorm1d before each linear layer (the benchmark does).
        pool_type: see :class:`GlobalPool1d`.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (128,),
        drop_rate: float = 0.5,
        use_batchnorm: bool = True,
        pool_type: PoolType = "catavgmax",
    ):
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"num_classes should be a positive integer, but got {num_classes!r}.")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate should be in [0, 1), but got {drop_rate}.")
        self.global_pool = GlobalPool1d(pool_type)
        widths = [in_features * self.global_pool.feature_multiplier, *hidden_dims]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += self._norm_dropout(width_in, use_batchnorm, drop_rate / 2)
            layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
        layers += self._norm_dropout(widths[-1], use_batchnorm, drop_rate)
        self.pre_logits = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.fc = nn.Linear(self.num_features, num_classes)

    @staticmethod
    def _norm_dropout(width: int, use_batchnorm: bool, drop_rate: float) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.BatchNorm1d(width)] if use_batchnorm else []
        if drop_rate > 0:
            layers.append(nn.Dropout(drop_rate))
        return layers

    def reset(self, num_classes: int) -> None:
        """Replace ``fc`` by a freshly initialised ``Linear(num_features, num_classes)``."""
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"num_classes should be a positive integer, but got {num_classes!r}.")
        device = self.fc.weight.device
        self.fc = nn.Linear(self.num_features, num_classes, device=device)
        init_weights_kaiming(self.fc)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, in_features, L)`` → logits ``(B, num_classes)``, or ``(B, num_features)`` if ``pre_logits``."""
        x = self.pre_logits(self.global_pool(x))
        return x if pre_logits else self.fc(x)


class ClassifierBase1d(nn.Module):
    """The surface every 1-D classifier shares (timm style): ``forward = forward_head(forward_features(x))``.

    A subclass builds its backbone and sets, in ``__init__``:

    * ``num_classes`` and ``in_chans``;
    * ``num_features``: channels of the feature map from :meth:`forward_features`;
    * ``head``: a :class:`ClassifierHead1d` taking ``num_features`` channels;

    then implements :meth:`forward_features` and calls :meth:`init_weights`.
    """

    num_classes: int
    in_chans: int
    num_features: int
    head: ClassifierHead1d

    def init_weights(self) -> None:
        """Re-initialise every layer with :func:`init_weights_kaiming`."""
        self.apply(init_weights_kaiming)

    def get_classifier(self) -> nn.Linear:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a fresh one with ``num_classes`` outputs (for fine-tuning)."""
        self.num_classes = num_classes
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, L)`` → feature map ``(B, num_features, L')``."""
        raise NotImplementedError(f"{type(self).__name__} should implement forward_features.")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map → logits ``(B, num_classes)``, or the head's embedding ``(B, head.num_features)`` if ``pre_logits``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, L)`` → logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))


def init_weights_kaiming(module: nn.Module) -> None:
    """The benchmark's initialisation (``weight_init`` applied before training from scratch).

    Conv1d/Linear: Kaiming-normal weights, zero bias. BatchNorm1d: weight 1, bias 0.
    Use as ``model.apply(init_weights_kaiming)``.
    """
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
