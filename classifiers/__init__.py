"""Downstream ECG classifiers, their training loop, metrics and classic signal augmentation.

Importing this package registers every model; build one with
``create_model(name, num_classes=..., in_chans=12)`` (see :func:`list_models`).
"""
from classifiers import inception1d, resnet1d, xresnet1d  # noqa: F401  (register the models)
from classifiers.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
