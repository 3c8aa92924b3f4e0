"""PTB-XL (Wagner et al. 2020) as a ``torch.utils.data.Dataset``.

Labels follow the PTB-XL benchmark (helme/ecg_ptbxl_benchmarking, ``code/utils/utils.py``:
``compute_label_aggregations`` and ``select_data``): a record's labels for a task are the SCP
codes of its ``scp_codes`` (whatever their likelihood) mapped through ``scp_statements.csv``,
records without a label for the task are left out, and the classes are the sorted labels of the
whole database, so every split shares one class list.

Reading some 20,000 WFDB records takes minutes, so the first use writes every record of the
database at one sampling rate into one float32 ``.npy`` (``cache_dir/signals{fs}.npy``, shape
``(num_records, 12, num_samples)``) with a JSON index of its ``ecg_id`` rows and the SHA-256 of
``ptbxl_database.csv``. A changed table is detected and the cache rebuilt; the array is opened
memory-mapped, lazily, in each DataLoader worker. Heart rates (:mod:`ecgaug.data.heart_rate`)
are cached beside it (``heart_rates{fs}.npz``).

Caches are written to ``*.tmp<PID>*`` files and renamed when complete. A run killed meanwhile
leaves its temporary file behind (about 1 GB for the full 100 Hz array); the next run removes
those whose process is gone. ``progress=False`` hides the caching and heart-rate bars.

Layout read (PhysioNet PTB-XL 1.0.3)::

    root/ptbxl_database.csv      ecg_id, patient_id, age, sex (0=male, 1=female), scp_codes,
                                 strat_fold, filename_lr, filename_hr (other columns ignored)
    root/scp_statements.csv      SCP code -> diagnostic, form, rhythm, diagnostic_class, ...
    root/records100/00000/00001_lr.{hea,dat}    100 Hz, 1000 samples, 12 leads, mV
    root/records500/00000/00001_hr.{hea,dat}    500 Hz, 5000 samples
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import wfdb
from tqdm.auto import tqdm

from ..signal import PTBXL_LEADS
from .folds import check_folds
from .heart_rate import measure_heart_rates

__all__ = [
    "PTBXL",
    "SPLIT_FOLDS",
    "TASKS",
    "build_heart_rate_cache",
    "build_signal_cache",
    "compute_labels",
    "database_fingerprint",
    "load_database",
    "load_heart_rates",
    "load_scp_statements",
    "read_record",
    "remove_stale_temp_files",
]

SPLIT_FOLDS = {"train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,), "all": tuple(range(1, 11))}
TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
# sampling rate -> (filename column of ptbxl_database.csv, samples per 10 s record)
SAMPLING_RATES = {100: ("filename_lr", 1000), 500: ("filename_hr", 5000)}
REQUIRED_COLUMNS = ("ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
CACHE_FORMAT_VERSION = 1
# Stored with the heart-rate cache: a change of method makes the cache stale.
HEART_RATE_METHOD = "multi-lead energy detector, median RR v3"
# Any temporary file of a cache of one sampling rate; the PID follows ".tmp".
TEMP_PATTERNS = ("signals{fs}.tmp*.npy", "signals{fs}.json.tmp*", "heart_rates{fs}.tmp*.npz")


def _check_choice(value, argument: str, valid: Iterable) -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"Unknown value '{value}' for argument {argument}. Valid values are {{{', '.join(map(repr, valid))}}}.")


def _require_file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(
            f"PTB-XL not found at {root} (missing {name}). "
            f"Download it with `ecgaug ptbxl download {root}` or pass download=True."
        )
    return path


def load_scp_statements(root) -> pd.DataFrame:
    """``scp_statements.csv`` indexed by SCP code (``description``, ``diagnostic``, ``form``,
    ``rhythm``, ``diagnostic_class``, ``diagnostic_subclass``, ...)."""
    return pd.read_csv(_require_file(Path(root), "scp_statements.csv"), index_col=0)


def load_database(root) -> pd.DataFrame:
    """``ptbxl_database.csv`` indexed by ``ecg_id`` (ascending), in the project's conventions.

    ``scp_codes`` is parsed to a dict, ``sex`` is ``'M'``/``'F'``/``None``, ``patient_id`` and
    ``strat_fold`` are ints, ``age`` is a float in years (NaN when unknown). Columns besides
    ``REQUIRED_COLUMNS`` are kept as they are.
    """
    table = pd.read_csv(_require_file(Path(root), "ptbxl_database.csv"))
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"ptbxl_database.csv in {root} should have the columns {list(REQUIRED_COLUMNS)}, but misses {missing}")
    if table.ecg_id.duplicated().any():
        raise ValueError(f"ptbxl_database.csv in {root} has duplicate ecg_id values: {table.ecg_id[table.ecg_id.duplicated()].tolist()[:10]}")
    invalid_sex = table.sex.notna() & ~table.sex.isin([0, 1])
    if invalid_sex.any():
        raise ValueError(f"sex in ptbxl_database.csv should be 0 (male), 1 (female) or empty, but got {table.sex[invalid_sex].unique().tolist()}")
    if table.patient_id.isna().any():
        raise ValueError(f"patient_id in ptbxl_database.csv should be set for every record, but is empty for ecg_id {table.ecg_id[table.patient_id.isna()].tolist()[:10]}")
    table = table.set_index("ecg_id").sort_index()
    table["scp_codes"] = table["scp_codes"].map(ast.literal_eval)
    # object dtype: pandas >= 3 would otherwise infer a string dtype and turn None into NaN
    table["sex"] = pd.Series([None if pd.isna(sex) else ("M", "F")[int(sex)] for sex in table["sex"]], index=table.index, dtype=object)
    table["patient_id"] = table["patient_id"].astype(np.int64)
    table["strat_fold"] = table["strat_fold"].astype(np.int64)
    table["age"] = table["age"].astype(np.float64)
    return table


def _task_vocabulary(statements: pd.DataFrame, task: str) -> dict[str, str] | None:
    """SCP code -> label for ``task``; ``None`` for ``"all"`` (every code is its own label)."""
    if task == "all":
        return None
    if task in ("diagnostic", "subdiagnostic", "superdiagnostic"):
        rows = statements[statements["diagnostic"] == 1.0]
        column = {"diagnostic": None, "subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}[task]
    else:  # form, rhythm
        rows, column = statements[statements[task] == 1.0], None
    labels = rows.index.to_series() if column is None else rows[column]
    return {code: label for code, label in labels.items() if isinstance(label, str)}


def compute_labels(scp_codes: pd.Series, statements: pd.DataFrame, task: str) -> pd.Series:
    """Sorted label lists of each record for ``task`` (benchmark ``compute_label_aggregations``).

    Args:
        scp_codes: Series of dicts ``{code: likelihood}`` (as :func:`load_database` returns).
        statements: :func:`load_scp_statements`.
        task: One of ``TASKS``.

    Returns:
        Series (same index) of sorted ``list[str]``; empty where the record has no label of the task.
    """
    _check_choice(task, "task", TASKS)
    vocabulary = _task_vocabulary(statements, task)
    if vocabulary is None:
        return scp_codes.map(lambda codes: sorted(codes))
    return scp_codes.map(lambda codes: sorted({vocabulary[code] for code in codes if code in vocabulary}))


def database_fingerprint(root: Path) -> str:
    """SHA-256 of ``ptbxl_database.csv``: caches derived from the database are keyed on it."""
    return hashlib.sha256((root / "ptbxl_database.csv").read_bytes()).hexdigest()


def _cache_paths(root: Path, sampling_rate: int, cache_dir) -> tuple[Path, Path, Path]:
    cache_dir = Path(cache_dir) if cache_dir is not None else root / "ecgaug_cache"
    return cache_dir / f"signals{sampling_rate}.npy", cache_dir / f"signals{sampling_rate}.json", cache_dir / f"heart_rates{sampling_rate}.npz"


def _check_sampling_rate(sampling_rate: int) -> None:
    _check_choice(sampling_rate, "sampling_rate", SAMPLING_RATES)


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"Cannot create the PTB-XL cache folder {cache_dir} ({error}). Pass cache_dir= a writable folder.") from error
    if not os.access(cache_dir, os.W_OK):
        raise PermissionError(f"The PTB-XL cache folder {cache_dir} is not writable. Pass cache_dir= a writable folder.")


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process; keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temp_files(cache_dir, sampling_rate: int) -> list[Path]:
    """Delete the temporary cache files of runs that were killed mid-write; returns their paths.

    Files of live processes (another run building the cache right now) are kept.
    """
    cache_dir = Path(cache_dir)
    removed = []
    for pattern in TEMP_PATTERNS:
        for path in cache_dir.glob(pattern.format(fs=sampling_rate)):
            pid = path.name.partition(".tmp")[2].split(".")[0]
            if pid.isdigit() and not _process_exists(int(pid)):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _write_atomically(path: Path, tmp_path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp_path)``, then rename it to ``path``; the temporary file never outlives an error."""
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def read_record(root, filename: str, sampling_rate: int) -> np.ndarray:
    """Read one WFDB record as float32 ``(12, num_samples)`` mV in PTB-XL lead order, NaN -> 0."""
    path = Path(root) / filename
    try:
        signal, fields = wfdb.rdsamp(str(path))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"PTB-XL record {path}.hea/.dat is missing; ptbxl_database.csv lists it. Re-download PTB-XL.") from error
    leads = tuple(name.upper() for name in fields["sig_name"])
    if leads != tuple(name.upper() for name in PTBXL_LEADS):
        raise ValueError(f"Record {path} should have the leads {PTBXL_LEADS}, but has {fields['sig_name']}")
    num_samples = SAMPLING_RATES[sampling_rate][1]
    if fields["fs"] != sampling_rate or signal.shape != (num_samples, len(PTBXL_LEADS)):
        raise ValueError(
            f"Record {path} should be {num_samples} samples at {sampling_rate} Hz, "
            f"but has {signal.shape[0]} samples at {fields['fs']} Hz"
        )
    return np.nan_to_num(signal.T).astype(np.float32)


