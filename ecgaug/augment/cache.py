"""On-disk cache of synthetic ECGs: fixed-size float16 shards, a manifest, locks and verification.

Layout of a cache folder::

    cache_dir/
        cache.json              CacheConfig: the model, sampler, steps, format and plan that made the ECGs
        plan.jsonl              the GenerationPlan: one job (labels, report, patient, seed) per ECG
        targets.npy             (num_records, num_classes) uint8 multi-hot labels of the jobs, in
                                ``classes`` order (memory-mapped by readers, so they stay light)
        manifest.csv            merged manifest: one row per finished ECG (job + model_id, sampler,
                                num_inference_steps, guidance_scale, shard, offset)
        shards/
            shard-000000.npy    (rows, 12, num_samples) float16, ``np.save`` format (memory-mappable)
            shard-000000.json   manifest part: sha256 and size of the .npy and the rows it holds
            shard-000000.lock   held (``flock``) by the builder writing that shard
        .lock                   held while cache.json, plan.jsonl or manifest.csv are written

Shard ``i`` holds plan rows ``[i * shard_size, (i + 1) * shard_size)``. A shard is *complete*
exactly when its ``.json`` part exists: the ``.npy`` is written to a temporary file and moved
into place with ``os.replace`` first, the part last, so a killed builder leaves either a complete
shard or one the next build redoes. ``flock`` locks are released by the kernel when a process
dies, so there are no stale locks to clean up.

Keyed like torchvision's ``check_integrity``: every shard's sha256 is recorded, and
:meth:`SyntheticCache.verify` detects corrupt or truncated shards.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import __version__
from ..signal import RECORD_SECONDS, resolve_lead_order
from .plan import GenerationPlan

__all__ = ["CacheConfig", "CacheMismatchError", "IncompleteCacheError", "SyntheticCache", "VerifyResult"]

CACHE_FORMAT = "ecgaug-synthetic-cache/1"
CONFIG_FILE = "cache.json"
PLAN_FILE = "plan.jsonl"
TARGETS_FILE = "targets.npy"
MANIFEST_FILE = "manifest.csv"
SHARD_DIR = "shards"
LOCK_FILE = ".lock"
NUM_LEADS = 12
FLOAT16_MAX = 65504.0
BUILD_HINT = "`ecgaug cache build --output_dir {root} ...`"


class CacheMismatchError(ValueError):
    """The cache was made with other settings (model, length, lead order, plan...) than requested."""


class IncompleteCacheError(RuntimeError):
    """The cache has shards that are not built yet."""


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
    format: str = CACHE_FORMAT
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    ecgaug_version: str = __version__

    KEY_FIELDS = (
        "format", "model_id", "sampler", "num_inference_steps", "guidance_scale", "lead_order", "sampling_rate",
        "num_samples", "classes", "num_records", "plan_sha256", "shard_size", "dtype",
    )  # fmt: skip

    def __post_init__(self):
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
    ) -> "CacheConfig":
        """The config of a cache holding ``plan``'s ECGs, 10 s each at ``sampling_rate`` in ``lead_order``."""
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
        )

    @property
    def num_shards(self) -> int:
        return -(-self.num_records // self.shard_size)

    def mismatches(self, other: "CacheConfig") -> list[str]:
        """Human-readable differences in :attr:`KEY_FIELDS`, ``self`` being the existing cache."""
        differences = []
        for name in self.KEY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "classes" or name == "plan_sha256":
                    differences.append(f"{name}: the cache has {mine}, this build has {theirs}")
                else:
                    differences.append(f"{name}: the cache has {mine!r}, this build has {theirs!r}")
        return differences

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CacheConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"cache.json has unknown fields {sorted(unknown)}; it was written by a newer ecgaug?")
        return cls(**values)


