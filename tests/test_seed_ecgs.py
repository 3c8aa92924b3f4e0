"""Real-guided generation in the plan, the builder, the cache and ``ecgaug cache build --seed_ecgs``.

A seeded plan names, for every synthetic ECG, the real record it starts from (``seed_index``); the
builder hands those records to ``generate`` as ``init_ecgs`` with the settings' ``strength``, and
refuses any other seed data set (other folds, a held-out split, too few records).
"""
import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from fake_generator import CLASSES, FakeGenerator, FakeTemplater, expected_signal, real_labels
from ptbxl_fixture import make_ptbxl

from ecgaug.augment.builder import build_cache, build_settings, check_seed_dataset, run_build
from ecgaug.augment.cache import CacheMismatchError, SyntheticCache
from ecgaug.augment.patients import PatientSampler
from ecgaug.augment.plan import GenerationPlan, PlanConfig, make_plan, seed_source
from ecgaug.commands import cache as cache_command
from ecgaug.settings import GenerationSettings
from ecgaug.signal import reorder_leads

NUM_RECORDS = 40


class SeedDataset(torch.utils.data.Dataset):
    """A PTB-XL-like data set over :func:`real_labels`: split, folds, ``metadata["ecg_id"]``, distinct signals."""

    lead_order = "ptbxl"

    def __init__(self, folds=(1, 2, 3), split="train", num_records=NUM_RECORDS, first_id=1, transform=None):
        self.targets, _ = real_labels(num_records)
        self.split, self.folds, self.transform = split, tuple(folds), transform
        self.metadata = pd.DataFrame({"ecg_id": np.arange(first_id, first_id + num_records)})

    def __len__(self):
        return len(self.targets)

    def signal(self, index):
        """Record ``index``: a constant offset per record and a ramp over the leads, so every lead and record differs."""
        return torch.full((12, 1000), float(index)) + torch.arange(12, dtype=torch.float32)[:, None] / 100

    def __getitem__(self, index):
        return self.signal(index), torch.from_numpy(self.targets[index])