def _signal_cache_is_fresh(array_path: Path, index_path: Path, fingerprint: str, sampling_rate: int) -> bool:
    if not (array_path.is_file() and index_path.is_file()):
        return False
    index = json.loads(index_path.read_text())
    if index.get("format_version") != CACHE_FORMAT_VERSION or index.get("database_sha256") != fingerprint:
        return False
    expected = (len(index["ecg_ids"]), len(PTBXL_LEADS), SAMPLING_RATES[sampling_rate][1])
    return np.load(array_path, mmap_mode="r").shape == expected


def build_signal_cache(root, sampling_rate: int = 100, *, cache_dir=None, rebuild: bool = False, progress: bool = True) -> Path:
    """Write every record of the database into one float32 ``.npy`` unless a fresh one exists.

    The array, ``(num_records, 12, num_samples)`` in ``ecg_id`` order, and its JSON index
    (``ecg_ids``, the SHA-256 of ``ptbxl_database.csv``) are written to temporary files and
    renamed, so an interrupted build never leaves a cache that looks complete; temporary files
    of killed runs are removed first (:func:`remove_stale_temp_files`).

    Args:
        root: PTB-XL folder.
        sampling_rate: 100 or 500 (Hz).
        cache_dir: Folder of the cache; defaults to ``root/ecgaug_cache``.
        rebuild: Rebuild even when the cache is fresh.
        progress: Show a progress bar while records are read.

    Returns:
        Path of the ``.npy`` file.
    """
    root = Path(root)
    _check_sampling_rate(sampling_rate)
    array_path, index_path, _ = _cache_paths(root, sampling_rate, cache_dir)
    _require_file(root, "ptbxl_database.csv")
    fingerprint = database_fingerprint(root)
    if array_path.parent.is_dir():
        remove_stale_temp_files(array_path.parent, sampling_rate)
    if not rebuild and _signal_cache_is_fresh(array_path, index_path, fingerprint, sampling_rate):
        return array_path
    if index_path.exists() and not rebuild:
        warnings.warn(f"The PTB-XL cache {array_path} is stale (ptbxl_database.csv changed) or incomplete; rebuilding it.", stacklevel=2)
    _make_cache_dir(array_path.parent)
    index_path.unlink(missing_ok=True)  # the array and its index must always agree

    database = load_database(root)
    filename_column, num_samples = SAMPLING_RATES[sampling_rate]

    def write_signals(tmp_path: Path) -> None:
        shape = (len(database), len(PTBXL_LEADS), num_samples)
        signals = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.float32, shape=shape)
        bar = tqdm(database[filename_column], desc=f"Caching PTB-XL {sampling_rate} Hz", unit="ecg", disable=not progress)
        for row, filename in enumerate(bar):
            signals[row] = read_record(root, filename, sampling_rate)
        signals.flush()
        del signals  # close the memory map before the rename

    _write_atomically(array_path, array_path.with_name(f"{array_path.stem}.tmp{os.getpid()}.npy"), write_signals)
    index = {
        "format_version": CACHE_FORMAT_VERSION,
        "sampling_rate": sampling_rate,
        "num_samples": num_samples,
        "database_sha256": fingerprint,
        "ecg_ids": database.index.tolist(),
    }
    tmp_index = index_path.with_name(f"{index_path.name}.tmp{os.getpid()}")
    _write_atomically(index_path, tmp_index, lambda path: path.write_text(json.dumps(index)))
    return array_path


