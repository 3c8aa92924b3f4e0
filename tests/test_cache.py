import json

import numpy as np
import pytest
from fake_generator import small_plan

from ecgaug.augment.cache import CacheConfig, CacheMismatchError, IncompleteCacheError, SyntheticCache

SHARD_SIZE = 8


@pytest.fixture(scope="module")
def plan():
    return small_plan()  # 25 jobs -> shards of 8, 8, 8, 1


def config_for(plan, **overrides):
    settings = dict(model_id="fake-1", sampler="FakeScheduler", num_inference_steps=2, shard_size=SHARD_SIZE)
    settings.update(overrides)
    return CacheConfig.for_plan(plan, **settings)


def random_signals(cache, shard, seed=0):
    start, stop = cache.shard_bounds(shard)
    return np.random.default_rng(seed).standard_normal((stop - start, 12, cache.config.num_samples)).astype(np.float32)


def fill(cache, shards=None):
    written = {}
    for shard in range(cache.num_shards) if shards is None else shards:
        written[shard] = random_signals(cache, shard, seed=shard)
        with cache.lock_shard(shard):
            cache.write_shard(shard, written[shard])
    return written


def test_create_write_and_read_back(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    assert (cache.num_shards, cache.shard_bounds(3)) == (4, (24, 25))
    written = fill(cache)
    reopened = SyntheticCache(tmp_path / "cache")
    for shard, signals in written.items():
        array = reopened.load_shard(shard)
        assert isinstance(array, np.memmap) and array.dtype == np.float16
        np.testing.assert_array_equal(array, signals.astype(np.float16))
    manifest = reopened.merge_manifest()
    assert manifest["index"].tolist() == list(range(len(plan)))
    assert manifest[["shard", "offset"]].values.tolist() == [[i // SHARD_SIZE, i % SHARD_SIZE] for i in range(len(plan))]
    assert (manifest["model_id"] == "fake-1").all() and (manifest["num_inference_steps"] == 2).all()
    read = reopened.read_manifest()
    assert read["report"].tolist() == plan.jobs["report"].tolist()
    np.testing.assert_array_equal(read["heart_rate"], plan.jobs["heart_rate"])
    assert reopened.verify().finished


def test_write_shard_validates(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    with pytest.raises(ValueError, match=r"should have shape \(8, 12, 1000\)"):
        cache.write_shard(0, np.zeros((8, 12, 500), np.float32))
    with pytest.raises(ValueError, match="NaN/inf"):
        cache.write_shard(0, np.full((8, 12, 1000), 1e6, np.float32))
    fill(cache, [0])
    with pytest.raises(FileExistsError, match="already complete"):
        cache.write_shard(0, random_signals(cache, 0))


def test_shard_is_complete_only_once_its_part_is_written(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    fill(cache, [0, 2])
    # a builder killed between the .npy and the .json leaves an incomplete shard and a temporary file
    np.save(cache.shard_path(1), np.zeros((8, 12, 1000), np.float16))
    (cache.root / "shards" / ".shard-000001.npy.999.tmp").write_bytes(b"partial")
    assert cache.completed_shards() == {0, 2} and cache.missing_shards() == [1, 3]
    with pytest.raises(IncompleteCacheError, match="2 of 4 shards are not built"):
        cache.check_finished()
    with pytest.raises(IncompleteCacheError, match="shard 1 .* is not built"):
        cache.load_shard(1)
    result = cache.verify()
    assert (result.complete, result.missing, result.ok, result.finished) == ([0, 2], [1, 3], True, False)
    assert result.problems == []  # a partial build's manifest may lag; only corrupt shards are problems


def corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def corrupt_flip(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (corrupt_truncate, "truncated"),
    (corrupt_flip, "sha256 differs"),
    (lambda path: path.unlink(), "is missing"),
])  # fmt: skip
def test_verify_detects_damaged_shards(tmp_path, plan, damage, message):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    fill(cache)
    cache.merge_manifest()
    assert cache.verify().finished
    damage(cache.shard_path(2))
    result = cache.verify()
    assert not result.ok and result.complete == [0, 1, 3]
    assert [problem.shard for problem in result.problems] == [2] and message in result.problems[0].message
    cache.remove_shard(2)
    assert cache.missing_shards() == [2] and cache.verify().ok


def test_verify_detects_a_stale_manifest(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    fill(cache, [0, 1, 2])
    cache.merge_manifest()
    fill(cache, [3])
    assert [problem.message for problem in cache.verify().problems] == [
        "manifest.csv has 24 rows but 25 ECGs are built; rerun the build to merge it"
    ]


def test_existing_cache_is_resumed_or_refused(tmp_path, plan):
    root = tmp_path / "cache"
    first = SyntheticCache.create(root, config_for(plan), plan)
    fill(first, [0])
    resumed = SyntheticCache.create(root, config_for(plan), plan)
    assert resumed.completed_shards() == {0}
    for overrides, field in (({"model_id": "other"}, "model_id"), ({"sampling_rate": 250.0}, "num_samples"),
                             ({"lead_order": "mimic"}, "lead_order")):  # fmt: skip
        with pytest.raises(CacheMismatchError, match=rf"(?s){field}: the cache has .*--overwrite"):
            SyntheticCache.create(root, config_for(plan, **overrides), plan)
    other_plan = small_plan(seed=1)
    with pytest.raises(CacheMismatchError, match="plan_sha256"):
        SyntheticCache.create(root, config_for(other_plan), other_plan)
    rebuilt = SyntheticCache.create(root, config_for(plan, model_id="other"), plan, overwrite=True)
    assert rebuilt.config.model_id == "other" and rebuilt.completed_shards() == set()


def test_refuses_folders_that_are_not_caches(tmp_path, plan):
    (tmp_path / "results.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="holds no ecgaug cache"):
        SyntheticCache.create(tmp_path, config_for(plan), plan, overwrite=True)
    with pytest.raises(FileNotFoundError, match="ecgaug cache build"):
        SyntheticCache(tmp_path)


def test_a_creation_killed_before_cache_json_is_redone(tmp_path, plan):
    root = tmp_path / "cache"
    SyntheticCache.create(root, config_for(plan), plan)
    (root / "cache.json").unlink()
    (root / ".cache.json.123.tmp").write_text("{")
    assert SyntheticCache.create(root, config_for(plan), plan).num_shards == 4


def test_shard_lock_is_exclusive(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan), plan)
    with cache.lock_shard(1) as held:
        assert held
        with cache.lock_shard(1, blocking=False) as second:
            assert not second
        with cache.lock_shard(2, blocking=False) as other_shard:
            assert other_shard
    with cache.lock_shard(1, blocking=False) as after_release:
        assert after_release


def test_config_round_trip_and_summary(tmp_path, plan):
    cache = SyntheticCache.create(tmp_path / "cache", config_for(plan, lead_order="mimic", sampling_rate=50.0), plan)
    saved = json.loads((cache.root / "cache.json").read_text())
    assert CacheConfig.from_dict(saved) == cache.config and saved["num_samples"] == 500
    fill(cache, [1])
    summary = cache.summary()
    assert (summary["num_shards_complete"], summary["num_records_complete"], summary["finished"]) == (1, 8, False)
    np.testing.assert_array_equal(cache.targets(), plan.targets)
    assert summary["records_per_class"] == plan.counts() and summary["disk_bytes"] == cache.shard_path(1).stat().st_size
