import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_generator import FakeGenerator, expected_signal, small_plan

from ecgaug.augment.builder import build_cache, build_settings, run_build
from ecgaug.augment.cache import CacheConfig, CacheMismatchError, SyntheticCache
from ecgaug.settings import GenerationSettings

TESTS_DIR = Path(__file__).parent
SHARD_SIZE = 4


@pytest.fixture(scope="module")
def plan():
    return small_plan()  # 25 jobs -> 7 shards of 4 (the last holds 1)


def new_cache(root, plan, **overrides):
    settings = dict(model_id="fake-1", sampler="FakeScheduler", shard_size=SHARD_SIZE)
    settings.update(overrides)
    return SyntheticCache.create(root, CacheConfig.for_plan(plan, **settings), plan)


def assert_holds_the_plan(cache):
    """Every planned ECG is in the cache exactly once, at its place, with the generator's output."""
    config, jobs = cache.config, cache.plan.jobs
    manifest = cache.read_manifest()
    assert manifest["index"].tolist() == list(range(len(jobs)))
    assert manifest["seed"].tolist() == jobs["seed"].tolist()
    for row in jobs.itertuples():
        shard, offset = divmod(row.index, config.shard_size)
        expected = expected_signal(row.report, row.heart_rate, row.seed, sampling_rate=config.sampling_rate, lead_order=config.lead_order)
        np.testing.assert_array_equal(cache.load_shard(shard)[offset], expected.numpy().astype(np.float16))
    assert cache.verify().finished


def test_build_generates_every_job_once(tmp_path, plan):
    generator = FakeGenerator()
    settings = GenerationSettings(num_inference_steps=3, guidance_scale=2.0, lead_order="mimic", sampling_rate=50.0, batch_size=2)
    cache, result = run_build(tmp_path / "cache", plan, generator, settings, shard_size=SHARD_SIZE, show_progress=False)
    assert result.written == list(range(7)) and result.already_complete == []
    assert [call[0] for call in generator.calls] == [4, 4, 4, 4, 4, 4, 1]
    assert {call[1:] for call in generator.calls} == {(3, 2.0, "mimic", 50.0, 2)}
    assert (cache.config.num_inference_steps, cache.config.guidance_scale, cache.config.lead_order) == (3, 2.0, "mimic")
    assert_holds_the_plan(cache)
    again = build_cache(cache, generator, show_progress=False)
    assert again.written == [] and again.already_complete == list(range(7)) and len(generator.calls) == 7


def test_a_crashed_build_resumes_without_duplicates(tmp_path, plan):
    cache = new_cache(tmp_path / "cache", plan)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(cache, FakeGenerator(fail_after_calls=3), show_progress=False)
    assert cache.completed_shards() == {0, 1, 2}
    # what a kill between os.replace of the .npy and the .json part, or mid-write, leaves behind
    np.save(cache.shard_path(3), np.zeros((SHARD_SIZE, 12, 1000), np.float16))
    (cache.root / "shards" / ".shard-000004.npy.12345.tmp").write_bytes(b"half a shard")
    result = build_cache(cache, FakeGenerator(), show_progress=False)
    assert result.written == [3, 4, 5, 6] and result.already_complete == [0, 1, 2]
    assert not list((cache.root / "shards").glob("*.tmp"))
    assert_holds_the_plan(cache)


def test_generator_of_another_model_is_refused(tmp_path, plan):
    cache = new_cache(tmp_path / "cache", plan)
    with pytest.raises(CacheMismatchError, match="model 'fake-1' with sampler 'FakeScheduler'.*model 'fake-2'"):
        build_cache(cache, FakeGenerator(model_id="fake-2"), show_progress=False)


def _build_in_child(root, queue):
    cache = SyntheticCache(root)
    result = build_cache(cache, FakeGenerator(delay=0.05), merge=False, show_progress=False)
    queue.put(result.written)


