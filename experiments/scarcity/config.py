"""The experiment as plain data: scarcity regimes, arms, seeds and settings, saved as ``config.json``.

A *cell* is one ``(regime, arm, seed)``: one classifier trained on one subset of the training
folds with one way of using it. The whole experiment is the cross product of ``regimes``,
``arms`` and ``seeds`` in an :class:`ExperimentConfig` (in the spirit of the PTB-XL benchmark's
experiment lists, ``helme/ecg_ptbxl_benchmarking/code/reproduce_results.py``).

Two presets fill the settings a user leaves unset: :data:`FULL` (the GPU setting) and
:data:`QUICK` (finishes on a 2-core CPU in under 45 minutes with ``ptbxl-base`` and
``resnet1d_small``; measured 19.5 min in one process).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ecgaug.data.folds import check_folds
from ecgaug.schedulers import DEFAULT_SCHEDULER
from ecgaug.settings import GenerationSettings

__all__ = [
    "ARM_NAMES",
    "Arm",
    "ExperimentConfig",
    "FULL",
    "QUICK",
    "Regime",
    "make_arms",
    "make_regimes",
    "sweep_arms",
]

CONFIG_NAME = "config.json"
REFERENCE_REGIME = "all_real"  # the real arm on every training record: the reference row of every table


@dataclass(frozen=True)
class Regime:
    """A training subset: a fraction of the training *patients*, optionally with rare classes cut to k positives.

    Args:
        name: Folder-safe name, e.g. ``"fraction_0.05"`` or ``"rare_k20"``.
        fraction: Fraction of training patients kept (all records of a kept patient), in (0, 1].
        rare_k: If set, each rare class (``ExperimentConfig.rare_classes``) keeps only ``rare_k``
            positive records of the subset; the other positive records are removed from it.
    """

    name: str
    fraction: float = 1.0
    rare_k: int | None = None

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"Regime fraction should be in (0, 1], but got fraction={self.fraction} for regime {self.name!r}")
        if self.rare_k is not None and not (isinstance(self.rare_k, int) and self.rare_k >= 1):
            raise ValueError(f"Regime rare_k should be a positive integer or None, but got rare_k={self.rare_k!r} for regime {self.name!r}")
        _check_name(self.name, "regime")

    @property
    def is_rare(self) -> bool:
        return self.rare_k is not None


@dataclass(frozen=True)
class Arm:
    """One way of training on a regime's subset.

    Args:
        name: Folder-safe name, e.g. ``"real"``, ``"classic_synthetic"``.
        pos_weight: Class-weighted BCE (``pos_weight = negatives / positives`` of the cell's real
            records, capped at 10, :func:`classifiers.train.pos_weight_from_targets`).
        classic: Classic signal augmentation (noise, baseline wander, amplitude scaling, time shift;
            :class:`classifiers.augment.ClassicECGAugment`) on every training item, real or synthetic.
        sampler: ``"shuffle"`` (each real record once per epoch) or ``"balanced"``
            (:class:`ecgaug.augment.ClassBalancedSampler`, as many draws per epoch as real records).
        synthetic: Add synthetic ECGs from the run's pool (needs ``sampler="balanced"``).
        synthetic_per_real: Class ``c`` gets at most ``synthetic_per_real x`` (its real records)
            synthetic ECGs; within that, classes are topped up towards the largest class.
        synthetic_cap: At most this fraction of each batch is synthetic (the sampler's
            ``max_synthetic_fraction``).
        guidance_scale: Classifier-free guidance of the pool the arm draws from (each distinct
            value is its own pool).
        synthetic_classes: ``"all"``, or ``"rare"`` for synthetic ECGs of the rare classes only.
        source: Where the synthetic ECGs come from: ``None``/``"pool"``: the run's pool;
            ``"guided"``: a real-guided cache per ``(regime, seed)``, seeded by that cell's own real
            records of each rare class (``ExperimentConfig.guided_strength``; see ``variants.py``).
        teacher: ``"filter"``: keep only pool ECGs that the cell's ``real`` classifier scores at or above
            its validation-chosen threshold for every conditioning label; ``"soft"``: train on that
            classifier's scores as the synthetic targets.
        pretrain: Pretrain on the cell's synthetic draw alone, then fine-tune on its real records.
        synthetic_weight: Loss weight of each synthetic item (``None``: 1).
    """

    name: str
    pos_weight: bool = False
    classic: bool = False
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    synthetic: bool = False
    synthetic_per_real: float | None = None
    synthetic_cap: float | None = None
    guidance_scale: float | None = None
    synthetic_classes: Literal["all", "rare"] | None = None
    source: Literal["pool", "guided"] | None = None
    teacher: Literal["filter", "soft"] | None = None
    pretrain: bool = False
    synthetic_weight: float | None = None

    # Fields added after runs were made: cell specs leave them out at these defaults, so old cells still match.
    OPTIONAL_FIELDS = {"source": None, "teacher": None, "pretrain": False, "synthetic_weight": None}

    def __post_init__(self):
        _check_name(self.name, "arm")
        variants = {name: getattr(self, name) for name, default in self.OPTIONAL_FIELDS.items() if getattr(self, name) != default}
        if variants and not self.synthetic:
            raise ValueError(f"Arm {self.name!r} uses no synthetic data, so {sorted(variants)} should be unset")
        if self.source not in (None, "pool", "guided"):
            raise ValueError(f"source should be 'pool' or 'guided', but got {self.source!r} for arm {self.name!r}")
        if self.teacher not in (None, "filter", "soft"):
            raise ValueError(f"teacher should be 'filter' or 'soft', but got {self.teacher!r} for arm {self.name!r}")
        if self.synthetic_weight is not None and not 0.0 <= self.synthetic_weight <= 1.0:
            raise ValueError(f"synthetic_weight should be in [0, 1], but got {self.synthetic_weight} for arm {self.name!r}")
        if self.sampler not in ("shuffle", "balanced"):
            raise ValueError(f"Arm sampler should be 'shuffle' or 'balanced', but got {self.sampler!r} for arm {self.name!r}")
        synthetic_fields = {name: getattr(self, name) for name in ("synthetic_per_real", "synthetic_cap", "guidance_scale", "synthetic_classes")}
        if not self.synthetic:
            given = [name for name, value in synthetic_fields.items() if value is not None]
            if given:
                raise ValueError(f"Arm {self.name!r} uses no synthetic data, so {given} should be None")
            return
        missing = [name for name, value in synthetic_fields.items() if value is None]
        if missing:
            raise ValueError(f"Synthetic arm {self.name!r} should set {missing}")
        if self.sampler != "balanced":
            raise ValueError(f"Synthetic arm {self.name!r} should use sampler='balanced' (the synthetic cap lives in the sampler)")
        if not self.synthetic_per_real > 0:
            raise ValueError(f"synthetic_per_real should be positive, but got {self.synthetic_per_real} for arm {self.name!r}")
        if not 0.0 < self.synthetic_cap <= 1.0:
            raise ValueError(f"synthetic_cap should be in (0, 1], but got {self.synthetic_cap} for arm {self.name!r}")
        if not self.guidance_scale >= 1.0:
            raise ValueError(f"guidance_scale should be >= 1 (1 disables guidance), but got {self.guidance_scale} for arm {self.name!r}")
        if self.synthetic_classes not in ("all", "rare"):
            raise ValueError(f"synthetic_classes should be 'all' or 'rare', but got {self.synthetic_classes!r} for arm {self.name!r}")


def _check_name(name: str, kind: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not name or set(name) - allowed:
        raise ValueError(f"{kind} name should use only letters, digits, '.', '_' and '-' (it names a folder), but got {name!r}")


# The arms, in table order. Non-generative: real, weighted, classic and balanced (class-balanced sampling of
# real records only, which separates the sampler's effect from the synthetic data's). Generative: synthetic,
# classic_synthetic, and the variants of issue 13 (variants.py): guided (real-guided synthesis from the cell's
# own rare-class records), filtered and soft (the cell's real classifier as filter / teacher), pretrain
# (synthetic pretraining, real fine-tuning), downweighted (synthetic items with a reduced loss weight) and
# filtered_pretrain, the combination of the two synthetic arms with the best validation macro-AUC in both
# regimes of the first ptbxl-base run (docs/results/scarcity_quick_base: fold 8, never the test fold).
ARM_NAMES = ("real", "weighted", "classic", "balanced", "synthetic", "classic_synthetic", "guided", "filtered", "soft", "pretrain",
             "downweighted", "filtered_pretrain")  # fmt: skip
DEFAULT_ARMS = ARM_NAMES
NON_GENERATIVE_ARMS = ("real", "weighted", "classic", "balanced")


def make_arms(names: Sequence[str], *, synthetic_per_real: float, synthetic_cap: float, guidance_scale: float,
              synthetic_weight: float = 0.3) -> list[Arm]:  # fmt: skip
    """The arms named in :data:`ARM_NAMES` (in that order, so ``real`` trains before the arms that use its
    classifier), with the synthetic settings for the synthetic ones and ``synthetic_weight`` for ``downweighted``."""
    unknown = [name for name in names if name not in ARM_NAMES]
    if unknown or not names:
        raise ValueError(f"arms should be a non-empty list from {list(ARM_NAMES)}, but got {list(names)}")
    if "real" not in names:
        raise ValueError(f"arms should include 'real', the baseline every other arm is compared with, but got {list(names)}")
    synthetic = dict(synthetic=True, sampler="balanced", synthetic_per_real=synthetic_per_real, synthetic_cap=synthetic_cap,
                     guidance_scale=guidance_scale, synthetic_classes="all")  # fmt: skip
    presets = {
        "real": Arm("real"),
        "weighted": Arm("weighted", pos_weight=True),
        "classic": Arm("classic", classic=True),
        "synthetic": Arm("synthetic", **synthetic),
        "classic_synthetic": Arm("classic_synthetic", classic=True, **synthetic),
        "balanced": Arm("balanced", sampler="balanced"),
        "guided": Arm("guided", **{**synthetic, "synthetic_classes": "rare"}, source="guided"),
        "filtered": Arm("filtered", **synthetic, teacher="filter"),
        "soft": Arm("soft", **synthetic, teacher="soft"),
        "pretrain": Arm("pretrain", **synthetic, pretrain=True),
        "downweighted": Arm("downweighted", **synthetic, synthetic_weight=synthetic_weight),
        "filtered_pretrain": Arm("filtered_pretrain", **synthetic, teacher="filter", pretrain=True),
    }
    return [presets[name] for name in ARM_NAMES if name in names]


def sweep_arms(
    base: Arm,
    *,
    synthetic_per_real: Sequence[float] = (),
    synthetic_cap: Sequence[float] = (),
    guidance_scale: Sequence[float] = (),
    rare_only: bool = True,
) -> list[Arm]:
    """``real``, ``base`` (named ``synthetic``) and variants of it that change one setting at a time.

    Variants are named ``syn_r{value}`` (synthetic_per_real), ``syn_cap{value}``, ``syn_g{value}``
    (guidance_scale) and ``syn_rare`` (synthetic ECGs for the rare classes only); values equal to the
    base's are skipped.
    """
    if not base.synthetic:
        raise ValueError(f"the sweep's base arm should be synthetic, but {base.name!r} is not")
    arms = [Arm("real"), dataclasses.replace(base, name="synthetic")]
    for field_name, prefix, values in (("synthetic_per_real", "r", synthetic_per_real), ("synthetic_cap", "cap", synthetic_cap),
                                        ("guidance_scale", "g", guidance_scale)):  # fmt: skip
        for value in dict.fromkeys(float(v) for v in values):
            if value != getattr(base, field_name):
                arms.append(dataclasses.replace(base, name=f"syn_{prefix}{value:g}", **{field_name: value}))
    if rare_only and base.synthetic_classes != "rare":
        arms.append(dataclasses.replace(base, name="syn_rare", synthetic_classes="rare"))
    return arms


def make_regimes(fractions: Sequence[float], *, rare_k: int | None, rare_base_fraction: float = 1.0) -> list[Regime]:
    """``fraction_{f}`` for each fraction, then ``rare_k{k}`` (on ``rare_base_fraction`` of the patients) if ``rare_k``."""
    regimes = [Regime(f"fraction_{fraction:g}", fraction=float(fraction)) for fraction in dict.fromkeys(fractions)]
    if rare_k is not None:
        suffix = "" if rare_base_fraction == 1.0 else f"_fraction_{rare_base_fraction:g}"
        regimes.append(Regime(f"rare_k{rare_k}{suffix}", fraction=float(rare_base_fraction), rare_k=int(rare_k)))
    if not regimes:
        raise ValueError("The experiment needs at least one regime: pass fractions and/or rare_k")
    return regimes


@dataclass
class ExperimentConfig:
    """Everything that defines a run (saved as ``run_dir/config.json``).

    Data and model:
        ptbxl: PTB-XL folder.
        output_dir: The run folder.
        task: PTB-XL label set (``"superdiagnostic"``, ...).
        classes: Class names to use (``None``: all labels of the task).
        classifier: A name from :func:`classifiers.list_models`.
        train_folds, val_folds, test_folds: Disjoint ``strat_fold`` sets. Checkpoints are chosen on
            the validation folds; the test folds are only predicted, once per cell.

    Cells:
        regimes, arms, seeds: The cells are their cross product. A seed fixes the regime's subset
            (the same for every arm, so arms compare on the same records), the classifier's
            initialisation and shuffling, and the cell's draw from the synthetic pool.
        rare_classes: The classes of the rare-class regime and of the rare-class metrics
            (``None``: the ``num_rare_classes`` classes with fewest positives in the training folds).

    Training (:class:`classifiers.train.TrainConfig`):
        epochs, batch_size, lr, patience: As in ``TrainConfig``; an epoch has as many draws as the
            cell has real records, in every arm.
        val_fraction: Fraction of the validation patients used for checkpoint selection (one fixed
            subset for all cells); 1.0 uses the whole validation folds.

    Synthetic pool (generated once per run, ``run_dir/synthetic_cache``):
        model: ``DiffuSETSPipeline`` name or folder (the generator); its model card must list its
            training folds, and they must not include a test fold.
        scheduler, num_inference_steps: Sampling settings.
        pool_per_class: Synthetic ECGs per class in the pool (each cell draws what it needs).
        pool_seed: Seed of the pool's plan (label sets, reports, patients, diffusion noise).
        shard_size: ECGs per cache shard.
        generation_batch_size: ECGs per generation batch (``None``: the pipeline's default).

    Evaluation:
        n_bootstrap, alpha: Bootstrap resamples of the test folds and the CI level (0.05: 95 %).

    Runtime (not part of the run's identity):
        generation_batch_size, device, num_workers, num_threads, progress.
    """

    ptbxl: str
    output_dir: str
    task: str = "superdiagnostic"
    classes: list[str] | None = None
    classifier: str = "xresnet1d101"
    train_folds: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    val_folds: tuple[int, ...] = (9,)
    test_folds: tuple[int, ...] = (10,)
    regimes: list[Regime] = field(default_factory=lambda: make_regimes((0.05, 0.1, 0.25, 1.0), rare_k=20))
    arms: list[Arm] = field(default_factory=lambda: make_arms(DEFAULT_ARMS, synthetic_per_real=1.0, synthetic_cap=0.5, guidance_scale=1.0))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    rare_classes: list[str] | None = None
    num_rare_classes: int = 2
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-2
    patience: int | None = 5
    val_fraction: float = 1.0
    model: str = "ptbxl-base"
    scheduler: str = DEFAULT_SCHEDULER
    num_inference_steps: int | None = None  # None: the sampler's default, resolved (and saved) on creation
    pool_per_class: int = 2000
    pool_seed: int = 0
    generation_batch_size: int | None = None
    shard_size: int = 256
    n_bootstrap: int = 1000
    alpha: float = 0.05
    sweep: bool = False
    device: str = "auto"
    num_workers: int = 0
    num_threads: int = 2
    progress: bool = True

    reference: bool = True
    reference_seeds: list[int] | None = None
    guided_strength: float = 0.5

    # Fields that change neither the subsets, the pool nor the trained models.
    # (A pool does not depend on its generation batch size: every ECG has its own seeded noise.)
    RUNTIME_FIELDS = ("ptbxl", "output_dir", "n_bootstrap", "alpha", "generation_batch_size", "device", "num_workers", "num_threads", "progress")
    # Lists of cells: a resumed run may add or drop entries (each cell checks its own spec).
    CELL_FIELDS = ("regimes", "arms", "seeds", "reference", "reference_seeds")

    def __post_init__(self):
        self.regimes = [r if isinstance(r, Regime) else Regime(**r) for r in self.regimes]
        self.arms = [a if isinstance(a, Arm) else Arm(**a) for a in self.arms]
        self.seeds = [int(s) for s in self.seeds]
        for name in ("train_folds", "val_folds", "test_folds"):
            setattr(self, name, check_folds(getattr(self, name), name))
        pairs = (("train_folds", "val_folds"), ("train_folds", "test_folds"), ("val_folds", "test_folds"))
        for a, b in pairs:
            shared = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if shared:
                raise ValueError(f"{a} and {b} should be disjoint, but both contain folds {shared}")
        for kind, items in (("regime", self.regimes), ("arm", self.arms)):
            names = [item.name for item in items]
            if len(set(names)) != len(names) or not names:
                raise ValueError(f"{kind} names should be distinct and non-empty, but got {names}")
        names = [arm.name for arm in self.arms]
        if "real" not in names:
            raise ValueError("arms should include 'real', the baseline every other arm is compared with")
        late = [arm.name for arm in self.arms[: names.index("real")] if arm.teacher is not None]
        if late:
            raise ValueError(f"arms {late} use the cell's real classifier, so they should come after 'real' in arms")
        if not 0.0 < self.guided_strength < 1.0:
            raise ValueError(f"guided_strength should be in (0, 1), but got {self.guided_strength}")
        if self.reference_seeds is not None:
            self.reference_seeds = [int(s) for s in self.reference_seeds]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds should be distinct and non-empty, but got {self.seeds}")
        for name in ("epochs", "batch_size", "pool_per_class", "shard_size", "n_bootstrap", "num_rare_classes", "num_threads"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} should be a positive integer, but got {name}={value!r}")
        if not 0.0 < self.val_fraction <= 1.0:
            raise ValueError(f"val_fraction should be in (0, 1], but got val_fraction={self.val_fraction}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha should be in (0, 1), e.g. 0.05 for 95% intervals, but got alpha={self.alpha}")
        if self.rare_classes is not None:
            self.rare_classes = list(self.rare_classes)
        if self.classes is not None:
            self.classes = list(self.classes)
        if self.num_inference_steps is None:
            self.num_inference_steps = GenerationSettings(scheduler=self.scheduler).num_inference_steps

    # ----------------------------------------------------------------------------- derived
    @property
    def synthetic_arms(self) -> list[Arm]:
        return [arm for arm in self.arms if arm.synthetic]

    @property
    def guidance_scales(self) -> list[float]:
        """The distinct guidance scales of the synthetic arms: one pool each."""
        return list(dict.fromkeys(arm.guidance_scale for arm in self.synthetic_arms))

    @property
    def reference_regime(self) -> Regime | None:
        """The "all real records" reference: a regime of every training patient (an existing ``fraction_1``
        regime, or ``REFERENCE_REGIME`` trained for it) whose ``real`` arm is every table's reference row."""
        if not self.reference:
            return None
        existing = next((r for r in self.regimes if r.fraction == 1.0 and r.rare_k is None), None)
        return existing or Regime(REFERENCE_REGIME, fraction=1.0)

    @property
    def all_regimes(self) -> list[Regime]:
        """``regimes`` and, when it is not one of them, the reference regime (last)."""
        reference = self.reference_regime
        return self.regimes + ([reference] if reference is not None and reference not in self.regimes else [])

    def cells(self) -> list[tuple[Regime, Arm, int]]:
        """Every ``(regime, arm, seed)`` in run order: regime, then seed, then arm; then the reference cells."""
        cells = [(regime, arm, seed) for regime in self.regimes for seed in self.seeds for arm in self.arms]
        reference = self.reference_regime
        if reference is not None and reference not in self.regimes:
            real = next(arm for arm in self.arms if arm.name == "real")
            cells += [(reference, real, seed) for seed in (self.reference_seeds or self.seeds)]
        return cells

    # ------------------------------------------------------------------------- save/load
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("train_folds", "val_folds", "test_folds"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentConfig":
        if "generator" in data and "model" not in data:  # config.json of runs made before the field was renamed
            data = {("model" if name == "generator" else name): value for name, value in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}; it was written by another version of the experiment")
        return cls(**data)

    def save(self, run_dir) -> Path:
        path = Path(run_dir) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, run_dir) -> "ExperimentConfig":
        path = Path(run_dir) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"No experiment in {run_dir} ({CONFIG_NAME} missing); run the experiment without --evaluate_only first.")
        return cls.from_dict(json.loads(path.read_text()))

    def identity(self) -> dict[str, Any]:
        """The fields that decide subsets, pools and trained models, except the cell lists."""
        data = self.to_dict()
        for name in self.RUNTIME_FIELDS + self.CELL_FIELDS:
            data.pop(name)
        return data

    def mismatches(self, other: "ExperimentConfig") -> list[str]:
        """Identity fields that differ from ``other``'s, as ``"name: theirs -> ours"``."""
        mine, theirs = self.identity(), other.identity()
        return [f"{key}: {theirs.get(key)!r} -> {mine.get(key)!r}" for key in mine if mine.get(key) != theirs.get(key)]


# Presets for the settings a user leaves unset. QUICK is sized from measurements on this project's
# 2-core CPU (see experiments/README.md); FULL is the GPU setting.
FULL: dict[str, Any] = dict(
    classifier="xresnet1d101", fractions=(0.05, 0.1, 0.25, 1.0), rare_k=20, rare_base_fraction=1.0, seeds=(0, 1, 2),
    epochs=30, batch_size=128, lr=1e-2, patience=5, val_fraction=1.0, pool_per_class=2000,
    n_bootstrap=1000, reference_seeds=None,
)  # fmt: skip
QUICK: dict[str, Any] = dict(
    classifier="resnet1d_small", fractions=(0.05,), rare_k=20, rare_base_fraction=0.05, seeds=(0, 1, 2), reference_seeds=(0,),
    epochs=8, batch_size=32, lr=1e-2, patience=None, val_fraction=0.5, pool_per_class=300,
    n_bootstrap=200,
)  # fmt: skip
