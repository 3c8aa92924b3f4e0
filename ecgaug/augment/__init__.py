"""Class-balanced augmentation with synthetic ECGs: plan, patients, cache, builder, dataset and sampler.

Typical use::

    plan = make_plan(real.targets, real.classes, reports=templater, patients=PatientSampler.from_dataset(real))
    run_build("runs/cache", plan, pipeline)                       # or: ecgaug cache build ...
    train = AugmentedDataset(real, "runs/cache")                  # real items, then synthetic ones
    sampler = ClassBalancedSampler.from_dataset(train, max_synthetic_fraction=0.5, batch_size=64)
"""
from .builder import BuildResult, ECGGenerator, build_cache, run_build
from .cache import CacheConfig, CacheMismatchError, IncompleteCacheError, SyntheticCache, VerifyResult
from .dataset import AugmentedDataset
from .patients import PatientInfo, PatientSampler, heart_rate_constraint
from .plan import GenerationPlan, PlanConfig, make_plan
from .sampler import ClassBalancedSampler, class_balanced_weights

__all__ = [
    "AugmentedDataset",
    "BuildResult",
    "CacheConfig",
    "CacheMismatchError",
    "ClassBalancedSampler",
    "ECGGenerator",
    "GenerationPlan",
    "IncompleteCacheError",
    "PatientInfo",
    "PatientSampler",
    "PlanConfig",
    "SyntheticCache",
    "VerifyResult",
    "build_cache",
    "class_balanced_weights",
    "heart_rate_constraint",
    "make_plan",
    "run_build",
]
