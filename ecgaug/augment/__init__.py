"""Class-balanced augmentation with synthetic ECGs: plan, patients, cache, builder, dataset and sampler.

Typical use::

    plan = make_plan(real.targets, real.classes, reports=templater, patients=PatientSampler.from_dataset(real))
    run_build("runs/cache", plan, pipeline)                       # or: ecgaug cache build ...
    train = AugmentedDataset(real, "runs/cache")                  # real items, then synthetic ones
    sampler = ClassBalancedSampler.from_dataset(train, max_synthetic_fraction=0.5, batch_size=64)

Imperfect synthetic ECGs: ``filter_cache`` (``ecgaug cache filter``) stores the ECGs a classifier keeps,
``teacher_scores`` a teacher's scores; ``AugmentedDataset(..., selection=, synthetic_targets=, synthetic_weight=)``
reads them.
"""
from .builder import BuildResult, ECGGenerator, build_cache, run_build
from .cache import CacheConfig, CacheMismatchError, IncompleteCacheError, SyntheticCache, VerifyResult, generator_key
from .dataset import AugmentedDataset
from .filtering import Selection, filter_cache, load_scores, load_selection, score_cache, teacher_scores
from .patients import PatientInfo, PatientSampler, heart_rate_constraint
from .plan import FrequencyWeightedReports, GenerationPlan, PlanConfig, make_plan, primary_labels, select_from_pool
from .sampler import ClassBalancedSampler, class_balanced_weights

__all__ = [
    "AugmentedDataset",
    "BuildResult",
    "CacheConfig",
    "CacheMismatchError",
    "ClassBalancedSampler",
    "ECGGenerator",
    "FrequencyWeightedReports",
    "GenerationPlan",
    "IncompleteCacheError",
    "PatientInfo",
    "PatientSampler",
    "PlanConfig",
    "Selection",
    "SyntheticCache",
    "VerifyResult",
    "build_cache",
    "class_balanced_weights",
    "filter_cache",
    "generator_key",
    "heart_rate_constraint",
    "load_scores",
    "load_selection",
    "make_plan",
    "primary_labels",
    "run_build",
    "score_cache",
    "select_from_pool",
    "teacher_scores",
]
