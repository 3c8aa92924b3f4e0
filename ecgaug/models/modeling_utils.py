"""Saving and loading our own model folders (``config.json`` + ``model.safetensors``), and fusion for sampling.

Each model class pairs with a config dataclass (``config_class``); ``save_pretrained`` writes
both, ``from_pretrained`` rebuilds the model from the config and loads the weights strictly.
:class:`FusionMixin` lets a model derive faster weights for sampling from its own, outside the state dict.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="PretrainedModelMixin")


def build_seeded(seed: int, factory, *args, **kwargs):
    """``factory(*args, **kwargs)`` with initial weights that depend only on ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(*args, **kwargs)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there bf16 convolutions run about 2x faster than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def config_to_dict(config) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def config_from_dict(config_class, data: dict[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields) - {"_class_name"})
    if unknown:
        raise ValueError(f"{config_class.__name__} got unknown config keys {unknown}; valid keys are {sorted(fields)}.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return config_class(**kwargs)


class PretrainedModelMixin:
    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {"_class_name": type(self).__name__, **config_to_dict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> M:
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{cls.__name__}.from_pretrained: {path} is missing; expected a folder written by save_pretrained().")
        data = json.loads(config_path.read_text())
        if data.get("_class_name", cls.__name__) != cls.__name__:
            raise ValueError(f"{config_path} describes a {data['_class_name']}, not a {cls.__name__}.")
        model = cls(config_from_dict(cls.config_class, data))
        state = load_file(str(weights_path), device=str(map_location))
        model.load_state_dict(state, strict=True)
        return model.eval()

    @property
    def num_parameters(self) -> int:
        assert isinstance(self, nn.Module)
        return sum(p.numel() for p in self.parameters())


class FusionMixin(nn.Module):
    """Derived weights for sampling: the same function, computed faster.

    Each submodule of a ``_FUSABLE`` type derives its fused weights in ``fuse()`` and drops them in
    ``unfuse()``; it keeps them in non-persistent buffers (never in the state dict) and uses them in eval
    mode only. Fused weights are recomputed when weights are loaded and dropped by ``train()``. Models
    expose fusion under a name that says what they fuse (``fuse_projections``, ``fuse_upsampling``); call
    it again after changing weights by hand.
    """

    _FUSABLE: ClassVar[tuple[type, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.fused = False
        self.register_load_state_dict_post_hook(FusionMixin._fuse_again_after_loading)

    @staticmethod
    def _fuse_again_after_loading(module: "FusionMixin", _incompatible_keys) -> None:
        if module.fused:
            module._set_fused(True)

    @torch.no_grad()
    def _set_fused(self, fused: bool):
        for module in self.modules():
            if isinstance(module, self._FUSABLE):
                module.fuse() if fused else module.unfuse()
        self.fused = fused
        return self

    def train(self, mode: bool = True):
        if mode and self.fused:
            self._set_fused(False)
        return super().train(mode)
