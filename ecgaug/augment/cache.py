"""On-disk cache of synthetic ECGs: fixed-size float16 shards, a manifest, locks and verification.

Layout of a cache folder::

    cache_dir/
        cache.json              CacheConfig: the model, sampler, steps, format and plan that made the ECGs
        plan.jsonl              the GenerationPlan: one job (labels, report, patient, seed) per ECG
        targets.npy             (num_records, num_classes) uint8 multi-hot labels of the jobs, in
                                ``classes`` order (memory-mapped by readers, so they stay light)
        manifest.csv            merged manifest: one row per finished ECG (job + model_id, sampler,
                                num_inference_steps, guidance_scale, shard, offset; a real-guided cache
                                also has seed_index, the seed record of each ECG, and strength)
        shards/
            shard-000000.npy    (rows, 12, num_samples) float16, ``np.save`` format (memory-mappable)
            shard-000000.json   manifest part: sha256 and size of the .npy, the settings it was
                                generated with and the plan rows it holds
            shard-000000.lock   held (``flock``) by the builder writing that shard
        builders/               one file per running builder (pid, host, command), ``flock``-ed by it
        selections/NAME.json    a selection (``ecgaug cache filter``): which ECGs a classifier kept, with
        selections/NAME.*.npy   its scores; bound to the cache's settings and shard checksums
        scores/NAME.json        stored classifier (teacher) scores, for soft synthetic targets; bound
        scores/NAME.*.npy       the same way (see :meth:`SyntheticCache.write_annex`)
        .lock                   held while cache.json, plan.jsonl, manifest.csv or builders/ are written

Shard ``i`` holds plan rows ``[i * shard_size, (i + 1) * shard_size)``. A shard is *complete*
exactly when its ``.json`` part exists: the ``.npy`` is written to a temporary file and moved
into place with ``os.replace`` first, the part last, so a killed builder leaves either a complete
shard or one the next build redoes (temporary files are deleted by the next build). ``flock``
locks are released by the kernel when a process dies, so there are no stale locks to clean up.

Integrity: every shard's sha256 is recorded in its part, and ``cache.json`` records the plan's
sha256. Readers check each shard (size, sha256, finite values, settings) the first time a process
maps it, and ``targets.npy`` and ``plan.jsonl`` when first used; a mismatch raises
:class:`CorruptCacheError` naming the file. :meth:`SyntheticCache.verify` checks everything,
the manifest, selections and stored scores included. A build refuses to ``overwrite`` a cache another builder is writing,
and re-reads ``cache.json`` before writing each shard, so one cache never mixes settings.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import __version__
from ..signal import RECORD_SECONDS, resolve_lead_order
from .plan import JOB_COLUMNS, SEED_COLUMN, GenerationPlan

__all__ = [
    "CacheBusyError", "CacheConfig", "CacheMismatchError", "CorruptCacheError", "IncompleteCacheError", "Problem",
    "SyntheticCache", "VerifyResult", "generator_key",
]  # fmt: skip

CACHE_FORMAT = "ecgaug-synthetic-cache/1"
CONFIG_FILE = "cache.json"
PLAN_FILE = "plan.jsonl"
TARGETS_FILE = "targets.npy"
MANIFEST_FILE = "manifest.csv"
SHARD_DIR = "shards"
BUILDERS_DIR = "builders"
LOCK_FILE = ".lock"
NUM_LEADS = 12
FLOAT16_MAX = 65504.0
BUILD_HINT = "`ecgaug cache build --output_dir {root} ...`"
REBUILD_HINT = "rebuild the cache with `ecgaug cache build --overwrite --output_dir {root} ...`"
REPAIR_HINT = "run `ecgaug cache verify --delete_corrupt {root}`, then rerun `ecgaug cache build` with the same arguments"
SELECTIONS_DIR = "selections"
SCORES_DIR = "scores"
ANNEX_KINDS = {"selection": SELECTIONS_DIR, "scores": SCORES_DIR}
ANNEX_FORMAT = "ecgaug-cache-annex/1"
ANNEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
CACHE_NAMES = {CONFIG_FILE, PLAN_FILE, TARGETS_FILE, MANIFEST_FILE, SHARD_DIR, BUILDERS_DIR, SELECTIONS_DIR, SCORES_DIR}
PART_NAME = re.compile(r"shard-(\d{6})\.json")
MANIFEST_COLUMNS = [*JOB_COLUMNS, "model_id", "sampler", "num_inference_steps", "guidance_scale", "shard", "offset"]
# A real-guided cache (strength < 1, plan with seed ECGs): every ECG traces back to its seed record.
SEEDED_MANIFEST_COLUMNS = [*JOB_COLUMNS, SEED_COLUMN, "strength", *MANIFEST_COLUMNS[len(JOB_COLUMNS):]]


class CacheMismatchError(ValueError):
    """The cache was made with other settings (model, length, lead order, plan...) than requested."""


class IncompleteCacheError(RuntimeError):
    """The cache has shards that are not built yet."""


class CorruptCacheError(RuntimeError):
    """A cache file does not hold what was recorded when it was written (damaged, edited, truncated or missing)."""


class CacheBusyError(RuntimeError):
    """Another builder is writing the cache, so it cannot be overwritten now."""


@dataclass
class CacheConfig:
    """Everything that determines a cache's ECGs and their storage (saved as ``cache.json``).

    Build one with :meth:`for_plan`. Fields in :attr:`KEY_FIELDS` must match for a build to resume
    into, or a dataset to read, an existing cache; ``created`` and ``ecgaug_version`` are informational.
    """

    model_id: str
    sampler: str
    num_inference_steps: int | None
    guidance_scale: float
    lead_order: str
    sampling_rate: float
    num_samples: int
    classes: list[str]
    num_records: int
    plan_sha256: str
    shard_size: int = 256
    dtype: str = "float16"
    targets_sha256: str | None = None  # of targets.npy (follows from the plan); None in caches of ecgaug < 0.2
    text_encoder: str | None = None  # the encoder's name (e.g. "minilm:all-MiniLM-L6-v2"); None: not recorded
    scheduler_config: dict | None = None  # the sampler's full diffusers config (noise schedule, spacing...); None: not recorded
    strength: float = 1.0  # < 1: real-guided (the plan's seed ECGs noised part-way); caches before it was recorded are 1
    precision: str | None = None  # the generator's arithmetic (e.g. "cpu-float32+bf16-decoding"); None: not recorded
    format: str = CACHE_FORMAT
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    ecgaug_version: str = __version__

    KEY_FIELDS = (
        "format", "model_id", "sampler", "num_inference_steps", "guidance_scale", "lead_order", "sampling_rate",
        "num_samples", "classes", "num_records", "plan_sha256", "shard_size", "dtype", "text_encoder", "scheduler_config",
        "strength", "precision",
    )  # fmt: skip
    # Key fields that caches (and shard parts) written before they were recorded lack: ``None`` there means
    # "not recorded", which matches any value, and ``key_dict`` leaves them out so old parts still match.
    OPTIONAL_KEY_FIELDS = ("text_encoder", "scheduler_config", "precision")

    def __post_init__(self):
        numbers = {"num_records": int, "num_samples": int, "shard_size": int, "sampling_rate": (int, float),
                   "guidance_scale": (int, float), "strength": (int, float)}  # fmt: skip
        for name, kinds in numbers.items():
            value = getattr(self, name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise TypeError(f"{name} should be a number, but got {value!r}")
        if self.num_records < 0:
            raise ValueError(f"num_records should be >= 0, but got {self.num_records}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength should be in (0, 1], but got {self.strength}")
        self.strength = float(self.strength)
        resolve_lead_order(self.lead_order)
        if not isinstance(self.lead_order, str):
            raise ValueError(f"lead_order should be a name ('ptbxl' or 'mimic'), but got {self.lead_order!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size should be a positive integer, but got shard_size={self.shard_size}")
        if self.dtype != "float16":
            raise ValueError(f"dtype should be 'float16', but got {self.dtype!r}")
        if self.sampling_rate <= 0 or self.num_samples < 1:
            raise ValueError(f"sampling_rate and num_samples should be positive, but got {self.sampling_rate}, {self.num_samples}")
        self.classes = list(self.classes)
        if self.text_encoder is not None and not isinstance(self.text_encoder, str):
            raise TypeError(f"text_encoder should be the encoder's name (a string), but got {self.text_encoder!r}")
        if self.scheduler_config is not None:
            self.scheduler_config = _json_config(self.scheduler_config)

    @classmethod
    def for_plan(
        cls,
        plan: GenerationPlan,
        *,
        model_id: str,
        sampler: str,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        lead_order: str = "ptbxl",
        sampling_rate: float = 100.0,
        shard_size: int = 256,
        text_encoder: str | None = None,
        scheduler_config: dict | None = None,
        strength: float = 1.0,
        precision: str | None = None,
    ) -> "CacheConfig":
        """The config of a cache holding ``plan``'s ECGs, 10 s each at ``sampling_rate`` in ``lead_order``.

        ``text_encoder``, ``scheduler_config`` and ``precision`` identify the rest of what makes the ECGs;
        :func:`generator_key` reads them from a generator (``**generator_key(pipeline)``).
        ``strength`` < 1 (real-guided generation) needs a plan with seed ECGs, and such a plan needs it.
        """
        if plan.has_seeds and not strength < 1.0:
            raise ValueError(f"the plan has seed ECGs, so its cache needs strength < 1 (the seeds noised part-way), but got strength={strength:g}")
        if not plan.has_seeds and strength != 1.0:
            raise ValueError(f"strength={strength:g} < 1 needs a plan with seed ECGs (PlanConfig(seed_ecgs=True)); without them use strength 1")
        return cls(
            model_id=model_id,
            sampler=sampler,
            num_inference_steps=num_inference_steps,
            guidance_scale=float(guidance_scale),
            lead_order=lead_order,
            sampling_rate=float(sampling_rate),
            num_samples=int(round(RECORD_SECONDS * sampling_rate)),
            classes=plan.classes,
            num_records=len(plan),
            plan_sha256=plan.fingerprint(),
            shard_size=shard_size,
            targets_sha256=hashlib.sha256(_targets_bytes(plan)).hexdigest(),
            text_encoder=text_encoder,
            scheduler_config=scheduler_config,
            strength=float(strength),
            precision=precision,
        )

    @property
    def num_shards(self) -> int:
        return -(-self.num_records // self.shard_size)

    def mismatches(self, other: "CacheConfig") -> list[str]:
        """Human-readable differences in :attr:`KEY_FIELDS`, ``self`` being the existing cache."""
        differences = []
        for name in self.KEY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name in self.OPTIONAL_KEY_FIELDS and mine is None:
                continue  # a cache written before the field was recorded
            if mine != theirs:
                if name == "classes" or name == "plan_sha256":
                    differences.append(f"{name}: the cache has {mine}, this build has {theirs}")
                else:
                    differences.append(f"{name}: the cache has {mine!r}, this build has {theirs!r}")
        return differences

    def key_dict(self) -> dict:
        """The :attr:`KEY_FIELDS` (what determines the ECGs), as recorded in each shard's part.

        Optional key fields that are not recorded (``None``) are left out, and so is ``strength`` 1 (pure
        noise, what caches before it was recorded hold), so parts of older caches match.
        """
        return {name: getattr(self, name) for name in self.KEY_FIELDS
                if not (name in self.OPTIONAL_KEY_FIELDS and getattr(self, name) is None)
                and not (name == "strength" and self.strength == 1.0)}  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CacheConfig":
        if not isinstance(values, dict):
            raise ValueError(f"cache.json should hold a JSON object, but holds {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"cache.json has unknown fields {sorted(unknown)}; it was written by a newer ecgaug?")
        return cls(**values)


def _json_config(config) -> dict:
    """A scheduler config as plain, sorted JSON (tuples and arrays as lists), so it compares equal after a round trip."""
    def plain(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        raise TypeError(f"scheduler_config value {value!r} is not JSON-serialisable")

    return json.loads(json.dumps(dict(config), sort_keys=True, default=plain))


def generator_key(generator) -> dict:
    """``{"text_encoder", "scheduler_config", "precision"}`` of a generator, for :meth:`CacheConfig.for_plan`.

    The text encoder's ``name``, the full config of the generator's ``scheduler`` and its ``precision``
    (``None`` where the generator has no such attribute, e.g. a test fake).
    """
    encoder = getattr(generator, "text_encoder", None)
    scheduler = getattr(generator, "scheduler", None)
    config = getattr(scheduler, "config", None)
    if config is not None:
        config = {key: value for key, value in dict(config).items() if not key.startswith("_")}
        config["_class_name"] = type(scheduler).__name__
    return {"text_encoder": getattr(encoder, "name", None), "scheduler_config": None if config is None else _json_config(config),
            "precision": getattr(generator, "precision", None)}


class Problem(NamedTuple):
    """One thing :meth:`SyntheticCache.verify` found wrong.

    Attributes:
        message: One line naming the file and what is wrong with it.
        shard: The shard concerned, or None for the cache's other files.
        files: Paths (relative to the cache) that ``verify --delete_corrupt`` deletes so that the
            next build regenerates them; empty when only a rebuild with ``--overwrite`` helps.
    """

    message: str
    shard: int | None = None
    files: tuple[str, ...] = ()


@dataclass
class VerifyResult:
    """Outcome of :meth:`SyntheticCache.verify`.

    Attributes:
        num_shards: Shards the plan needs.
        complete: Shards that are built and intact.
        missing: Shards not built yet (a build resumes them); not an error by itself.
        problems: Everything corrupt, truncated, edited or inconsistent (see :class:`Problem`).
    """

    num_shards: int
    complete: list[int]
    missing: list[int]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """Nothing is corrupt (missing shards are allowed)."""
        return not self.problems

    @property
    def finished(self) -> bool:
        """Every shard is built and intact."""
        return self.ok and not self.missing


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` via a temporary file, ``fsync`` and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove_temporaries(folder: Path, prefix: str = ".") -> None:
    """Delete the temporary files of killed writers; call holding the lock that guards their writes."""
    for path in folder.glob(f"{prefix}*.tmp"):
        path.unlink(missing_ok=True)


def _targets_bytes(plan: GenerationPlan) -> bytes:
    """``targets.npy`` of ``plan``: its multi-hot labels as uint8, ``np.save`` format."""
    buffer = io.BytesIO()
    np.save(buffer, plan.targets.astype(np.uint8), allow_pickle=False)
    return buffer.getvalue()


def _read_npy(data: bytes) -> np.ndarray:
    """The array in ``np.save`` bytes, without copying them."""
    stream = io.BytesIO(data)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    if fortran_order or dtype.hasobject:
        raise ValueError(f"expected a C-ordered numeric array, got fortran_order={fortran_order}, dtype={dtype}")
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=stream.tell()).reshape(shape)


def _all_finite(array: np.ndarray) -> bool:
    """No NaN or inf in a float16 array (exponent bits all set), via integer ops: ~10x faster than np.isfinite."""
    bits = array.view(np.uint16)
    return not (np.bitwise_and(bits, 0x7C00) == 0x7C00).any()


@contextlib.contextmanager
def _flock(path: Path, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``; yields False (without waiting) if not ``blocking`` and taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _live_builders(root: Path) -> list[dict]:
    """The builders registered in ``root/builders`` that are still running; deletes the files of dead ones.

    Call holding the cache lock (builders register under it). A builder holds an ``flock`` on its
    file while it runs, so a file whose lock can be taken belongs to a process that died.
    """
    live = []
    for path in sorted((root / BUILDERS_DIR).glob("*.json")):
        with _flock(path, blocking=False) as free:
            if free:
                path.unlink(missing_ok=True)
                continue
            try:
                live.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                live.append({"file": path.name})
    return live


def _describe_builder(info: dict) -> str:
    if "pid" not in info:
        return f"a builder ({BUILDERS_DIR}/{info.get('file')})"
    return f"pid {info['pid']} on host {info.get('host')} (started {info.get('started')}: {info.get('command')})"


class SyntheticCache:
    """An existing cache folder (see the module docstring). Create one with :meth:`create`.

    Opening reads ``cache.json`` only; shards are memory-mapped on demand by :meth:`load_shard`,
    which checks each shard the first time this process maps it.

    Args:
        root: The cache folder.

    Raises:
        FileNotFoundError: if ``root`` holds no cache, naming the command that builds one.
        CorruptCacheError: if ``cache.json`` is unreadable.
    """

    def __init__(self, root):
        self.root = Path(root)
        config_path = self.root / CONFIG_FILE
        if not config_path.is_file() and not self._part_numbers():
            raise FileNotFoundError(
                f"No synthetic ECG cache at {self.root} ({CONFIG_FILE} not found). Build one with {BUILD_HINT.format(root=self.root)}."
            )
        self.config = self._read_config()
        self._plan: GenerationPlan | None = None
        self._targets_sha256: str | None = None  # of targets.npy once checked against the plan (caches without targets_sha256)
        self._checked_pid, self._checked = os.getpid(), set()  # files checked by this process

    def _read_config(self) -> CacheConfig:
        path = self.root / CONFIG_FILE
        try:
            return CacheConfig.from_dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            raise CorruptCacheError(f"{path} is missing, so the cache's settings are lost; {REBUILD_HINT.format(root=self.root)}") from None
        except (OSError, ValueError, TypeError) as error:
            raise CorruptCacheError(f"{path} is unreadable ({error}); {REBUILD_HINT.format(root=self.root)}") from None

    def _corrupt(self, problem: str) -> CorruptCacheError:
        return CorruptCacheError(f"Corrupt synthetic ECG cache at {self.root}: {problem}; {REPAIR_HINT.format(root=self.root)}")

    # ----------------------------------------------------------------------------------- creation
    @classmethod
    def create(cls, root, config: CacheConfig, plan: GenerationPlan, *, overwrite: bool = False) -> "SyntheticCache":
        """Create the cache at ``root``, or open it to resume if it was made with the same config and plan.

        Resuming restores ``plan.jsonl`` and ``targets.npy`` if they were deleted (by
        ``ecgaug cache verify --delete_corrupt``).

        Args:
            root: Cache folder; created if missing. An existing non-empty folder must be a cache.
            config: Settings of the cache, e.g. from :meth:`CacheConfig.for_plan`.
            plan: The jobs; must match ``config.plan_sha256`` / ``num_records`` / ``classes``.
            overwrite: Delete an existing cache in ``root`` (even a matching one) and start afresh.

        Raises:
            CacheMismatchError: if ``root`` holds a cache made with other settings and not ``overwrite``.
            CacheBusyError: if ``overwrite`` and another builder is writing the cache.
            CorruptCacheError: if ``root``'s ``cache.json`` is unreadable and not ``overwrite``.
        """
        if (config.num_records, config.classes) != (len(plan), plan.classes):
            raise ValueError("config does not describe plan (num_records/classes differ); build it with CacheConfig.for_plan(plan, ...)")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        with _flock(root / LOCK_FILE, blocking=True):
            _remove_temporaries(root)
            others = [p.name for p in root.iterdir() if p.name != LOCK_FILE]
            if (root / CONFIG_FILE).is_file():
                try:
                    existing = cls(root)
                except CorruptCacheError:
                    if not overwrite:
                        raise
                    existing = None
                if existing is not None and not overwrite:
                    differences = existing.config.mismatches(config)
                    if differences:
                        raise CacheMismatchError(
                            f"The cache at {root} was made with other settings than this build:\n  - "
                            + "\n  - ".join(differences)
                            + "\nUse another --output_dir, or pass --overwrite (overwrite=True) to delete this cache and rebuild it."
                        )
                    cls._write_plan_files(root, plan, only_missing=True)
                    return existing
            # No cache.json: an empty folder, a creation killed before writing it (redone), or a cache that lost it.
            elif others and not cls._is_unfinished_creation(root, others):
                if not set(others) <= CACHE_NAMES:
                    raise FileExistsError(
                        f"{root} is not empty and holds no ecgaug cache ({CONFIG_FILE} missing; found {sorted(others)[:5]}). "
                        "Choose a new or empty folder for the cache."
                    )
                if not overwrite:
                    raise FileExistsError(f"{root} holds a cache whose {CONFIG_FILE} is missing, so its settings are lost; "
                                          "pass --overwrite (overwrite=True) to delete it and rebuild it.")  # fmt: skip
            live = _live_builders(root)
            if live:
                raise CacheBusyError(
                    f"Cannot overwrite the cache at {root}: {_describe_builder(live[0])} is building it"
                    + (f" (and {len(live) - 1} more builders)" if len(live) > 1 else "")
                    + ". Wait for it to finish or stop it, then rerun; or use another --output_dir."
                )
            cls._clear(root)
            (root / SHARD_DIR).mkdir(exist_ok=True)
            cls._write_plan_files(root, plan, only_missing=False)
            _write_atomic(root / CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())
        cache = cls(root)
        cache._plan = plan
        return cache

    @staticmethod
    def _write_plan_files(root: Path, plan: GenerationPlan, only_missing: bool) -> None:
        if not (only_missing and (root / PLAN_FILE).is_file()):
            _write_atomic(root / PLAN_FILE, plan.to_jsonl().encode())
        if not (only_missing and (root / TARGETS_FILE).is_file()):
            _write_atomic(root / TARGETS_FILE, _targets_bytes(plan))

    @staticmethod
    def _is_unfinished_creation(root: Path, names: list[str]) -> bool:
        """Only files that :meth:`create` writes before ``cache.json``, and no shard yet."""
        if not set(names) <= {SHARD_DIR, PLAN_FILE, TARGETS_FILE}:
            return False
        return not (root / SHARD_DIR).is_dir() or not any((root / SHARD_DIR).iterdir())

    @staticmethod
    def _clear(root: Path) -> None:
        for path in root.iterdir():
            if path.name == LOCK_FILE:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    # ------------------------------------------------------------------------------------- layout
    @property
    def plan(self) -> GenerationPlan:
        """The plan (loaded from ``plan.jsonl`` on first use and checked against ``plan_sha256``)."""
        if self._plan is None:
            self._plan = self._load_plan()
        return self._plan

    def _load_plan(self) -> GenerationPlan:
        plan, problem = self._read_plan()
        if problem is not None:
            if problem.files:
                raise self._corrupt(problem.message)
            raise CorruptCacheError(f"Corrupt synthetic ECG cache at {self.root}: {problem.message}; {REBUILD_HINT.format(root=self.root)}")
        return plan

    def _read_plan(self) -> tuple[GenerationPlan | None, Problem | None]:
        """The plan, checked against ``plan_sha256`` and ``num_records``, or what is wrong with it."""
        path = self.root / PLAN_FILE
        if not path.is_file():
            return None, Problem(f"{PLAN_FILE} is missing", files=(PLAN_FILE,))
        try:
            plan = GenerationPlan.load(path)
            fingerprint = plan.fingerprint()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            return None, Problem(f"{PLAN_FILE} is unreadable ({type(error).__name__}: {error})", files=(PLAN_FILE,))
        if fingerprint != self.config.plan_sha256:
            return None, Problem(f"{PLAN_FILE} was changed: its sha256 differs from plan_sha256 in {CONFIG_FILE}",
                                 files=(PLAN_FILE,))  # fmt: skip
        if len(plan) != self.num_records:
            return None, Problem(f"{CONFIG_FILE} says num_records={self.num_records}, but {PLAN_FILE} has {len(plan)} jobs")
        return plan, None

    def _checked_in_this_process(self) -> set:
        """Shards (and ``"targets"``) this process has checked; a forked worker checks again."""
        if self._checked_pid != os.getpid():
            self._checked_pid, self._checked = os.getpid(), set()
        return self._checked

    def targets(self) -> np.ndarray:
        """``(num_records, num_classes)`` uint8 multi-hot labels of all planned ECGs (memory-mapped, read-only).

        The first call in a process checks ``targets.npy`` against the sha256 in ``cache.json``
        (caches without one: against the plan).

        Raises:
            CorruptCacheError: if ``targets.npy`` does not hold the plan's labels.
        """
        checked = self._checked_in_this_process()
        if "targets" not in checked:
            problem = self._targets_problem()
            if problem is not None:
                raise self._corrupt(problem)
        targets = np.load(self.root / TARGETS_FILE, mmap_mode="r", allow_pickle=False)
        if "targets" not in checked:
            expected = (self.num_records, len(self.config.classes))
            if targets.shape != expected:
                raise CorruptCacheError(
                    f"Corrupt synthetic ECG cache at {self.root}: {CONFIG_FILE} says {expected[0]} ECGs of {expected[1]} classes, "
                    f"but {TARGETS_FILE} holds labels of shape {targets.shape}; {REBUILD_HINT.format(root=self.root)}"
                )
            checked.add("targets")
        return targets

    def _targets_problem(self, against_plan: bool = False) -> str | None:
        """What is wrong with ``targets.npy``, or None; ``against_plan``: compare it with the plan too."""
        path = self.root / TARGETS_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return f"{TARGETS_FILE} is missing"
        expected = self.config.targets_sha256 or self._targets_sha256
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            return f"{TARGETS_FILE} is corrupt: its sha256 differs from the one recorded when it was written"
        if expected is None or against_plan:
            try:
                targets = _read_npy(data)
            except (ValueError, EOFError) as error:
                return f"{TARGETS_FILE} is unreadable ({error})"
            planned = (self._plan or self._load_plan()).targets  # the plan is not kept: readers stay light
            if targets.shape != planned.shape or not np.array_equal(targets, planned):
                return f"{TARGETS_FILE} does not hold the plan's labels"
            self._targets_sha256 = hashlib.sha256(data).hexdigest()
        return None

    @property
    def num_records(self) -> int:
        return self.config.num_records

    @property
    def num_shards(self) -> int:
        return self.config.num_shards

    @property
    def shard_size(self) -> int:
        return self.config.shard_size

    def shard_bounds(self, shard: int) -> tuple[int, int]:
        """Plan rows ``[start, stop)`` held by ``shard``."""
        if not 0 <= shard < self.num_shards:
            raise IndexError(f"shard should be in [0, {self.num_shards}), but got {shard}")
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.num_records)

    def shard_path(self, shard: int) -> Path:
        return self.root / SHARD_DIR / f"shard-{shard:06d}.npy"

    def part_path(self, shard: int) -> Path:
        return self.root / SHARD_DIR / f"shard-{shard:06d}.json"

    def _part_numbers(self) -> set[int]:
        shard_dir = self.root / SHARD_DIR
        if not shard_dir.is_dir():
            return set()
        return {int(match[1]) for name in os.listdir(shard_dir) if (match := PART_NAME.fullmatch(name))}

    def completed_shards(self) -> set[int]:
        """Shards whose manifest part exists (complete, see the module docstring); one directory listing."""
        return {shard for shard in self._part_numbers() if shard < self.num_shards}

    def is_complete(self, shard: int) -> bool:
        return self.part_path(shard).is_file()

    def missing_shards(self) -> list[int]:
        done = self.completed_shards()
        return [shard for shard in range(self.num_shards) if shard not in done]

    # -------------------------------------------------------------------------------------- locks
    def lock(self, blocking: bool = True):
        """Context manager holding the cache-wide lock (for writing cache.json, plan, manifest, builders/)."""
        return _flock(self.root / LOCK_FILE, blocking)

    def lock_shard(self, shard: int, blocking: bool = True):
        """Context manager holding ``shard``'s lock; yields whether it was acquired (always True if blocking).

        Hold it around generating and :meth:`write_shard`, and re-check :meth:`is_complete` after
        acquiring it: another builder may have finished the shard meanwhile.
        """
        self.shard_bounds(shard)
        return _flock(self.root / SHARD_DIR / f"shard-{shard:06d}.lock", blocking)

    @contextlib.contextmanager
    def register_builder(self) -> Iterator[None]:
        """Record this process as a builder of the cache while the block runs.

        ``create(..., overwrite=True)`` refuses to delete a cache with a registered builder, naming it.

        Raises:
            CacheMismatchError: if the cache was rebuilt with other settings since it was opened.
        """
        folder = self.root / BUILDERS_DIR
        with self.lock():
            self._check_config_unchanged("building")
            folder.mkdir(exist_ok=True)
            _live_builders(self.root)  # forget dead builders
            fd, name = tempfile.mkstemp(dir=folder, prefix=f"{socket.gethostname()}-{os.getpid()}-", suffix=".json")
            fcntl.flock(fd, fcntl.LOCK_EX)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                    "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
            os.write(fd, json.dumps(info).encode())
        try:
            yield
        finally:
            Path(name).unlink(missing_ok=True)
            os.close(fd)

    def _check_config_unchanged(self, doing: str) -> None:
        """Refuse to go on if ``cache.json`` on disk no longer matches this object's (another build overwrote it)."""
        try:
            on_disk = self._read_config()
        except CorruptCacheError as error:
            raise CacheMismatchError(f"Stopped {doing}: {error}") from None
        differences = on_disk.mismatches(self.config)
        if differences or on_disk.created != self.config.created:
            raise CacheMismatchError(
                f"Stopped {doing} the cache at {self.root}: another build replaced it (--overwrite) after this one "
                f"opened it{': ' + '; '.join(differences) if differences else ''}. Nothing was written under the old settings; "
                "rerun the build you want (one at a time)."
            )

    # ---------------------------------------------------------------------------------- writing
    def write_shard(self, shard: int, signals) -> None:
        """Write the ECGs of ``shard`` atomically and record its checksum; call while holding :meth:`lock_shard`.

        Args:
            shard: Shard index.
            signals: ``(rows, 12, num_samples)`` array or tensor in the cache's lead order and sampling
                rate (mV), ``rows`` being the number of plan rows of the shard. Stored as float16.

        Raises:
            CacheMismatchError: if another build replaced the cache (other settings) since it was opened.
        """
        start, stop = self.shard_bounds(shard)
        if self.is_complete(shard):
            raise FileExistsError(f"shard {shard} of {self.root} is already complete; delete its .json part to rewrite it")
        if hasattr(signals, "detach"):
            signals = signals.detach().cpu().numpy()
        signals = np.asarray(signals)
        expected = (stop - start, NUM_LEADS, self.config.num_samples)
        if signals.shape != expected:
            raise ValueError(f"shard {shard} signals should have shape {expected}, but got {signals.shape}")
        if not (np.isfinite(signals).all() and np.abs(signals).max(initial=0) < FLOAT16_MAX):
            raise ValueError(
                f"shard {shard} signals contain NaN/inf (after conversion to float16, |x| must stay below 65504 mV); "
                "check the generator's output."
            )
        signals = np.ascontiguousarray(signals, dtype=np.float16)
        buffer = io.BytesIO()
        np.save(buffer, signals, allow_pickle=False)
        data = buffer.getbuffer()
        self._check_config_unchanged(f"writing shard {shard} of")
        _write_atomic(self.shard_path(shard), data)
        part = {
            "shard": shard,
            "file": self.shard_path(shard).name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "num_bytes": len(data),
            "shape": list(signals.shape),
            "dtype": "float16",
            "config": self.config.key_dict(),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rows": self.plan.job_records(start, stop),
        }
        _write_atomic(self.part_path(shard), json.dumps(part).encode())

    def remove_shard(self, shard: int) -> None:
        """Delete a shard (part first, so it reads as missing), e.g. after :meth:`verify` found it corrupt."""
        self.part_path(shard).unlink(missing_ok=True)
        self.shard_path(shard).unlink(missing_ok=True)

    def _manifest_frame(self, shards) -> pd.DataFrame:
        frames = []
        for shard in sorted(shards):
            rows = pd.DataFrame(json.loads(self.part_path(shard).read_text())["rows"])
            rows["shard"] = shard
            rows["offset"] = np.arange(len(rows))
            frames.append(rows)
        seeded = self.config.strength < 1.0  # for_plan: a real-guided plan exactly
        columns = SEEDED_MANIFEST_COLUMNS if seeded else MANIFEST_COLUMNS
        manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        manifest["model_id"] = self.config.model_id
        manifest["sampler"] = self.config.sampler
        manifest["num_inference_steps"] = self.config.num_inference_steps
        manifest["guidance_scale"] = self.config.guidance_scale
        if seeded:
            manifest["strength"] = self.config.strength
        return manifest[columns]

    def merge_manifest(self) -> pd.DataFrame:
        """Concatenate the parts of all complete shards into ``manifest.csv`` and return it."""
        manifest = self._manifest_frame(self.completed_shards())
        with self.lock():
            _write_atomic(self.root / MANIFEST_FILE, manifest.to_csv(index=False).encode())
        return manifest

    def read_manifest(self) -> pd.DataFrame:
        """The merged manifest (``manifest.csv``), one row per finished ECG."""
        path = self.root / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; it is written at the end of {BUILD_HINT.format(root=self.root)}.")
        return pd.read_csv(path, keep_default_na=False, na_values={"num_inference_steps": [""]})

    # ---------------------------------------------------------------------------------- reading
    def load_shard(self, shard: int, mmap_mode: str | None = "r") -> np.ndarray:
        """``(rows, 12, num_samples)`` float16 of a complete shard, memory-mapped read-only by default.

        The first load in a process checks the shard (size, sha256, finite values, settings), which
        reads it once. ``mmap_mode`` is passed to ``np.load``: ``"c"`` (copy-on-write) gives a writable
        view that never changes the file, ``None`` reads the shard into memory.

        Raises:
            IncompleteCacheError: if the shard is not built.
            CorruptCacheError: if it is not what was written.
        """
        self.shard_bounds(shard)
        if not self.is_complete(shard):
            raise IncompleteCacheError(
                f"shard {shard} of {self.root} is not built; resume the build with {BUILD_HINT.format(root=self.root)}."
            )
        checked = self._checked_in_this_process()
        if shard not in checked:
            problem = self._shard_problem(shard)
            if problem is not None:
                raise self._corrupt(problem)
            checked.add(shard)
        return np.load(self.shard_path(shard), mmap_mode=mmap_mode, allow_pickle=False)

    def check_finished(self) -> None:
        """Raise :class:`IncompleteCacheError` unless every shard is complete."""
        missing = self.missing_shards()
        if missing:
            raise IncompleteCacheError(
                f"The cache at {self.root} is incomplete: {len(missing)} of {self.num_shards} shards are not built "
                f"(first: {missing[:5]}). Finish it with {BUILD_HINT.format(root=self.root)} (it resumes), "
                "or read it with on_demand=True and a generator."
            )

    # ---------------------------------------------------------------------------- verification
    def _shard_problem(self, shard: int) -> str | None:
        """What is wrong with complete shard ``shard`` (its part, size, sha256, header, values, settings), or None."""
        start, stop = self.shard_bounds(shard)
        path, part_path = self.shard_path(shard), self.part_path(shard)
        name, part_name = f"{SHARD_DIR}/{path.name}", f"{SHARD_DIR}/{part_path.name}"
        try:
            part = json.loads(part_path.read_bytes())
        except (OSError, ValueError) as error:
            return f"{part_name} (the manifest part of shard {shard}) is unreadable ({error})"
        expected_shape = [stop - start, NUM_LEADS, self.config.num_samples]
        if not isinstance(part, dict) or not isinstance(part.get("rows"), list):
            return f"{part_name} is not a manifest part (no rows)"
        if part.get("shard") != shard or part.get("file") != path.name:
            return f"{part_name} describes shard {part.get('shard')!r} ({part.get('file')!r}), not shard {shard}: parts were swapped or copied"
        if part.get("shape") != expected_shape or part.get("dtype") != "float16":
            return f"{part_name} records {part.get('dtype')} {part.get('shape')}, but shard {shard} should hold float16 {expected_shape}"
        recorded = part.get("config")  # absent in parts written before ecgaug recorded it
        if recorded is not None and not isinstance(recorded, dict):
            return f"{part_name} records no valid settings (config: {recorded!r})"
        if recorded is not None and recorded != self.config.key_dict():
            differences = [f"{key}={recorded.get(key)!r} (cache.json: {value!r})" for key, value in self.config.key_dict().items()
                           if recorded.get(key) != value]  # fmt: skip
            return f"{name} was generated with other settings than {CONFIG_FILE} says: {', '.join(differences)}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return f"{name} is missing"
        if len(data) != part.get("num_bytes"):
            return f"{name} is truncated or padded: {len(data)} bytes, expected {part.get('num_bytes')}"
        if hashlib.sha256(data).hexdigest() != part.get("sha256"):
            return f"{name} is corrupt: its sha256 differs from the one recorded when it was written"
        try:
            array = _read_npy(data)
        except (ValueError, EOFError) as error:
            return f"{name} is unreadable ({error})"
        if list(array.shape) != expected_shape or array.dtype != np.float16:
            return f"{name} holds {array.dtype} {list(array.shape)}, but should hold float16 {expected_shape}"
        if not _all_finite(array):
            return f"{name} holds NaN or inf values"
        return None

    def _rows_problem(self, shard: int, plan_rows: list[dict]) -> str | None:
        """Whether the part's rows are the plan's (call after :meth:`_shard_problem` found the part sound)."""
        start, stop = self.shard_bounds(shard)
        rows = json.loads(self.part_path(shard).read_bytes())["rows"]
        if len(rows) != stop - start:
            return f"{SHARD_DIR}/{self.part_path(shard).name} lists {len(rows)} rows, but shard {shard} holds {stop - start}"
        for offset, (row, planned) in enumerate(zip(rows, plan_rows[start:stop])):
            if not isinstance(row, dict):
                return f"{SHARD_DIR}/{self.part_path(shard).name} row {offset} is not a JSON object"
            if row != planned:
                key = next((key for key in planned if row.get(key) != planned[key]), "?")
                return (f"{SHARD_DIR}/{self.part_path(shard).name} row {offset} (ECG {start + offset}) has {key}={row.get(key)!r}, "
                        f"but the plan has {planned.get(key)!r}")  # fmt: skip
        return None

    def _manifest_problem(self, complete: list[int], finished: bool) -> str | None:
        """Whether ``manifest.csv`` is what merging the intact shards' parts gives (rows of unbuilt shards may lag)."""
        path = self.root / MANIFEST_FILE
        if not path.is_file():
            return f"{MANIFEST_FILE} is missing; rerun the build to merge it" if finished else None
        try:
            rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"))))
        except (OSError, ValueError, csv.Error) as error:
            return f"{MANIFEST_FILE} is unreadable ({error})"
        expected = list(csv.reader(io.StringIO(self._manifest_frame(complete).to_csv(index=False))))
        if rows[:1] != expected[:1]:
            return f"{MANIFEST_FILE} has columns {rows[0] if rows else []}, expected {expected[0]}"
        by_place = {tuple(row[-2:]): row for row in expected[1:]}
        for line, row in enumerate(rows[1:], start=2):
            want = by_place.get(tuple(row[-2:])) if len(row) == len(expected[0]) else None
            if want is None:
                if finished:
                    return f"{MANIFEST_FILE} line {line} names no ECG of the cache (shard, offset = {row[-2:]})"
                continue  # a row of a shard that is not built (any more): the manifest of a partial build lags
            if row != want:
                column = next(i for i, (mine, theirs) in enumerate(zip(row, want)) if mine != theirs)
                return (f"{MANIFEST_FILE} line {line} (ECG {want[0]}) has {expected[0][column]}={row[column]!r}, but its shard's "
                        f"part and {CONFIG_FILE} say {want[column]!r}")  # fmt: skip
        if finished and rows != expected:
            return f"{MANIFEST_FILE} has {len(rows) - 1} rows but {len(expected) - 1} ECGs are built; rerun the build to merge it"
        return None

    def verify(self, show_progress: bool = False) -> VerifyResult:
        """Check every file of the cache against what was recorded when it was written.

        ``plan.jsonl`` against ``plan_sha256``; ``targets.npy`` against the plan; each built shard's
        part (readable, its shard, the plan's rows, the cache's settings) and ``.npy`` (size, sha256,
        header, finite values); ``manifest.csv`` against the parts and ``cache.json``; each stored
        selection and scores file (its arrays' sha256, and that it still describes this cache).
        """
        problems: list[Problem] = []
        plan, plan_problem = self._read_plan()
        plan_rows = None
        if plan_problem is not None:  # then the parts' rows and targets.npy cannot be checked
            problems.append(plan_problem)
        else:
            self._plan, plan_rows = plan, plan.job_records()
            targets_problem = self._targets_problem(against_plan=True)
            if targets_problem is not None:
                problems.append(Problem(targets_problem, files=(TARGETS_FILE,)))
        complete, missing = [], []
        for shard in tqdm(range(self.num_shards), desc="verifying", disable=not show_progress):
            if not self.is_complete(shard):
                missing.append(shard)
                continue
            problem = self._shard_problem(shard)
            if problem is None and plan_rows is not None:
                problem = self._rows_problem(shard, plan_rows)
            if problem is None:
                complete.append(shard)
            else:
                files = (f"{SHARD_DIR}/{self.part_path(shard).name}", f"{SHARD_DIR}/{self.shard_path(shard).name}")
                problems.append(Problem(problem, shard, files))
        for extra in sorted(self._part_numbers() - set(range(self.num_shards))):
            part = f"{SHARD_DIR}/{self.part_path(extra).name}"
            problems.append(Problem(f"{part} is beyond the plan's {self.num_shards} shards", None, (part,)))
        manifest_problem = self._manifest_problem(complete, finished=not missing and len(complete) == self.num_shards)
        if manifest_problem is not None:
            problems.append(Problem(manifest_problem, files=(MANIFEST_FILE,)))
        problems += self._annex_problems()
        return VerifyResult(num_shards=self.num_shards, complete=complete, missing=missing, problems=problems)

    def delete_corrupt(self, result: VerifyResult) -> list[str]:
        """Delete the files of ``result``'s problems that a build regenerates; returns them (relative paths)."""
        deleted = []
        with self.lock():
            for problem in result.problems:
                for name in problem.files:  # a shard's part comes first, so the shard reads as missing
                    (self.root / name).unlink(missing_ok=True)
                    deleted.append(name)
        return deleted

    # --------------------------------------------------------- selections and stored scores (annexes)
    def _annex_dir(self, kind: str) -> Path:
        if kind not in ANNEX_KINDS:
            raise ValueError(f"kind should be one of {sorted(ANNEX_KINDS)}, but got {kind!r}")
        return self.root / ANNEX_KINDS[kind]

    def annex_names(self, kind: str) -> list[str]:
        """Names of the stored ``kind`` files (``"selection"`` or ``"scores"``)."""
        folder = self._annex_dir(kind)
        return sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []

    def _shard_checksums(self) -> dict[str, str | None]:
        """``{shard: sha256}`` recorded in the parts of all planned shards (``None``: not built or unreadable)."""
        checksums = {}
        for shard in range(self.num_shards):
            try:
                checksums[str(shard)] = json.loads(self.part_path(shard).read_bytes()).get("sha256")
            except (OSError, ValueError, AttributeError):
                checksums[str(shard)] = None
        return checksums

    def write_annex(self, kind: str, name: str, arrays: dict[str, np.ndarray], info: dict, *, overwrite: bool = False) -> Path:
        """Store arrays about the cache's ECGs (a selection, or classifier scores) beside the shards.

        The file ``<kind dir>/<name>.json`` records ``info``, each array's sha256, the cache's key
        settings (:meth:`CacheConfig.key_dict`) and every shard's sha256, so :meth:`read_annex` refuses
        it once the cache it describes has changed. Shards are never copied. Needs a finished cache.

        Raises:
            FileExistsError: if ``name`` exists and not ``overwrite``.
        """
        if not isinstance(name, str) or not ANNEX_NAME.fullmatch(name):
            raise ValueError(f"name should be letters, digits, '-' or '_' (at most 100), but got {name!r}")
        self.check_finished()
        folder = self._annex_dir(kind)
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.json"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True (--overwrite)")
        recorded = {}
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            data = buffer.getbuffer()
            file = f"{name}.{key}.npy"
            _write_atomic(folder / file, data)
            recorded[key] = {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "shape": list(np.shape(array))}
        header = {"format": ANNEX_FORMAT, "kind": kind, "name": name, **info, "arrays": recorded,
                  "cache": self.config.key_dict(), "shards": self._shard_checksums(),
                  "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        _write_atomic(path, json.dumps(header, indent=1).encode())
        return path

    def read_annex(self, kind: str, name: str) -> tuple[dict, dict[str, np.ndarray]]:
        """``(info, arrays)`` of a stored selection or scores file, checked against this cache.

        Raises:
            FileNotFoundError: naming the stored names, if there is no ``name``.
            CacheMismatchError: if it describes another cache (plan, model, text encoder, scheduler,
                settings, or a shard rebuilt or changed since), naming what differs.
            CorruptCacheError: if one of its files is damaged.
        """
        path = self._annex_dir(kind) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"No {kind} named {name!r} in {self.root} (stored: {self.annex_names(kind) or 'none'}).")
        info, arrays, problem, mismatch = self._read_annex(kind, name)
        if mismatch is not None:
            raise CacheMismatchError(f"The {kind} {name!r} ({path}) does not match the cache: {mismatch}. "
                                     f"Compute it again for this cache (`ecgaug cache filter ... --overwrite`).")  # fmt: skip
        if problem is not None:
            raise CorruptCacheError(f"Corrupt {kind} {name!r} in {self.root}: {problem}; delete it "
                                    f"(`ecgaug cache verify --delete_corrupt`) and compute it again.")  # fmt: skip
        return info, arrays

    def _read_annex(self, kind: str, name: str):
        """``(info, arrays, problem, mismatch)``: what is damaged, or what no longer matches the cache (or ``None``)."""
        folder = self._annex_dir(kind)
        try:
            info = json.loads((folder / f"{name}.json").read_bytes())
            if not isinstance(info, dict) or info.get("format") != ANNEX_FORMAT or info.get("kind") != kind:
                raise ValueError(f"not an ecgaug {kind} file (format {ANNEX_FORMAT!r})")
            recorded, cache_key, shards = info["arrays"], info["cache"], info["shards"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            return None, {}, f"{name}.json is unreadable ({error})", None
        current = self.config.key_dict()
        what = {"plan_sha256": "it was made for another plan", "model_id": "it was made for ECGs of another model",
                "text_encoder": "it was made for ECGs of another text encoder",
                "scheduler_config": "it was made for ECGs of another scheduler configuration"}  # fmt: skip
        for key in sorted(set(current) | set(cache_key), key=lambda k: (k not in what, k)):
            if cache_key.get(key) != current.get(key):
                detail = what.get(key, f"it was made for a cache with {key}={cache_key.get(key)!r}")
                if key in ("model_id", "text_encoder"):
                    detail += f" ({cache_key.get(key)!r}, the cache has {current.get(key)!r})"
                return info, {}, None, f"{detail} ({key} differs)"
        for shard, checksum in self._shard_checksums().items():
            if shards.get(shard) != checksum:
                return info, {}, None, f"shard {shard} was rebuilt or changed since it was written (its sha256 differs)"
        arrays = {}
        for key, entry in recorded.items():
            try:
                data = (folder / entry["file"]).read_bytes()
            except (OSError, KeyError, TypeError) as error:
                return info, {}, f"its array {key!r} is missing ({error})", None
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                return info, {}, f"{entry['file']} is corrupt: its sha256 differs from the one recorded when it was written", None
            try:
                arrays[key] = _read_npy(data)
            except (ValueError, EOFError) as error:
                return info, {}, f"{entry['file']} is unreadable ({error})", None
        return info, arrays, None, None

    def _annex_problems(self) -> list[Problem]:
        """What :meth:`verify` finds wrong with the stored selections and scores."""
        problems = []
        for kind, folder in ANNEX_KINDS.items():
            for name in self.annex_names(kind):
                _, _, problem, mismatch = self._read_annex(kind, name)
                message = problem or mismatch
                if message is not None:
                    files = [f"{folder}/{name}.json"] + [f"{folder}/{p.name}" for p in sorted((self.root / folder).glob(f"{name}.*.npy"))]
                    problems.append(Problem(f"{folder}/{name}.json ({kind}): {message}; compute it again "
                                            "(`ecgaug cache filter ... --overwrite`)", files=tuple(files)))  # fmt: skip
        return problems

    # ----------------------------------------------------------------------------------- summary
    def summary(self) -> dict:
        """A JSON-able overview: settings, progress, per-class counts and size on disk."""
        done = self.completed_shards()
        built = sum(self.shard_bounds(s)[1] - self.shard_bounds(s)[0] for s in done if s < self.num_shards)
        num_bytes = sum(p.stat().st_size for p in (self.root / SHARD_DIR).glob("shard-*.npy"))
        info = {key: value for key, value in self.config.to_dict().items() if key != "classes"}
        info.update(
            root=str(self.root),
            num_shards=self.num_shards,
            num_shards_complete=len(done),
            num_records_complete=built,
            finished=len(done) == self.num_shards,
            disk_bytes=num_bytes,
            records_per_class=self.plan.counts(),
        )
        return info

    def __len__(self) -> int:
        return self.num_records

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plan"] = None  # reloaded on first use; keeps DataLoader workers cheap to start
        return state

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, num_records={c.num_records}, model_id={c.model_id!r}, "
            f"lead_order={c.lead_order!r}, sampling_rate={c.sampling_rate:g}, num_samples={c.num_samples})"
        )