def test_two_builders_on_one_cache_split_the_work(tmp_path, plan):
    cache = new_cache(tmp_path / "cache", plan)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    builders = [context.Process(target=_build_in_child, args=(cache.root, queue)) for _ in range(2)]
    for builder in builders:
        builder.start()
    written = [queue.get(timeout=60) for _ in builders]
    for builder in builders:
        builder.join(timeout=60)
        assert builder.exitcode == 0
    assert all(written), f"both builders should have worked, but wrote {written}"
    assert sorted(written[0] + written[1]) == list(range(7)), "each shard written by exactly one builder"
    cache.merge_manifest()
    assert_holds_the_plan(cache)


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.slow
def test_a_killed_build_process_resumes(tmp_path, plan):
    plan.save(tmp_path / "plan.jsonl")
    command = [sys.executable, "-m", "ecgaug.commands.cache", "build", "--plan", str(tmp_path / "plan.jsonl"),
               "--model_factory", "fake_generator:slow_generator", "--output_dir", str(tmp_path / "cache"),
               "--shard_size", str(SHARD_SIZE), "--no_progress"]  # fmt: skip
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list((tmp_path / "cache" / "shards").glob("shard-*.json")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cache = SyntheticCache(tmp_path / "cache")
    done = cache.completed_shards()
    assert 1 <= len(done) < 7, f"the kill should land mid-build, but {len(done)} shards were complete"
    result = build_cache(cache, FakeGenerator(), show_progress=False)
    assert sorted(result.written + result.already_complete) == list(range(7)) and set(result.written).isdisjoint(done)
    assert_holds_the_plan(cache)


@pytest.mark.slow
def test_torchrun_two_ranks_split_the_plan_and_merge_one_manifest(tmp_path, plan):
    # `-m ecgaug.commands.cache` runs the same command as `-m ecgaug.cli cache` without importing the other commands
    plan.save(tmp_path / "plan.jsonl")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "ecgaug.commands.cache", "build", "--plan", str(tmp_path / "plan.jsonl"),
               "--model_factory", "fake_generator:FakeGenerator", "--output_dir", str(tmp_path / "cache"),
               "--shard_size", str(SHARD_SIZE), "--no_progress"]  # fmt: skip
    completed = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "[rank 0/2]" in completed.stdout and "wrote 4 shards" in completed.stdout  # shards 0, 2, 4, 6
    assert "[rank 1/2]" in completed.stdout and "wrote 3 shards" in completed.stdout  # shards 1, 3, 5
    assert_holds_the_plan(SyntheticCache(tmp_path / "cache"))


def test_the_diffusets_pipeline_builds_batch_independent_shards(tmp_path, tiny_pipeline):
    plan = small_plan()
    plan = type(plan)(plan.jobs.iloc[:6], plan.classes)  # 6 jobs: shards of 4 and 2
    settings = GenerationSettings(num_inference_steps=2, batch_size=3)  # the default sampler, the tiny pipeline's
    cache, _ = run_build(tmp_path / "cache", plan, tiny_pipeline, settings, shard_size=SHARD_SIZE, show_progress=False)
    assert (cache.config.model_id, cache.config.sampler) == ("tiny-test", tiny_pipeline.sampler_name)
    assert cache.config.text_encoder == tiny_pipeline.text_encoder.name
    assert cache.config.scheduler_config["_class_name"] == "DPMSolverMultistepScheduler"
    assert cache.config.scheduler_config["algorithm_type"] == "sde-dpmsolver++"
    jobs = plan.jobs
    direct = tiny_pipeline.generate(jobs["report"].tolist(), jobs["age"].tolist(), jobs["sex"].tolist(), jobs["heart_rate"].tolist(),
                                    num_inference_steps=2, generator=[torch.Generator().manual_seed(int(s)) for s in jobs["seed"]])  # fmt: skip
    cached = np.concatenate([cache.load_shard(0), cache.load_shard(1)]).astype(np.float32)
    np.testing.assert_allclose(cached, direct.numpy(), atol=2e-3, rtol=1e-2)  # float16 storage
    assert cache.verify().finished


def test_a_generator_of_other_precision_is_refused(tmp_path, tiny_pipeline):
    plan = small_plan()
    plan = type(plan)(plan.jobs.iloc[:2], plan.classes)
    cache, _ = run_build(tmp_path / "cache", plan, tiny_pipeline, GenerationSettings(num_inference_steps=1), show_progress=False)
    assert cache.config.precision == tiny_pipeline.precision
    tiny_pipeline.cpu_decode_dtype = torch.float32 if tiny_pipeline.cpu_decode_dtype == torch.bfloat16 else torch.bfloat16
    with pytest.raises(CacheMismatchError, match=re.escape(f"precision {cache.config.precision!r}, but the generator uses {tiny_pipeline.precision!r}")):
        build_cache(cache, tiny_pipeline, show_progress=False)