@dataclass
class VerifyResult:
    """Outcome of :meth:`SyntheticCache.verify`.

    Attributes:
        num_shards: Shards the plan needs.
        complete: Shards that are built and intact.
        missing: Shards not built yet (a build resumes them); not an error by itself.
        problems: ``(shard, message)`` for every corrupt or truncated shard (``shard=-1``: the manifest).
    """

    num_shards: int
    complete: list[int]
    missing: list[int]
    problems: list[tuple[int, str]]

    @property
    def ok(self) -> bool:
        """No shard is corrupt (missing shards are allowed)."""
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


def _sha256_file(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _job_records(jobs: pd.DataFrame) -> list[dict]:
    """Plan rows as JSON-able dicts with exact (round-trippable) floats."""
    return [
        {"index": int(row.index), "labels": row.labels, "report": row.report, "age": float(row.age),
         "sex": row.sex, "heart_rate": float(row.heart_rate), "seed": int(row.seed)}
        for row in jobs.itertuples(index=False)
    ]  # fmt: skip


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


class SyntheticCache:
    """An existing cache folder (see the module docstring). Create one with :meth:`create`.

    Opening reads ``cache.json`` only; shards are memory-mapped on demand by :meth:`load_shard`.

    Args:
        root: The cache folder.

    Raises:
        FileNotFoundError: if ``root`` holds no cache, naming the command that builds one.
    """

    def __init__(self, root):
        self.root = Path(root)
        config_path = self.root / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"No synthetic ECG cache at {self.root} ({CONFIG_FILE} not found). Build one with {BUILD_HINT.format(root=self.root)}."
            )
        self.config = CacheConfig.from_dict(json.loads(config_path.read_text()))
        self._plan: GenerationPlan | None = None

    # ----------------------------------------------------------------------------------- creation
    @classmethod
    def create(cls, root, config: CacheConfig, plan: GenerationPlan, *, overwrite: bool = False) -> "SyntheticCache":
        """Create the cache at ``root``, or open it to resume if it was made with the same config and plan.

        Args:
            root: Cache folder; created if missing. An existing non-empty folder must be a cache.
            config: Settings of the cache, e.g. from :meth:`CacheConfig.for_plan`.
            plan: The jobs; must match ``config.plan_sha256`` / ``num_records`` / ``classes``.
            overwrite: Delete an existing cache in ``root`` (even a matching one) and start afresh.

        Raises:
            CacheMismatchError: if ``root`` holds a cache made with other settings and not ``overwrite``.
        """
        if (config.num_records, config.classes) != (len(plan), plan.classes):
            raise ValueError("config does not describe plan (num_records/classes differ); build it with CacheConfig.for_plan(plan, ...)")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        with _flock(root / LOCK_FILE, blocking=True):
            if (root / CONFIG_FILE).is_file():
                existing = cls(root)
                differences = existing.config.mismatches(config)
                if not differences and not overwrite:
                    return existing
                if not overwrite:
                    raise CacheMismatchError(
                        f"The cache at {root} was made with other settings than this build:\n  - "
                        + "\n  - ".join(differences)
                        + "\nUse another --output_dir, or pass --overwrite (overwrite=True) to delete this cache and rebuild it."
                    )
                cls._clear(root)
            else:
                others = [p.name for p in root.iterdir() if p.name != LOCK_FILE]
                if cls._is_unfinished_creation(root, others):  # killed before cache.json was written
                    cls._clear(root)
                elif others:
                    raise FileExistsError(
                        f"{root} is not empty and holds no ecgaug cache ({CONFIG_FILE} missing; found {sorted(others)[:5]}). "
                        "Choose a new or empty folder for the cache."
                    )
            (root / SHARD_DIR).mkdir(exist_ok=True)
            _write_atomic(root / PLAN_FILE, plan.to_jsonl().encode())
            targets = io.BytesIO()
            np.save(targets, plan.targets.astype(np.uint8), allow_pickle=False)
            _write_atomic(root / TARGETS_FILE, targets.getbuffer())
            _write_atomic(root / CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())
        cache = cls(root)
        cache._plan = plan
        return cache

    @staticmethod
    def _is_unfinished_creation(root: Path, names: list[str]) -> bool:
        """Only files that :meth:`create` writes before ``cache.json``, and no shard yet."""
        ours = {SHARD_DIR, PLAN_FILE, TARGETS_FILE}
        if not names or any(name not in ours and not (name.startswith(".") and name.endswith(".tmp")) for name in names):
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
        """The plan (loaded from ``plan.jsonl`` on first use)."""
        if self._plan is None:
            self._plan = GenerationPlan.load(self.root / PLAN_FILE)
        return self._plan

    def targets(self) -> np.ndarray:
        """``(num_records, num_classes)`` uint8 multi-hot labels of all planned ECGs (memory-mapped, read-only)."""
        targets = np.load(self.root / TARGETS_FILE, mmap_mode="r", allow_pickle=False)
        if targets.shape != (self.num_records, len(self.config.classes)):
            raise ValueError(f"{self.root / TARGETS_FILE} should have shape {(self.num_records, len(self.config.classes))}, "
                             f"but has {targets.shape}; run `ecgaug cache verify`")  # fmt: skip
        return targets

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

    def completed_shards(self) -> set[int]:
        """Shards whose manifest part exists (complete, see the module docstring); one directory listing."""
        shard_dir = self.root / SHARD_DIR
        if not shard_dir.is_dir():
            return set()
        names = os.listdir(shard_dir)
        return {int(name[6:12]) for name in names if name.startswith("shard-") and name.endswith(".json")}

    def is_complete(self, shard: int) -> bool:
        return self.part_path(shard).is_file()

    def missing_shards(self) -> list[int]:
        done = self.completed_shards()
        return [shard for shard in range(self.num_shards) if shard not in done]

    # -------------------------------------------------------------------------------------- locks
    def lock(self, blocking: bool = True):
        """Context manager holding the cache-wide lock (for writing cache.json, plan, manifest)."""
        return _flock(self.root / LOCK_FILE, blocking)

    def lock_shard(self, shard: int, blocking: bool = True):
        """Context manager holding ``shard``'s lock; yields whether it was acquired (always True if blocking).

        Hold it around generating and :meth:`write_shard`, and re-check :meth:`is_complete` after
        acquiring it: another builder may have finished the shard meanwhile.
        """
        self.shard_bounds(shard)
        return _flock(self.root / SHARD_DIR / f"shard-{shard:06d}.lock", blocking)

    # ---------------------------------------------------------------------------------- writing
    def write_shard(self, shard: int, signals) -> None:
        """Write the ECGs of ``shard`` atomically and record its checksum; call while holding :meth:`lock_shard`.

        Args:
            shard: Shard index.
            signals: ``(rows, 12, num_samples)`` array or tensor in the cache's lead order and sampling
                rate (mV), ``rows`` being the number of plan rows of the shard. Stored as float16.
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
        _write_atomic(self.shard_path(shard), data)
        jobs = self.plan.jobs.iloc[start:stop]
        part = {
            "shard": shard,
            "file": self.shard_path(shard).name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "num_bytes": len(data),
            "shape": list(signals.shape),
            "dtype": "float16",
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rows": _job_records(jobs),
        }
        _write_atomic(self.part_path(shard), json.dumps(part).encode())

    def remove_shard(self, shard: int) -> None:
        """Delete a shard (part first, so it reads as missing), e.g. after :meth:`verify` found it corrupt."""
        self.part_path(shard).unlink(missing_ok=True)
        self.shard_path(shard).unlink(missing_ok=True)

    def merge_manifest(self) -> pd.DataFrame:
        """Concatenate the parts of all complete shards into ``manifest.csv`` and return it."""
        frames = []
        for shard in sorted(self.completed_shards()):
            part = json.loads(self.part_path(shard).read_text())
            rows = pd.DataFrame(part["rows"])
            rows["shard"] = shard
            rows["offset"] = np.arange(len(rows))
            frames.append(rows)
        columns = ["index", "labels", "report", "age", "sex", "heart_rate", "seed"]
        manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns + ["shard", "offset"])
        manifest["model_id"] = self.config.model_id
        manifest["sampler"] = self.config.sampler
        manifest["num_inference_steps"] = self.config.num_inference_steps
        manifest["guidance_scale"] = self.config.guidance_scale
        manifest = manifest[columns + ["model_id", "sampler", "num_inference_steps", "guidance_scale", "shard", "offset"]]
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

        ``mmap_mode`` is passed to ``np.load``: ``"c"`` (copy-on-write) gives a writable view that
        never changes the file, ``None`` reads the shard into memory.
        """
        start, stop = self.shard_bounds(shard)
        if not self.is_complete(shard):
            raise IncompleteCacheError(
                f"shard {shard} of {self.root} is not built; resume the build with {BUILD_HINT.format(root=self.root)}."
            )
        array = np.load(self.shard_path(shard), mmap_mode=mmap_mode, allow_pickle=False)
        expected = (stop - start, NUM_LEADS, self.config.num_samples)
        if array.shape != expected or array.dtype != np.float16:
            raise ValueError(
                f"shard {shard} of {self.root} should hold float16 {expected}, but holds {array.dtype} {array.shape}; "
                "run `ecgaug cache verify`."
            )
        return array

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
    def verify(self, show_progress: bool = False) -> VerifyResult:
        """Check every built shard's size, sha256, header and rows against its manifest part and the plan."""
        complete, missing, problems = [], [], []
        jobs = self.plan.jobs
        try:
            if not np.array_equal(self.targets(), self.plan.targets):
                problems.append((-1, f"{TARGETS_FILE} does not match the plan's labels"))
        except (OSError, ValueError) as error:
            problems.append((-1, f"{TARGETS_FILE} is unreadable: {error}"))
        for shard in tqdm(range(self.num_shards), desc="verifying", disable=not show_progress):
            start, stop = self.shard_bounds(shard)
            if not self.is_complete(shard):
                missing.append(shard)
                continue
            problem = self._shard_problem(shard, start, stop, jobs)
            if problem is None:
                complete.append(shard)
            else:
                problems.append((shard, problem))
        manifest_path = self.root / MANIFEST_FILE
        num_built = sum(self.shard_bounds(s)[1] - self.shard_bounds(s)[0] for s in complete)
        if complete and not problems and not missing:  # a partial build's manifest is expected to be partial
            if not manifest_path.is_file():
                problems.append((-1, f"{MANIFEST_FILE} is missing; rerun the build to merge it"))
            else:
                with open(manifest_path) as handle:
                    num_rows = sum(1 for _ in handle) - 1
                if num_rows != num_built:
                    problems.append((-1, f"{MANIFEST_FILE} has {num_rows} rows but {num_built} ECGs are built; rerun the build to merge it"))
        return VerifyResult(num_shards=self.num_shards, complete=complete, missing=missing, problems=problems)

    def _shard_problem(self, shard: int, start: int, stop: int, jobs: pd.DataFrame) -> str | None:
        path = self.shard_path(shard)
        try:
            part = json.loads(self.part_path(shard).read_text())
        except (OSError, ValueError) as error:
            return f"manifest part {self.part_path(shard).name} is unreadable ({error})"
        if not path.is_file():
            return f"{path.name} is missing"
        size = path.stat().st_size
        if size != part["num_bytes"]:
            return f"{path.name} is truncated or padded: {size} bytes, expected {part['num_bytes']}"
        if _sha256_file(path) != part["sha256"]:
            return f"{path.name} is corrupt: sha256 differs from the one recorded when it was written"
        try:
            self.load_shard(shard)
        except (ValueError, OSError) as error:
            return f"{path.name} is unreadable: {error}"
        indices = [row["index"] for row in part["rows"]]
        if indices != list(range(start, stop)) or [row["seed"] for row in part["rows"]] != jobs["seed"].iloc[start:stop].tolist():
            return f"manifest part of shard {shard} does not match the plan's rows {start}..{stop - 1}"
        return None

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