def _read_heart_rate_cache(path: Path, fingerprint: str) -> pd.Series | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as cache:
        if str(cache["database_sha256"]) != fingerprint or str(cache["method"]) != HEART_RATE_METHOD:
            return None
        return pd.Series(cache["heart_rate"], index=pd.Index(cache["ecg_id"], name="ecg_id"), name="heart_rate")


def build_heart_rate_cache(
    root, sampling_rate: int = 100, *, cache_dir=None, num_workers: int = 0, rebuild: bool = False, progress: bool = True
) -> Path:
    """Measure the heart rate of every record (from the signal cache, built if needed) once.

    Writes ``cache_dir/heart_rates{fs}.npz`` (``ecg_id``, ``heart_rate`` in bpm with NaN where
    it cannot be measured, the database's SHA-256 and the method) atomically, unless a fresh one
    exists. ``num_workers`` threads measure in parallel; ``progress`` shows the caching and
    heart-rate bars.

    Returns:
        Path of the ``.npz`` file.
    """
    root = Path(root)
    array_path = build_signal_cache(root, sampling_rate, cache_dir=cache_dir, progress=progress)
    _, index_path, rates_path = _cache_paths(root, sampling_rate, cache_dir)
    fingerprint = database_fingerprint(root)
    if not rebuild and _read_heart_rate_cache(rates_path, fingerprint) is not None:
        return rates_path
    ecg_ids = np.asarray(json.loads(index_path.read_text())["ecg_ids"], dtype=np.int64)
    rates = measure_heart_rates(np.load(array_path, mmap_mode="r"), sampling_rate, num_workers=num_workers, progress=progress)
    fields = {
        "ecg_id": ecg_ids,
        "heart_rate": rates.astype(np.float64),
        "database_sha256": np.array(fingerprint),
        "method": np.array(HEART_RATE_METHOD),
    }
    tmp_path = rates_path.with_name(f"{rates_path.stem}.tmp{os.getpid()}.npz")
    _write_atomically(rates_path, tmp_path, lambda path: np.savez(path, **fields))
    return rates_path