def test_the_settings_resolve_the_default_steps_once_and_must_fit_the_generator(tmp_path, tiny_pipeline):
    plan = small_plan()
    fake = FakeGenerator()
    cache, _ = run_build(tmp_path / "fake", plan, fake, shard_size=SHARD_SIZE, show_progress=False)
    assert cache.config.num_inference_steps == GenerationSettings().num_inference_steps == 15, "the key records the steps run"
    assert {call[1] for call in fake.calls} == {15}
    assert build_settings(tiny_pipeline).scheduler == "sde-dpmsolver++"
    with pytest.raises(ValueError, match="the settings name sampler 'ddim'.*'sde-dpmsolver\\+\\+'"):
        run_build(tmp_path / "ddim", plan, tiny_pipeline, GenerationSettings(scheduler="ddim"), show_progress=False)
    with pytest.raises(ValueError, match="strength 1"):
        run_build(tmp_path / "s", plan, fake, GenerationSettings(strength=0.5), show_progress=False)
    with pytest.raises(TypeError, match="settings should be a GenerationSettings, but got dict"):
        run_build(tmp_path / "d", plan, fake, {"num_inference_steps": 4}, show_progress=False)
    for loose in ({"guidance_scale": 2.0}, {"num_inference_steps": 4}, {"scheduler": "ddim"}, {"batch_size": 2}):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{next(iter(loose))}'"):
            run_build(tmp_path / "t", plan, fake, GenerationSettings(), show_progress=False, **loose)
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            build_settings(fake, **loose)
    for name in ("ddim", "s", "d", "t"):
        assert not (tmp_path / name).exists(), "refused before any cache is created"


def test_generator_of_another_text_encoder_or_sampler_config_is_refused(tmp_path, plan):
    schedule = {"beta_schedule": "linear", "num_train_timesteps": 1000}
    made_by = FakeGenerator(text_encoder="minilm:all-MiniLM-L6-v2", scheduler_config=schedule)
    cache, _ = run_build(tmp_path / "cache", plan, made_by, shard_size=SHARD_SIZE, show_progress=False)
    assert cache.config.text_encoder == "minilm:all-MiniLM-L6-v2"
    assert cache.config.scheduler_config == {**schedule, "_class_name": "FakeScheduler"}
    build_cache(cache, FakeGenerator(text_encoder="minilm:all-MiniLM-L6-v2", scheduler_config=dict(schedule)), show_progress=False)
    with pytest.raises(CacheMismatchError, match="text encoder 'minilm:all-MiniLM-L6-v2'.*uses 'openai:text-embedding-ada-002'"):
        build_cache(cache, FakeGenerator(text_encoder="openai:text-embedding-ada-002", scheduler_config=schedule), show_progress=False)
    other = {**schedule, "beta_schedule": "squaredcos_cap_v2"}
    with pytest.raises(CacheMismatchError, match="beta_schedule: the cache has 'linear', the generator 'squaredcos_cap_v2'"):
        build_cache(cache, FakeGenerator(text_encoder="minilm:all-MiniLM-L6-v2", scheduler_config=other), show_progress=False)
    with pytest.raises(CacheMismatchError, match="another sampler configuration.*num_train_timesteps: the cache has 1000, the generator None"):
        build_cache(cache, FakeGenerator(text_encoder="minilm:all-MiniLM-L6-v2", scheduler_config={"beta_schedule": "linear"}),
                    show_progress=False)  # fmt: skip
    # a generator without text_encoder / scheduler (e.g. one that only implements ECGGenerator) cannot be compared on them
    build_cache(cache, FakeGenerator(), show_progress=False)


def test_a_cache_that_does_not_record_text_encoder_or_sampler_config_accepts_any(tmp_path, plan):
    cache = new_cache(tmp_path / "cache", plan)  # as written before the two were recorded: None
    assert (cache.config.text_encoder, cache.config.scheduler_config) == (None, None)
    result = build_cache(cache, FakeGenerator(text_encoder="minilm:x", scheduler_config={"beta_schedule": "linear"}), show_progress=False)
    assert result.written == list(range(7))
    assert_holds_the_plan(cache)
