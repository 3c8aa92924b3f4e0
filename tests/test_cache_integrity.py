"""The damage catalogue of issue 12: every kind of damage to a cache is caught by `cache verify` (one line,
exit 1, repaired by --delete_corrupt and a rebuild) and by AugmentedDataset (an error naming the file,
never wrong data); kill-and-resume at several points; the --overwrite race."""
import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_generator import CLASSES, FakeGenerator, real_labels, small_plan
from torch.utils.data import TensorDataset

import ecgaug.augment.cache as cache_module
from ecgaug.augment.builder import build_cache, run_build
from ecgaug.augment.cache import CacheBusyError, CacheConfig, CacheMismatchError, CorruptCacheError, SyntheticCache
from ecgaug.augment.dataset import AugmentedDataset
from ecgaug.commands import cache as cache_command
from ecgaug.settings import GenerationSettings

SHARD_SIZE = 8  # 25 jobs -> shards of 8, 8, 8, 1


def run(argv):
    """``ecgaug cache ...`` as ``ecgaug.cli`` runs it."""
    parser = argparse.ArgumentParser(prog="ecgaug")
    cache_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", *argv])
    return args.func(args)


def build_args(plan_path, root, *extra):
    return ["build", "--plan", str(plan_path), "--model_factory", "fake_generator:FakeGenerator", "--output_dir", str(root),
            "--shard_size", str(SHARD_SIZE), "--num_inference_steps", "2", "--no_progress", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished cache built by the CLI, and the saved plan it was built from."""
    folder = tmp_path_factory.mktemp("pristine")
    small_plan().save(folder / "plan.jsonl")
    assert run(build_args(folder / "plan.jsonl", folder / "cache")) == 0
    return folder / "cache", folder / "plan.jsonl"


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file of a cache, ignoring locks and the write times in parts and cache.json."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".lock" or path.name == ".lock":
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            values = json.loads(data)
            values.pop("written", None), values.pop("created", None)
            data = json.dumps(values, sort_keys=True).encode()
        digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


# ------------------------------------------------------------------------------------ damages
def flip_byte(path, position=-5):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def write_nan(path, rehash=False):
    """A NaN into a shard's values (the file keeps its size); ``rehash``: and the part's sha256 updated to match."""
    array = np.load(path)
    array[1, 3, 10] = np.nan
    np.save(path, array)
    if rehash:
        part_path = path.with_suffix(".json")
        part = json.loads(part_path.read_text())
        part["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        part_path.write_text(json.dumps(part))


def swap(first, second):
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def edit_json(path, edit, lines=False):
    if lines:  # plan.jsonl: edit row 5 (line 6)
        text = path.read_text().splitlines()
        row = json.loads(text[6])
        edit(row)
        text[6] = json.dumps(row)
        path.write_text("\n".join(text) + "\n")
    else:
        values = json.loads(path.read_text())
        edit(values)
        path.write_text(json.dumps(values))


def edit_text(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def part_label(part):
    part["rows"][2]["labels"] = "SBRAD" if part["rows"][2]["labels"] != "SBRAD" else "NORM"


def manifest_label(path):
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "SBRAD" if fields[1] != "SBRAD" else "NORM"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def shard(i, suffix=".npy"):
    return f"shards/shard-{i:06d}{suffix}"


# (name, damage(root), what `verify` prints, the file a reader's error names: None = (signal, target) readers do
#  not read that file, "rebuild": the error says cache.json is lost). Damage to cache.json is repaired by `build --overwrite`,
# every other by `verify --delete_corrupt` and the same build command.
DAMAGES = [
    ("shard byte flipped", lambda r: flip_byte(r / shard(1), 500), "shard-000001.npy is corrupt: its sha256 differs", shard(1)),
    ("shard header byte flipped", lambda r: flip_byte(r / shard(1), 20), "shard-000001.npy", shard(1)),
    ("NaN written into shard", lambda r: write_nan(r / shard(2)), "shard-000002.npy is corrupt", shard(2)),
    ("NaN written into shard, part re-hashed", lambda r: write_nan(r / shard(2), rehash=True), "shard-000002.npy holds NaN", shard(2)),
    ("shard truncated", lambda r: (r / shard(0)).write_bytes((r / shard(0)).read_bytes()[:5000]), "shard-000000.npy is truncated", shard(0)),
    ("shard padded", lambda r: (r / shard(0)).write_bytes((r / shard(0)).read_bytes() + b"\0" * 64), "shard-000000.npy is truncated or padded", shard(0)),
    ("shard deleted", lambda r: (r / shard(3)).unlink(), "shard-000003.npy is missing", shard(3)),
    ("two shards swapped", lambda r: swap(r / shard(0), r / shard(1)), "shard-000000.npy is corrupt", shard(0)),
    ("two shards swapped with their parts", lambda r: (swap(r / shard(0), r / shard(1)), swap(r / shard(0, ".json"), r / shard(1, ".json"))),
     "shard-000000.json describes shard 1", shard(0, ".json")),
    ("part truncated", lambda r: (r / shard(1, ".json")).write_bytes((r / shard(1, ".json")).read_bytes()[:40]),
     "shard-000001.json (the manifest part of shard 1) is unreadable", shard(1, ".json")),
    ("part sha256 edited", lambda r: edit_json(r / shard(1, ".json"), lambda p: p.update(sha256="0" * 64)), "shard-000001.npy is corrupt", shard(1)),
    ("part settings differ (mixed build)", lambda r: edit_json(r / shard(2, ".json"), lambda p: p["config"].update(num_inference_steps=5)),
     "shard-000002.npy was generated with other settings than cache.json says: num_inference_steps=5 (cache.json: 2)", shard(2)),
    ("part labels edited", lambda r: edit_json(r / shard(1, ".json"), part_label), "shard-000001.json row 2 (ECG 10) has labels=", None),
    ("targets byte flipped", lambda r: flip_byte(r / "targets.npy", -3), "targets.npy is corrupt", "targets.npy"),
    ("targets truncated", lambda r: (r / "targets.npy").write_bytes((r / "targets.npy").read_bytes()[:100]), "targets.npy is corrupt", "targets.npy"),
    ("targets deleted", lambda r: (r / "targets.npy").unlink(), "targets.npy is missing", "targets.npy"),
    ("manifest invalid UTF-8", lambda r: (r / "manifest.csv").write_bytes(b"\xff\xfe" + (r / "manifest.csv").read_bytes()), "manifest.csv is unreadable", None),
    ("manifest label edited", lambda r: manifest_label(r / "manifest.csv"), "manifest.csv line 4 (ECG 2) has labels=", None),
    ("manifest row deleted", lambda r: edit_text(r / "manifest.csv", (r / "manifest.csv").read_text().splitlines()[5] + "\n", ""),
     "manifest.csv has 24 rows but 25 ECGs are built", None),
    ("manifest model edited", lambda r: edit_text(r / "manifest.csv", ",fake-1,", ",fake-9,"), "manifest.csv line 2 (ECG 0) has model_id='fake-9'", None),
    ("manifest deleted", lambda r: (r / "manifest.csv").unlink(), "manifest.csv is missing", None),
    ("plan deleted", lambda r: (r / "plan.jsonl").unlink(), "plan.jsonl is missing", None),
    ("plan invalid UTF-8", lambda r: (r / "plan.jsonl").write_bytes(b"\xff" + (r / "plan.jsonl").read_bytes()), "plan.jsonl is unreadable", None),
    ("plan truncated", lambda r: (r / "plan.jsonl").write_bytes((r / "plan.jsonl").read_bytes()[:-30]), "plan.jsonl", None),
    ("plan report edited", lambda r: edit_json(r / "plan.jsonl", lambda row: row.update(report=row["report"] + "!"), lines=True),
     "plan.jsonl was changed: its sha256 differs", None),
    ("plan age edited", lambda r: edit_json(r / "plan.jsonl", lambda row: row.update(age=row["age"] + 1), lines=True), "plan.jsonl was changed", None),
    ("plan row schema broken", lambda r: edit_json(r / "plan.jsonl", lambda row: row.pop("seed"), lines=True), "plan.jsonl is unreadable", None),
    ("plan row not JSON", lambda r: edit_text(r / "plan.jsonl", '"seed"', "'seed'"), "plan.jsonl is unreadable", None),
    ("extra part beyond the plan", lambda r: shutil.copy(r / shard(1, ".json"), r / shard(7, ".json")), "shard-000007.json is beyond the plan's 4 shards", None),
    ("cache.json truncated", lambda r: (r / "cache.json").write_bytes((r / "cache.json").read_bytes()[:50]), "cache.json is unreadable", "rebuild"),
    ("cache.json invalid UTF-8", lambda r: (r / "cache.json").write_bytes(b"\xff" + (r / "cache.json").read_bytes()), "cache.json is unreadable", "rebuild"),
    ("cache.json schema broken", lambda r: edit_json(r / "cache.json", lambda c: c.pop("num_samples")), "cache.json is unreadable", "rebuild"),
    ("cache.json deleted, shards kept", lambda r: (r / "cache.json").unlink(), "cache.json is missing", "rebuild"),
    ("cache.json settings edited", lambda r: edit_json(r / "cache.json", lambda c: c.update(num_inference_steps=4)),
     "was generated with other settings than cache.json says: num_inference_steps=2 (cache.json: 4)", "shards/"),
    ("cache.json num_records edited", lambda r: edit_json(r / "cache.json", lambda c: c.update(num_records=24)),
     "cache.json says num_records=24, but plan.jsonl has 25 jobs", "rebuild"),
]  # fmt: skip


@pytest.mark.parametrize("name, damage, line, _", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_verify_reports_the_damage_and_the_rebuild_repairs_it(pristine, tmp_path, capsys, name, damage, line, _):
    source, plan_path = pristine
    root = tmp_path / "cache"
    shutil.copytree(source, root)
    damage(root)
    assert run(["verify", str(root)]) == 1
    captured = capsys.readouterr()
    assert line in captured.out + captured.err
    if name.startswith("cache.json"):
        assert run(build_args(plan_path, root)) == 1, "a build refuses a cache whose cache.json does not describe it"
        assert "--overwrite" in capsys.readouterr().err
        assert run(build_args(plan_path, root, "--overwrite")) == 0
    else:
        assert run(["verify", str(root), "--delete_corrupt"]) == 1
        assert "deleted " in capsys.readouterr().out
        assert run(build_args(plan_path, root)) == 0
    capsys.readouterr()
    assert run(["verify", str(root)]) == 0
    assert file_digests(root) == file_digests(source), "the repaired cache is bit-identical to the undamaged one"


@pytest.fixture(scope="module")
def pristine_items(pristine):
    return read_all(open_dataset(pristine[0]))


def open_dataset(root):
    targets, _ = real_labels()
    signals = torch.zeros(len(targets), 12, 1000)
    return AugmentedDataset(TensorDataset(signals, torch.from_numpy(targets)), root, classes=CLASSES, sampling_rate=100)


def read_all(dataset):
    return [dataset[i] for i in range(dataset.num_real, len(dataset))], dataset.targets[dataset.num_real :]


@pytest.mark.parametrize("name, damage, _, named_file", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_the_dataset_never_reads_damaged_data(pristine, pristine_items, tmp_path, name, damage, _, named_file):
    root = tmp_path / "cache"
    shutil.copytree(pristine[0], root)
    damage(root)
    if named_file is None:  # a file readers do not use (manifest, the parts' copy of the plan rows): same items
        items, targets = read_all(open_dataset(root))
        assert len(items) == len(pristine_items[0])
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(items, pristine_items[0]))
        np.testing.assert_array_equal(targets, pristine_items[1])
        return
    with pytest.raises(CorruptCacheError) as caught:
        read_all(open_dataset(root))  # raises at construction or at the first touch of the damaged shard
    message = str(caught.value)
    if named_file == "rebuild":
        assert "cache.json" in message and "--overwrite" in message
    else:
        assert named_file in message and "ecgaug cache verify --delete_corrupt" in message


@pytest.mark.parametrize("name, damage", [d[:2] for d in DAMAGES if d[0].startswith("plan")], ids=[d[0] for d in DAMAGES if d[0].startswith("plan")])
def test_readers_of_the_plan_never_read_a_damaged_plan(pristine, tmp_path, name, damage):
    root = tmp_path / "cache"
    shutil.copytree(pristine[0], root)
    damage(root)
    dataset = open_dataset(root)
    with pytest.raises(CorruptCacheError, match=r"plan\.jsonl .*ecgaug cache verify --delete_corrupt"):
        dataset.synthetic_info(len(dataset) - 1)  # reports and patients of dict items come from the plan too


def test_targets_of_a_cache_without_their_checksum_are_checked_against_the_plan(pristine, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(pristine[0], root)
    edit_json(root / "cache.json", lambda config: config.pop("targets_sha256"))  # as written by ecgaug < 0.2
    open_dataset(root)
    flip_byte(root / "targets.npy", -3)
    with pytest.raises(CorruptCacheError, match="targets.npy does not hold the plan's labels"):
        open_dataset(root)
    assert "targets.npy does not hold the plan's labels" in SyntheticCache(root).verify().problems[0].message


def test_a_shard_is_checked_once_per_process(pristine, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(pristine[0], root)
    dataset = open_dataset(root)
    first = dataset[dataset.num_real][0]
    flip_byte(root / shard(0), 500)  # after the check: this process keeps its verified map
    dataset._mmaps.clear()
    assert dataset[dataset.num_real][0].shape == first.shape
    with pytest.raises(CorruptCacheError, match="shard-000000.npy is corrupt"):
        open_dataset(root)[dataset.num_real]  # a new reader checks again

    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # a forked worker checks the shard itself, even though its parent did
        message = pool.apply(_read_in_child, (dataset, dataset.num_real))
    assert "shard-000000.npy is corrupt" in message


def _read_in_child(dataset, index):
    try:
        dataset[index]
    except CorruptCacheError as error:
        return str(error)
    return "read without error"


# ------------------------------------------------------------------------------ kill and resume
KILL_POINTS = [  # (file whose write is interrupted, how): "before" = killed just before writing it, "half" = mid-write
    ("targets.npy", "half"),
    ("cache.json", "before"),
    ("shard-000001.npy", "before"),  # while generating shard 1
    ("shard-000001.npy", "half"),
    ("shard-000001.json", "before"),  # the .npy is in place, its part not yet
    ("shard-000002.json", "half"),
    ("manifest.csv", "half"),
]


def _build_until_killed(root, plan, kill_file, how):
    real_write = cache_module._write_atomic

    def write_or_die(path, data):
        if path.name == kill_file:
            if how == "half":
                path.with_name(f".{path.name}.{os.getpid()}.tmp").write_bytes(bytes(data)[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, data)

    cache_module._write_atomic = write_or_die
    run_build(root, plan, FakeGenerator(), GenerationSettings(num_inference_steps=2), shard_size=SHARD_SIZE, show_progress=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted") / "cache"
    run_build(root, small_plan(), FakeGenerator(), GenerationSettings(num_inference_steps=2), shard_size=SHARD_SIZE, show_progress=False)
    return root


@pytest.mark.parametrize("kill_file, how", KILL_POINTS)
def test_a_build_killed_anywhere_resumes_bit_identically(uninterrupted, tmp_path, kill_file, how):
    plan, root = small_plan(), tmp_path / "cache"
    child = multiprocessing.get_context("fork").Process(target=_build_until_killed, args=(root, plan, kill_file, how))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL, "the builder should have been killed at the chosen point"
    cache, _ = run_build(root, plan, FakeGenerator(), GenerationSettings(num_inference_steps=2), shard_size=SHARD_SIZE, show_progress=False)
    assert not list(root.rglob("*.tmp")), "temporary files of the killed build are cleaned up"
    assert not list((root / "builders").glob("*")), "the killed builder's registration is gone"
    assert file_digests(root) == file_digests(uninterrupted)
    assert cache.verify().finished


# ------------------------------------------------------------------------------ builders cannot mix
def _slow_build(root, plan):
    run_build(root, plan, FakeGenerator(delay=2.0), GenerationSettings(num_inference_steps=5), shard_size=SHARD_SIZE, show_progress=False)


def test_overwrite_is_refused_while_another_builder_runs(tmp_path, capsys):
    plan = small_plan()
    plan.save(tmp_path / "plan.jsonl")
    root = tmp_path / "cache"
    builder = multiprocessing.get_context("fork").Process(target=_slow_build, args=(root, plan))
    builder.start()
    try:
        deadline = time.time() + 60
        while not list(root.glob("builders/*.json")) and time.time() < deadline:
            time.sleep(0.02)
        assert run(build_args(tmp_path / "plan.jsonl", root, "--overwrite", "--num_inference_steps", "4")) == 1
        error = capsys.readouterr().err
        assert f"pid {builder.pid} on host" in error and "is building it" in error and "\n" not in error.strip()
        with pytest.raises(CacheBusyError, match=f"pid {builder.pid}"):
            run_build(root, plan, FakeGenerator(), GenerationSettings(num_inference_steps=4), shard_size=SHARD_SIZE, overwrite=True,
                      show_progress=False)  # fmt: skip
    finally:
        os.kill(builder.pid, signal.SIGKILL)
        builder.join()
    assert SyntheticCache(root).config.num_inference_steps == 5, "the refused overwrite changed nothing"
    # the killed builder no longer counts: the overwrite goes ahead, and the cache is one build's
    assert run(build_args(tmp_path / "plan.jsonl", root, "--overwrite", "--num_inference_steps", "4")) == 0
    cache = SyntheticCache(root)
    assert cache.config.num_inference_steps == 4 and cache.verify().finished


def test_a_builder_never_writes_into_a_cache_rebuilt_with_other_settings(tmp_path):
    plan, root = small_plan(), tmp_path / "cache"
    settings = dict(model_id="fake-1", sampler="FakeScheduler", shard_size=SHARD_SIZE)
    old = SyntheticCache.create(root, CacheConfig.for_plan(plan, num_inference_steps=5, **settings), plan)
    SyntheticCache.create(root, CacheConfig.for_plan(plan, num_inference_steps=4, **settings), plan, overwrite=True)
    with old.lock_shard(0):
        with pytest.raises(CacheMismatchError, match="another build replaced it.*num_inference_steps"):
            old.write_shard(0, np.zeros((SHARD_SIZE, 12, 1000), np.float32))
    with pytest.raises(CacheMismatchError, match="another build replaced it"):
        build_cache(old, FakeGenerator(), show_progress=False)
    assert SyntheticCache(root).completed_shards() == set() and not list(root.glob("shards/*.npy"))