class SeededFakeGenerator(FakeGenerator):
    """:class:`FakeGenerator` that accepts ``init_ecgs``/``strength``: output = strength * fake + (1 - strength) * seed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.init_calls = []  # (init_ecgs, strength) per call

    def generate(self, reports, age, sex, heart_rate, *, init_ecgs=None, strength=1.0, **kwargs):
        fake = super().generate(reports, age, sex, heart_rate, **kwargs)
        self.init_calls.append((None if init_ecgs is None else init_ecgs.clone(), strength))
        return fake if init_ecgs is None else strength * fake + (1 - strength) * init_ecgs


def seeded_generator():
    """Factory for ``ecgaug cache build --model_factory test_seed_ecgs:seeded_generator``."""
    return SeededFakeGenerator()


def seeded_plan(dataset=None, strategy="per_class", **config):
    dataset = dataset or SeedDataset()
    _, patients = real_labels(len(dataset))
    sampler = PatientSampler(CLASSES, dataset.targets, **patients)
    config = {"per_class": 3, **config} if strategy == "per_class" else config
    return make_plan(dataset.targets, CLASSES, reports=FakeTemplater(), patients=sampler,
                     config=PlanConfig(strategy=strategy, seed_ecgs=True, **config), seed_source=seed_source(dataset))  # fmt: skip


SETTINGS = GenerationSettings(num_inference_steps=4, strength=0.5)


def test_a_seeded_plan_names_a_seed_record_with_the_jobs_labels(tmp_path):
    dataset = SeedDataset()
    plan = seeded_plan(dataset)
    assert plan.has_seeds and plan.seed_source == seed_source(dataset)
    assert plan.seed_source["folds"] == [1, 2, 3] and plan.seed_source["num_records"] == NUM_RECORDS
    real = dataset.targets > 0
    for labels, seed_index in zip(plan.targets > 0, plan.jobs["seed_index"]):
        np.testing.assert_array_equal(labels, real[seed_index])  # co_occurrence="real": the seed's own label set
    assert len(set(plan.jobs["seed_index"])) > len(CLASSES)  # drawn, not one record per class
    plan.save(tmp_path / "plan.jsonl")
    loaded = GenerationPlan.load(tmp_path / "plan.jsonl")
    assert loaded.jobs["seed_index"].tolist() == plan.jobs["seed_index"].tolist() and loaded.fingerprint() == plan.fingerprint()
    # With co_occurrence="none" or a deficit strategy, the seed still carries the job's primary label.
    for other in (seeded_plan(dataset, co_occurrence="none"), seeded_plan(dataset, strategy="balance")):
        primary = np.array([CLASSES.index(labels.split("|")[0]) for labels in other.jobs["labels"]])
        assert real[other.jobs["seed_index"].to_numpy(), primary].all()


def test_the_seed_data_set_is_part_of_the_fingerprint_and_plain_plans_are_unchanged():
    plan = seeded_plan()
    other_records = seeded_plan(SeedDataset(first_id=1000))  # same labels and jobs, other records
    assert other_records.jobs.equals(plan.jobs) and other_records.fingerprint() != plan.fingerprint()
    targets, patients = real_labels(NUM_RECORDS)
    plain = make_plan(targets, CLASSES, reports=FakeTemplater(), patients=PatientSampler(CLASSES, targets, **patients),
                      config=PlanConfig(strategy="per_class", per_class=3))  # fmt: skip
    assert not plain.has_seeds and plain.seed_source is None
    assert "seed_index" not in plain.jobs.columns and "seed_index" not in plain.job_records()[0]
    assert plain.jobs[["labels", "report", "seed"]].equals(plan.jobs[["labels", "report", "seed"]])  # seeds draw nothing extra


def test_planning_with_seeds_needs_the_seed_data_set_and_refuses_a_held_out_split():
    targets, patients = real_labels(NUM_RECORDS)
    kwargs = dict(reports=FakeTemplater(), patients=PatientSampler(CLASSES, targets, **patients))
    with pytest.raises(ValueError, match="needs seed_source="):
        make_plan(targets, CLASSES, config=PlanConfig(strategy="per_class", per_class=2, seed_ecgs=True), **kwargs)
    with pytest.raises(ValueError, match="describing the 40 records"):
        make_plan(targets, CLASSES, config=PlanConfig(strategy="per_class", per_class=2, seed_ecgs=True),
                  seed_source=seed_source(SeedDataset(num_records=30)), **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="only used with PlanConfig.seed_ecgs=True"):
        make_plan(targets, CLASSES, config=PlanConfig(strategy="per_class", per_class=2), seed_source=seed_source(SeedDataset()), **kwargs)
    for split in ("test", "val", "all"):
        with pytest.raises(ValueError, match=f"training split, but the seed data set is split '{split}'"):
            seed_source(SeedDataset(split=split))
    with pytest.raises(ValueError, match=r"including the held-out folds \[3\]"):
        seed_source(SeedDataset(split=None, folds=(1, 2, 3)), held_out_folds=[3, 4])
    subset = torch.utils.data.Subset(SeedDataset(), [5, 6, 7])
    assert seed_source(subset)["num_records"] == 3 and seed_source(subset)["folds"] == [1, 2, 3]


def test_the_build_starts_every_ecg_from_its_seed_and_the_manifest_traces_it(tmp_path):
    dataset = SeedDataset()
    plan = seeded_plan(dataset)
    generator = SeededFakeGenerator()
    settings = GenerationSettings(num_inference_steps=4, strength=0.25, lead_order="mimic", sampling_rate=50.0)
    cache, _ = run_build(tmp_path / "cache", plan, generator, settings, shard_size=5, seed_dataset=dataset, show_progress=False)
    assert cache.config.strength == 0.25 and cache.config.key_dict()["strength"] == 0.25
    assert {strength for _, strength in generator.init_calls} == {0.25}
    manifest = cache.read_manifest()
    assert manifest["seed_index"].tolist() == plan.jobs["seed_index"].tolist()
    assert set(manifest["strength"]) == {0.25}
    for row in plan.jobs.itertuples():
        shard, offset = divmod(row.index, 5)
        seed = reorder_leads(dataset.signal(row.seed_index)[:, ::2], "ptbxl", "mimic")  # 100 -> 50 Hz of a constant-per-lead signal
        fake = expected_signal(row.report, row.heart_rate, row.seed, sampling_rate=50.0, lead_order="mimic")
        np.testing.assert_allclose(cache.load_shard(shard)[offset], (0.25 * fake + 0.75 * seed).numpy(), atol=0.02, rtol=2e-3)
    assert cache.verify().finished
    # strength is part of the key: another strength is another cache.
    with pytest.raises(CacheMismatchError, match="strength: the cache has 0.25, this build has 0.5"):
        run_build(tmp_path / "cache", plan, generator, GenerationSettings(num_inference_steps=4, strength=0.5, lead_order="mimic",
                  sampling_rate=50.0), shard_size=5, seed_dataset=dataset, show_progress=False)  # fmt: skip


def test_strength_and_seeds_go_together():
    plan, dataset, fake = seeded_plan(), SeedDataset(), SeededFakeGenerator()
    for settings in (None, GenerationSettings(num_inference_steps=4)):
        with pytest.raises(ValueError, match="needs settings with strength < 1"):
            run_build("unused", plan, fake, settings, seed_dataset=dataset, show_progress=False)
    targets, patients = real_labels(NUM_RECORDS)
    plain = make_plan(targets, CLASSES, reports=FakeTemplater(), patients=PatientSampler(CLASSES, targets, **patients))
    with pytest.raises(ValueError, match="generated from pure noise .strength 1."):
        build_settings(fake, SETTINGS)
    with pytest.raises(ValueError, match="takes no seed data set"):
        run_build("unused", plain, fake, seed_dataset=dataset, show_progress=False)
    assert build_settings(fake, SETTINGS, seeded=True).strength == 0.5


@pytest.mark.parametrize(
    "dataset, message",
    [
        (None, "needs the data set they index"),
        (SeedDataset(folds=(4, 5)), r"folds \[1, 2, 3\] in the plan but \[4, 5\] in the seed data set"),
        (SeedDataset(first_id=500), "ids_sha256"),
        (SeedDataset(num_records=8), "seed_index [0-9]+ .job [0-9]+. is outside the seed data set, which has 8 records"),
        (SeedDataset(split="test"), "seed data set is split 'test'"),
        (SeedDataset(transform=lambda x: x), "has a transform"),
    ],
)
def test_a_build_against_another_seed_data_set_is_refused(tmp_path, dataset, message):
    plan = seeded_plan(SeedDataset())
    with pytest.raises(ValueError, match=message):
        run_build(tmp_path / "cache", plan, SeededFakeGenerator(), SETTINGS, seed_dataset=dataset, show_progress=False)
    assert not (tmp_path / "cache").exists(), "refused before the cache is created"


def test_resuming_a_real_guided_cache_needs_its_seeds(tmp_path):
    dataset = SeedDataset()
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_build(tmp_path / "cache", seeded_plan(dataset), SeededFakeGenerator(fail_after_calls=1), SETTINGS, shard_size=4,
                  seed_dataset=dataset, show_progress=False)  # fmt: skip
    cache = SyntheticCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="needs the data set they index"):
        build_cache(cache, SeededFakeGenerator(), show_progress=False)
    build_cache(cache, SeededFakeGenerator(), seed_dataset=dataset, show_progress=False)
    assert cache.verify().finished and cache.read_manifest()["seed_index"].tolist() == cache.plan.jobs["seed_index"].tolist()
    check_seed_dataset(cache.plan, dataset)


def test_the_tiny_pipeline_builds_what_generate_makes_from_the_seeds(tmp_path, tiny_pipeline):
    dataset = SeedDataset()
    plan = seeded_plan(dataset, per_class=1)
    settings = GenerationSettings(num_inference_steps=4, strength=0.5, batch_size=8)
    cache, _ = run_build(tmp_path / "cache", plan, tiny_pipeline, settings, seed_dataset=dataset, show_progress=False)
    jobs = plan.jobs
    expected = tiny_pipeline.generate(
        jobs["report"].tolist(), jobs["age"].tolist(), jobs["sex"].tolist(), jobs["heart_rate"].tolist(),
        init_ecgs=torch.stack([dataset.signal(i) for i in jobs["seed_index"]]), strength=0.5, num_inference_steps=4,
        generator=[torch.Generator().manual_seed(int(s)) for s in jobs["seed"]], batch_size=8,
    )  # fmt: skip
    np.testing.assert_allclose(cache.load_shard(0).astype(np.float32), expected.numpy(), atol=2e-3, rtol=2e-3)
    unseeded = tiny_pipeline.generate(jobs["report"].tolist(), jobs["age"].tolist(), jobs["sex"].tolist(), jobs["heart_rate"].tolist(),
                                      num_inference_steps=4, generator=[torch.Generator().manual_seed(int(s)) for s in jobs["seed"]])  # fmt: skip
    assert not np.allclose(unseeded.numpy(), expected.numpy(), atol=1e-2), "the seeds change the ECGs"


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="ecgaug")
    cache_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", *argv])
    return args.func(args)


def test_cli_builds_a_real_guided_cache_from_a_ptbxl_split(tmp_path, capsys):
    root = make_ptbxl(tmp_path / "ptbxl", num_records=40)
    base = ["build", "--ptbxl", str(root), "--model_factory", "test_seed_ecgs:seeded_generator", "--target_count", "12",
            "--strategy", "target", "--shard_size", "8", "--no_progress", "--num_inference_steps", "4"]  # fmt: skip
    with pytest.raises(SystemExit, match="--seed_ecgs .* needs --strength < 1"):
        run_cli([*base, "--output_dir", str(tmp_path / "c"), "--seed_ecgs"])
    with pytest.raises(SystemExit, match="--strength 0.5 < 1 needs --seed_ecgs"):
        run_cli([*base, "--output_dir", str(tmp_path / "c"), "--strength", "0.5"])
    assert run_cli([*base, "--output_dir", str(tmp_path / "c"), "--seed_ecgs", "--strength", "0.5", "--split", "test"]) == 1
    assert "seed data set is split 'test'" in capsys.readouterr().err
    assert run_cli([*base, "--output_dir", str(tmp_path / "c"), "--seed_ecgs", "--strength", "0.5"]) == 0
    cache = SyntheticCache(tmp_path / "c")
    assert cache.config.strength == 0.5 and cache.plan.seed_source["split"] == "train"
    assert cache.plan.seed_source["folds"] == [1, 2, 3, 4, 5, 6, 7, 8]
    manifest = cache.read_manifest()
    assert manifest["seed_index"].tolist() == cache.plan.jobs["seed_index"].tolist() and cache.verify().finished
    with pytest.raises(SystemExit, match="--seed_ecgs shape a new plan"):
        run_cli(["build", "--plan", str(tmp_path / "c" / "plan.jsonl"), "--output_dir", str(tmp_path / "d"), "--seed_ecgs"])
    assert run_cli(["build", "--plan", str(tmp_path / "c" / "plan.jsonl"), "--output_dir", str(tmp_path / "d"),
                    "--model_factory", "test_seed_ecgs:seeded_generator"]) == 1  # fmt: skip
    assert "real-guided plan" in capsys.readouterr().err