def load_heart_rates(root, sampling_rate: int = 100, *, cache_dir=None, num_workers: int = 0, progress: bool = True) -> pd.Series:
    """Heart rate (bpm, NaN where unmeasurable) of every record, indexed by ``ecg_id``.

    Builds the caches on first use (see :func:`build_heart_rate_cache`).
    """
    path = build_heart_rate_cache(root, sampling_rate, cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    return _read_heart_rate_cache(path, database_fingerprint(Path(root)))


class PTBXL(torch.utils.data.Dataset):
    """PTB-XL 12-lead ECGs with multi-hot SCP labels.

    Args:
        root: PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/``...).
        split: ``"train"`` (folds 1-8), ``"val"`` (fold 9), ``"test"`` (fold 10) or ``"all"``;
            PTB-XL's recommended ``strat_fold`` split.
        folds: ``strat_fold`` values (1-10) to use instead of ``split``.
        sampling_rate: 100 (1000 samples per record) or 500 (5000 samples).
        task: ``"all"``, ``"diagnostic"``, ``"subdiagnostic"``, ``"superdiagnostic"``, ``"form"``
            or ``"rhythm"`` (benchmark label sets). Records without a label of the task are left out.
        classes: Class names to use instead of all labels of the task in the database; records
            with none of them are left out. Must be labels of the task; ``min_samples_per_class``
            is then not applied.
        min_samples_per_class: Keep only classes with at least this many records in the whole
            database (the benchmark's ``min_samples`` of 0 is 1 here).
        transform: Called on the signal tensor ``(12, num_samples)``.
        target_transform: Called on the target tensor ``(num_classes,)``.
        preprocessed: Read signals from the memory-mapped cache (built on first use) instead of
            one WFDB record per item.
        cache_dir: Cache folder, for a read-only ``root``; defaults to ``root/ecgaug_cache``.
        download: Download PTB-XL into ``root`` first if it is not there.
        progress: Show progress bars while the caches (signals, heart rates) are built.

    Items are ``(signal, target)``: ``signal`` float32 ``(12, num_samples)`` in mV, PTB-XL lead
    order (I, II, III, aVR, aVL, aVF, V1-V6), NaN read as 0; ``target`` float32 multi-hot
    ``(num_classes,)`` in ``classes`` order.

    A split with no records (``split="test"`` on a copy without fold 10) raises ``ValueError``
    naming the folds present, rather than giving an empty dataset.

    Attributes:
        classes (list[str]): Sorted class names. ``class_to_idx`` maps them to target columns.
        targets (np.ndarray): ``(N, num_classes)`` float32 multi-hot targets.
        metadata (pd.DataFrame): One row per item: ``ecg_id``, ``patient_id``, ``age``, ``sex``
            (``'M'``/``'F'``/``None``), ``strat_fold``, ``scp_codes`` (dict), ``labels`` (list of
            the item's classes) and ``filename`` (relative WFDB path at ``sampling_rate``).
        sampling_rate, num_samples, lead_order (``"ptbxl"``), root, folds, task.
    """

    lead_order = "ptbxl"

    def __init__(
        self,
        root,
        split: str = "train",
        *,
        folds: Iterable[int] | None = None,
        sampling_rate: int = 100,
        task: str = "superdiagnostic",
        classes: Sequence[str] | None = None,
        min_samples_per_class: int = 1,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        preprocessed: bool = True,
        cache_dir=None,
        download: bool = False,
        progress: bool = True,
    ) -> None:
        _check_choice(split, "split", SPLIT_FOLDS)
        _check_choice(task, "task", TASKS)
        _check_sampling_rate(sampling_rate)
        if min_samples_per_class < 1:
            raise ValueError(f"min_samples_per_class should be a positive integer, but got min_samples_per_class={min_samples_per_class}")
        self.root = Path(root)
        self.split = split if folds is None else None
        self.folds = self._resolve_folds(split, folds)
        self.task = task
        self.sampling_rate = sampling_rate
        self.num_samples = SAMPLING_RATES[sampling_rate][1]
        self.transform = transform
        self.target_transform = target_transform
        self.preprocessed = preprocessed
        self.cache_dir = cache_dir
        self.progress = progress

        if download:
            from .download import download_ptbxl

            download_ptbxl(self.root)
        database = load_database(self.root)
        statements = load_scp_statements(self.root)
        labels = compute_labels(database["scp_codes"], statements, task)
        self.classes = self._resolve_classes(labels, statements, classes, min_samples_per_class)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        class_set = set(self.classes)
        labels = labels.map(lambda names: [name for name in names if name in class_set])

        selected = database["strat_fold"].isin(self.folds) & (labels.map(len) > 0)
        if not selected.any():
            present = sorted(database["strat_fold"].unique().tolist())
            raise ValueError(
                f"PTB-XL at {self.root} has no records with {task} labels in folds {list(self.folds)} "
                f"(split={self.split!r}); folds present: {present}. Pass folds= a subset of them."
            )
        filename_column = SAMPLING_RATES[sampling_rate][0]
        metadata = database.loc[selected, ["patient_id", "age", "sex", "strat_fold", "scp_codes"]].copy()
        metadata["labels"] = labels[selected]
        metadata["filename"] = database.loc[selected, filename_column]
        self.metadata = metadata.reset_index()

        self.targets = np.zeros((len(self.metadata), len(self.classes)), dtype=np.float32)
        for row, names in enumerate(self.metadata["labels"]):
            self.targets[row, [self.class_to_idx[name] for name in names]] = 1.0

        self._signals = None  # memory map, opened on first __getitem__ in each worker
        self._heart_rates = None
        if preprocessed:
            self._array_path = build_signal_cache(self.root, sampling_rate, cache_dir=cache_dir, progress=progress)
            _, index_path, _ = _cache_paths(self.root, sampling_rate, cache_dir)
            cache_row = {ecg_id: row for row, ecg_id in enumerate(json.loads(index_path.read_text())["ecg_ids"])}
            self._cache_rows = np.array([cache_row[ecg_id] for ecg_id in self.metadata["ecg_id"]], dtype=np.int64)

    @staticmethod
    def _resolve_folds(split: str, folds: Iterable[int] | None) -> tuple[int, ...]:
        if folds is None:
            return SPLIT_FOLDS[split]
        return check_folds(folds, "folds")

    def _resolve_classes(self, labels: pd.Series, statements: pd.DataFrame, classes, min_samples_per_class: int) -> list[str]:
        counts = pd.Series([name for names in labels for name in names], dtype=object).value_counts()
        if classes is not None:
            classes = list(classes)
            vocabulary = _task_vocabulary(statements, self.task)
            known = set(statements.index) if vocabulary is None else set(vocabulary.values())
            unknown = [name for name in classes if name not in known]
            if unknown or len(set(classes)) != len(classes) or not classes:
                raise ValueError(
                    f"classes should be distinct {self.task} labels from {sorted(known)}, but got {classes} (unknown: {unknown})"
                )
            return classes
        return sorted(name for name, count in counts.items() if count >= min_samples_per_class)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.metadata)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preprocessed:
            if self._signals is None:
                self._signals = np.load(self._array_path, mmap_mode="r")
            signal = np.array(self._signals[self._cache_rows[index]])
        else:
            signal = read_record(self.root, self.metadata.at[index, "filename"], self.sampling_rate)
        signal = torch.from_numpy(signal)
        target = torch.from_numpy(self.targets[index].copy())
        if self.transform is not None:
            signal = self.transform(signal)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return signal, target

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_signals"] = None  # each worker opens its own memory map
        return state

    def heart_rates(self, num_workers: int = 0) -> np.ndarray:
        """Heart rate of each item, ``(N,)`` float64 bpm, NaN where it cannot be measured.

        Measured once for the whole database from the signal cache (built first if needed, also
        when ``preprocessed=False``) and cached beside it; see :mod:`ecgaug.data.heart_rate`.
        ``num_workers`` threads measure in parallel; the dataset's ``progress`` shows the bars.
        """
        if self._heart_rates is None:
            rates = load_heart_rates(self.root, self.sampling_rate, cache_dir=self.cache_dir, num_workers=num_workers,
                                     progress=self.progress)
            self._heart_rates = rates.loc[self.metadata["ecg_id"]].to_numpy()
        return self._heart_rates

    def extra_repr(self) -> str:
        split = f"{self.split} (folds {list(self.folds)})" if self.split is not None else f"folds {list(self.folds)}"
        return "\n".join(
            [
                f"Split: {split}",
                f"Task: {self.task} ({self.num_classes} classes)",
                f"Sampling rate: {self.sampling_rate} Hz ({self.num_samples} samples)",
            ]
        )

    def __repr__(self) -> str:
        body = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}"]
        body += self.extra_repr().splitlines()
        if self.transform is not None:
            body.append(f"Transform: {self.transform!r}")
        if self.target_transform is not None:
            body.append(f"Target transform: {self.target_transform!r}")
        return "\n".join([f"Dataset {type(self).__name__}"] + ["    " + line for line in body])
