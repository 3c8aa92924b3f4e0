"""A small model registry in the style of timm's ``register_model`` / ``create_model``.

Model files decorate their entry points with :func:`register_model`; importing the
:mod:`classifiers` package imports every model file, so all entry points are registered.

Example:
    >>> from classifiers import create_model, list_models
    >>> "xresnet1d101" in list_models()
    True
    >>> model = create_model("resnet1d_small", num_classes=5)
"""
from __future__ import annotations

import fnmatch
import sys
import warnings
from typing import Callable, TypeVar

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_EntryPoint = TypeVar("_EntryPoint", bound=Callable[..., nn.Module])
_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: _EntryPoint) -> _EntryPoint:
    """Register ``fn`` under its function name and add it to its module's ``__all__``."""
    name = fn.__name__
    if name in _model_entrypoints:
        warnings.warn(f"Model {name!r} is registered twice; the entry point from {fn.__module__} replaces the earlier one.")
    _model_entrypoints[name] = fn
    module = sys.modules[fn.__module__]
    if hasattr(module, "__all__") and name not in module.__all__:
        module.__all__.append(name)
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally filtered by a shell-style ``pattern`` (``"xresnet*"``)."""
    names = sorted(_model_entrypoints)
    return names if pattern is None else fnmatch.filter(names, pattern)


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def create_model(name: str, *, num_classes: int, in_chans: int = 12, **kwargs) -> nn.Module:
    """Build a registered model.

    Keyword arguments that are ``None`` are dropped, so an unset CLI flag keeps the model's own default.

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of output logits.
        in_chans: number of input leads.
        **kwargs: passed to the model's constructor (e.g. ``drop_rate``, ``kernel_size``).

    Returns:
        A model mapping ``(batch, in_chans, num_samples)`` to logits ``(batch, num_classes)``.
    """
    if name not in _model_entrypoints:
        raise ValueError(f"Unknown model {name!r}. Valid values are {list_models()}.")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    return _model_entrypoints[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
