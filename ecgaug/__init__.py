"""ecgaug: DiffuSETS synthetic ECGs for class-balanced augmentation of 12-lead ECG data sets.

The main entry points are importable from the top level (loaded on first use, so
``import ecgaug`` stays light)::

    from ecgaug import DiffuSETSPipeline, AugmentedDataset, ClassBalancedSampler, PTBXL
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "DiffuSETSPipeline": "ecgaug.pipeline",
    "AugmentedDataset": "ecgaug.augment",
    "ClassBalancedSampler": "ecgaug.augment",
    "PTBXL": "ecgaug.data",
    "ReportTemplater": "ecgaug.text",
    "build_prompt": "ecgaug.text",
    "get_text_encoder": "ecgaug.text",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecgaug' has no attribute {name!r}")
