"""Filtering a cache with a classifier, teacher scores as soft targets, per-item weights and transforms."""
import json
import shutil

import numpy as np
import pytest
import torch
from fake_generator import CLASSES, FakeGenerator, expected_signal, real_labels, small_plan
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ecgaug.augment.builder import build_cache
from ecgaug.augment.cache import CacheConfig, CacheMismatchError, SyntheticCache, generator_key
from ecgaug.augment.dataset import AugmentedDataset
from ecgaug.augment.filtering import (
    classifier_fingerprint,
    filter_cache,
    load_classifier,
    load_scores,
    load_selection,
    score_cache,
    teacher_scores,
)

SHARD_SIZE = 8


class OffsetClassifier(nn.Module):
    """Logits from the mean of lead I (the fake ECG's report-dependent offset, in [0, 1)): NORM, STTC and SBRAD
    score high for large offsets, MI for small ones. Counts its forward calls."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, len(CLASSES))
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[6.0], [-6.0], [6.0], [6.0]]))
            self.linear.bias.copy_(torch.tensor([-3.0, 3.0, -3.0, -3.0]))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x[:, :1, :].mean(dim=2))


def expected_scores(plan):
    means = np.array([expected_signal(r.report, r.heart_rate, r.seed).to(torch.float16)[0].float().mean().item()
                      for r in plan.jobs.itertuples()])  # fmt: skip
    return 1 / (1 + np.exp(-(means[:, None] * np.array([6.0, -6.0, 6.0, 6.0]) + np.array([-3.0, 3.0, -3.0, -3.0]))))


def make_cache(root, plan, **config):
    config = CacheConfig.for_plan(plan, model_id="fake-1", sampler="FakeScheduler", shard_size=SHARD_SIZE, **config)
    cache = SyntheticCache.create(root, config, plan)
    build_cache(cache, FakeGenerator(), show_progress=False)
    return cache


@pytest.fixture(scope="module")
def plan():
    return small_plan()  # 25 synthetic jobs


@pytest.fixture
def cache(plan, tmp_path):
    return make_cache(tmp_path / "cache", plan, text_encoder="hash-16")


@pytest.fixture(scope="module")
def real():
    targets, _ = real_labels()
    return torch.randn(len(targets), 12, 1000, generator=torch.Generator().manual_seed(0)), torch.from_numpy(targets)


def test_scores_follow_the_classifier_in_any_class_order(cache, plan):
    scores = score_cache(cache, OffsetClassifier(), batch_size=5)
    np.testing.assert_allclose(scores, expected_scores(plan), atol=1e-5)
    permuted = OffsetClassifier()
    order = [2, 0, 3, 1]
    with torch.no_grad():
        permuted.linear.weight.copy_(permuted.linear.weight[order])
        permuted.linear.bias.copy_(permuted.linear.bias[order])
    np.testing.assert_allclose(score_cache(cache, permuted, classes=[CLASSES[i] for i in order]), scores, atol=1e-6)


def test_filter_keeps_ecgs_whose_labels_all_pass_and_the_dataset_serves_only_them(cache, plan, real):
    classifier = OffsetClassifier()
    thresholds = {"NORM": 0.5, "MI": 0.5, "STTC": 0.3, "SBRAD": None}
    selection = filter_cache(cache, classifier, thresholds=thresholds, name="offsets")
    labels, scores = plan.targets > 0, expected_scores(plan)
    passes = np.ones(len(plan), dtype=bool)
    for c, name in enumerate(CLASSES):
        if thresholds[name] is not None:
            passes &= ~labels[:, c] | (scores[:, c] >= thresholds[name])
    assert 0 < passes.sum() < len(plan)  # the fixture filters something, not everything
    np.testing.assert_array_equal(selection.indices, np.flatnonzero(passes))
    assert selection.classifier_fingerprint == classifier_fingerprint(classifier)
    assert selection.kept == {n: int((labels[:, c] & passes).sum()) for c, n in enumerate(CLASSES)}
    stored = load_selection(cache.root, "offsets")
    np.testing.assert_array_equal(stored.indices, selection.indices)
    np.testing.assert_allclose(stored.scores, scores, atol=1e-5)
    assert (cache.root / "selections" / "offsets.json").is_file() and len(list(cache.root.glob("shards/*.npy"))) == cache.num_shards

    signals, targets = real
    dataset = AugmentedDataset(TensorDataset(signals, targets), cache.root, classes=CLASSES, sampling_rate=100, selection="offsets")
    assert (dataset.num_real, dataset.num_synthetic) == (40, int(passes.sum()))
    for item, row in zip(range(40, len(dataset)), selection.indices):
        x, y = dataset[item]
        job = plan.jobs.iloc[row]
        torch.testing.assert_close(x, expected_signal(job.report, job.heart_rate, job.seed).to(torch.float16).float())
        np.testing.assert_array_equal(y.numpy(), plan.targets[row])
        assert dataset.synthetic_info(item)["index"] == row
    np.testing.assert_array_equal(dataset.targets[40:], plan.targets[selection.indices])


def test_a_threshold_that_keeps_no_ecg_of_a_class_is_an_error_naming_it(cache):
    with pytest.raises(ValueError, match=r"none of the \d+ synthetic ECGs of class 'SBRAD'"):
        filter_cache(cache, OffsetClassifier(), thresholds={"SBRAD": 0.999}, name="strict")
    assert "strict" not in cache.annex_names("selection")
    with pytest.raises(ValueError, match="score in"):
        filter_cache(cache, OffsetClassifier(), thresholds=1.5)
    with pytest.raises(ValueError, match=r"classes \['AFIB'\]"):
        filter_cache(cache, OffsetClassifier(), thresholds={"AFIB": 0.5})


@pytest.mark.parametrize(
    "other, message",
    [
        ({"text_encoder": "minilm"}, "another text encoder"),
        ({"text_encoder": "hash-16", "scheduler_config": {"beta_end": 0.02}}, "another scheduler configuration"),
        ({"text_encoder": "hash-16", "plan_seed": 1}, "another plan"),
    ],
)
def test_a_selection_or_scores_of_another_cache_is_refused_naming_the_mismatch(cache, plan, real, tmp_path, other, message):
    filter_cache(cache, OffsetClassifier(), thresholds=0.2, name="mine")
    other = dict(other)
    other_plan = small_plan(seed=other.pop("plan_seed")) if "plan_seed" in other else plan
    other_cache = make_cache(tmp_path / "other", other_plan, **other)
    for folder in ("selections", "scores"):
        shutil.copytree(cache.root / folder, other_cache.root / folder)
    signals, targets = real
    with pytest.raises(CacheMismatchError, match=message):
        AugmentedDataset(TensorDataset(signals, targets), other_cache, classes=CLASSES, sampling_rate=100, selection="mine")
    with pytest.raises(CacheMismatchError, match=message):
        load_scores(other_cache, other_cache.annex_names("scores")[0])
    assert any(message in problem.message for problem in other_cache.verify().problems)


def test_a_changed_shard_invalidates_selections_and_verify_covers_them(cache, plan):
    name = teacher_scores(cache, OffsetClassifier())
    filter_cache(cache, scores=name, thresholds=0.2, name="mine")
    assert cache.verify().ok
    # Corrupt the stored scores: verify names the file, --delete_corrupt removes it.
    scores_file = cache.root / "scores" / f"{name}.scores.npy"
    data = bytearray(scores_file.read_bytes())
    data[-1] ^= 0xFF
    scores_file.write_bytes(bytes(data))
    problems = cache.verify().problems
    assert len(problems) == 1 and f"scores/{name}.json" in problems[0].message and "corrupt" in problems[0].message
    cache.delete_corrupt(cache.verify())
    assert cache.annex_names("scores") == [] and cache.verify().ok
    assert teacher_scores(cache, OffsetClassifier()) == name  # computed again
    # Rebuild shard 1 with other ECGs: the selection no longer describes the cache.
    start, stop = cache.shard_bounds(1)
    cache.remove_shard(1)
    cache.write_shard(1, np.zeros((stop - start, 12, 1000), dtype=np.float32))
    with pytest.raises(CacheMismatchError, match="shard 1 was rebuilt or changed"):
        load_selection(cache, "mine")
    with pytest.raises(CacheMismatchError, match="shard 1 was rebuilt or changed"):
        load_scores(cache, name)
    assert not cache.verify().ok
    assert teacher_scores(cache, OffsetClassifier()) == name  # the stale scores are replaced
    assert load_scores(cache, name)[: SHARD_SIZE].tolist() == score_cache(cache, OffsetClassifier())[: SHARD_SIZE].tolist()


def test_teacher_scores_are_computed_once_and_give_soft_targets(cache, plan, real):
    teacher = OffsetClassifier()
    name = teacher_scores(cache, teacher, batch_size=10)
    calls = teacher.calls
    assert calls > 0 and name == f"teacher-{classifier_fingerprint(teacher)[:12]}"
    assert teacher_scores(cache, teacher) == name and teacher.calls == calls  # stored: not scored again
    filter_cache(cache, teacher, thresholds=0.2, name="reuse")
    assert teacher.calls == calls

    signals, targets = real
    order = [3, 1, 0, 2]  # the base's classes in another order than the cache's
    base = TensorDataset(signals, targets[:, order])
    dataset = AugmentedDataset(base, cache, classes=[CLASSES[i] for i in order], sampling_rate=100, synthetic_targets=name)
    scores = expected_scores(plan)
    x, y = dataset[40 + 7]
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), scores[7, order], atol=1e-5)
    np.testing.assert_allclose(dataset.item_targets[40:], scores[:, order], atol=1e-5)
    np.testing.assert_array_equal(dataset.targets[40:], plan.targets[:, order])  # class balancing keeps the labels
    assert torch.equal(dataset[0][1], targets[0, order])
    with pytest.raises(ValueError, match="floating multi-hot"):
        AugmentedDataset(TensorDataset(signals, targets.long()), cache, classes=CLASSES, sampling_rate=100, synthetic_targets=name)
    with pytest.raises(FileNotFoundError, match="No scores named 'nope'"):
        AugmentedDataset(base, cache, classes=[CLASSES[i] for i in order], sampling_rate=100, synthetic_targets="nope")


def test_checkpoint_of_classifiers_train_scores_like_the_module(cache, tmp_path):
    from classifiers import create_model

    torch.manual_seed(0)
    model = create_model("resnet1d_small", num_classes=len(CLASSES)).eval()
    torch.save({"state_dict": model.state_dict(), "epoch": 0, "val_macro_auc": 0.5}, tmp_path / "best.pt")
    loaded = load_classifier(tmp_path / "best.pt", model_name="resnet1d_small", num_classes=len(CLASSES))
    assert classifier_fingerprint(loaded) == classifier_fingerprint(model)
    np.testing.assert_allclose(score_cache(cache, loaded), score_cache(cache, model), atol=1e-6)
    with pytest.raises(ValueError, match="model_name"):
        load_classifier(tmp_path / "best.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_classifier(tmp_path / "best.pt", model_name="resnet1d_small", num_classes=3)


class DictDataset(Dataset):
    def __init__(self, signals, targets):
        self.signals, self.targets = signals, targets

    def __len__(self):
        return len(self.signals)

    def __getitem__(self, index):
        return {"ecg": self.signals[index], "label": self.targets[index], "ecg_id": index}


def test_weights_and_transforms_apply_to_real_and_synthetic_items(cache, real):
    signals, targets = real
    dataset = AugmentedDataset(TensorDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100, synthetic_weight=0.25,
                               transform=lambda x: x[:, :500], target_transform=lambda y: y.sum())  # fmt: skip
    np.testing.assert_array_equal(dataset.weights, [1.0] * 40 + [0.25] * 25)
    assert dataset.item_weight(0) == 1.0 and dataset.item_weight(40) == 0.25 and dataset.item_weight(-1) == 0.25
    with pytest.raises(IndexError):
        dataset.item_weight(65)
    for index in (3, 50):
        x, y = dataset[index]
        plain = AugmentedDataset(TensorDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100)[index]
        assert torch.equal(x, plain[0][:, :500]) and torch.equal(y, plain[1].sum())
    dicts = AugmentedDataset(DictDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100, signal_key="ecg", target_key="label",
                             fill_values={"ecg_id": -1}, transform=lambda x: -x, target_transform=lambda y: 1 - y)  # fmt: skip
    for index in (3, 50):
        item, plain = dicts[index], AugmentedDataset(DictDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100,
                                                     signal_key="ecg", target_key="label", fill_values={"ecg_id": -1})[index]  # fmt: skip
        assert torch.equal(item["ecg"], -plain["ecg"]) and torch.equal(item["label"], 1 - plain["label"]) and item["ecg_id"] == plain["ecg_id"]
    with pytest.raises(ValueError, match="synthetic_weight"):
        AugmentedDataset(TensorDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100, synthetic_weight=-1)


def test_cache_key_covers_text_encoder_scheduler_and_precision_and_reads_old_caches(plan, tmp_path):
    from conftest import make_tiny_pipeline

    pipeline = make_tiny_pipeline()
    key = generator_key(pipeline)
    assert key["text_encoder"] == pipeline.text_encoder.name and key["scheduler_config"]["_class_name"] == "DPMSolverMultistepScheduler"
    assert key["precision"] == pipeline.precision
    config = CacheConfig.for_plan(plan, model_id="m", sampler="s", **key)
    again = CacheConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.mismatches(config) == [] and {"text_encoder", "scheduler_config", "precision"} <= set(config.key_dict())
    pipeline.cpu_decode_dtype = torch.float32 if pipeline.cpu_decode_dtype == torch.bfloat16 else torch.bfloat16
    assert [d.split(":")[0] for d in config.mismatches(CacheConfig.for_plan(plan, model_id="m", sampler="s", **generator_key(pipeline)))] == ["precision"]
    other = CacheConfig.for_plan(plan, model_id="m", sampler="s", **generator_key(make_tiny_pipeline(scheduler="ddim")))
    assert [d.split(":")[0] for d in config.mismatches(other)] == ["sampler", "scheduler_config"] or \
        [d.split(":")[0] for d in config.mismatches(other)] == ["scheduler_config"]  # fmt: skip
    assert generator_key(FakeGenerator()) == {"text_encoder": None, "scheduler_config": None, "precision": None}

    # A cache written before the fields were recorded: still read, verified, and resumed by any build.
    cache = make_cache(tmp_path / "old", plan)
    values = json.loads((cache.root / "cache.json").read_text())
    values.pop("text_encoder"), values.pop("scheduler_config"), values.pop("precision")
    (cache.root / "cache.json").write_text(json.dumps(values))
    old = SyntheticCache(cache.root)
    assert old.verify().finished and old.config.mismatches(config) == [m for m in old.config.mismatches(config) if "text_encoder" not in m]
    assert "text_encoder" not in old.config.key_dict()


def test_cache_filter_command_writes_a_selection_and_names_an_empty_class(cache, tmp_path, capsys):
    import argparse

    from classifiers import create_model

    from ecgaug.commands import cache as cache_command

    def run(argv):
        parser = argparse.ArgumentParser(prog="ecgaug")
        cache_command.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["cache", "filter", str(cache.root), *argv])
        return args.func(args)

    torch.manual_seed(0)
    model = create_model("resnet1d_small", num_classes=len(CLASSES)).eval()
    torch.save({"state_dict": model.state_dict(), "epoch": 0}, tmp_path / "best.pt")
    scores = score_cache(cache, model)
    common = ["--checkpoint", str(tmp_path / "best.pt"), "--model", "resnet1d_small", "--device", "cpu", "--no_progress"]
    threshold = float(np.median(scores[:, 0]))
    assert run([*common, "--threshold", "0", "--class_threshold", f"NORM={threshold}", "--name", "median"]) == 0
    out = capsys.readouterr().out
    selection = load_selection(cache, "median")
    passes = ~(cache.targets()[:, 0] > 0) | (scores[:, 0] >= threshold)
    np.testing.assert_array_equal(selection.indices, np.flatnonzero(passes))
    assert f"keeps {passes.sum()} of 25" in out and "teacher scores: teacher-" in out
    assert run([*common, "--threshold", "1.0", "--name", "none"]) == 1
    assert "keep none of the" in capsys.readouterr().err
    assert run([*common, "--threshold", "0", "--name", "median"]) == 1 and "already has a selection" in capsys.readouterr().err
    assert run([*common, "--class_threshold", "NORM"]) == 2
