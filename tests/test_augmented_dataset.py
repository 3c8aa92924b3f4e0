import numpy as np
import pytest
import torch
from fake_generator import CLASSES, FakeGenerator, expected_signal, real_labels, small_plan
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ecgaug.augment.builder import run_build
from ecgaug.augment.cache import CacheConfig, CacheMismatchError, IncompleteCacheError, SyntheticCache
from ecgaug.augment.dataset import AugmentedDataset
from ecgaug.settings import GenerationSettings
from ecgaug.signal import reorder_leads, resample

SHARD_SIZE = 8


@pytest.fixture(scope="module")
def plan():
    return small_plan()  # 25 synthetic jobs over 40 real records


@pytest.fixture(scope="module")
def cache(plan, tmp_path_factory):
    cache, _ = run_build(tmp_path_factory.mktemp("cache"), plan, FakeGenerator(), shard_size=SHARD_SIZE, show_progress=False)
    return cache


@pytest.fixture(scope="module")
def real():
    targets, _ = real_labels()
    signals = torch.randn(len(targets), 12, 1000, generator=torch.Generator().manual_seed(0))
    return signals, torch.from_numpy(targets)


def expected(plan, synthetic_index, **kwargs):
    row = plan.jobs.iloc[synthetic_index]
    return expected_signal(row.report, row.heart_rate, row.seed, **kwargs).to(torch.float16).to(torch.float32)


class DictDataset(Dataset):
    def __init__(self, signals, targets):
        self.signals, self.targets_ = signals, targets

    def __len__(self):
        return len(self.signals)

    def __getitem__(self, index):
        return {"ecg": self.signals[index].numpy(), "label": self.targets_[index].numpy(), "age": 50.0, "ecg_id": index + 1}


def test_tensor_dataset_real_then_synthetic(cache, plan, real):
    signals, targets = real
    dataset = AugmentedDataset(TensorDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100)
    assert (len(dataset), dataset.num_real, dataset.num_synthetic) == (65, 40, 25)
    assert dataset.synthetic_mask.tolist() == [False] * 40 + [True] * 25
    assert not dataset.is_synthetic(39) and dataset.is_synthetic(40) and dataset.is_synthetic(-1)
    x, y = dataset[3]
    assert torch.equal(x, signals[3]) and torch.equal(y, targets[3])
    for index in (40, 52, 64):
        x, y = dataset[index]
        assert (x.shape, x.dtype, y.shape, y.dtype) == ((12, 1000), torch.float32, (4,), torch.float32)
        torch.testing.assert_close(x, expected(plan, index - 40))
        assert y.tolist() == plan.targets[index - 40].tolist()
    np.testing.assert_array_equal(dataset.targets, np.concatenate([targets.numpy(), plan.targets]))
    assert dataset.synthetic_info(45)["report"] == plan.jobs["report"][5]
    with pytest.raises(IndexError):
        dataset[65]
    assert "40 real, 25 synthetic" in repr(dataset)


def test_single_label_targets_become_class_indices(tmp_path):
    targets, patients = real_labels()
    labels = torch.from_numpy(targets[:, [0, 2, 3]].argmax(axis=1) * 1).long()
    labels[targets[:, 1] > 0] = 1  # MI+STTC records -> MI
    single = small_plan(co_occurrence="none")
    cache, _ = run_build(tmp_path / "single", single, FakeGenerator(), shard_size=SHARD_SIZE, show_progress=False)
    dataset = AugmentedDataset(TensorDataset(torch.zeros(40, 12, 1000), labels), cache, classes=CLASSES, sampling_rate=100)
    _, y = dataset[40]
    assert y.dtype == torch.int64 and y.ndim == 0 and CLASSES[int(y)] == single.jobs["labels"][0]
    assert dataset.targets.shape == (40 + len(single),) and dataset.targets.dtype == np.int64


def test_multi_label_cache_is_refused_for_single_label_data(cache):
    with pytest.raises(CacheMismatchError, match="--co_occurrence none"):
        AugmentedDataset(TensorDataset(torch.zeros(4, 12, 1000), torch.zeros(4, dtype=torch.long)), cache, classes=CLASSES,
                         sampling_rate=100)  # fmt: skip


def test_dict_items_keep_their_keys_and_numpy_types(cache, plan, real):
    signals, targets = real
    base = DictDataset(signals, targets)
    with pytest.raises(ValueError, match=r"keys \['ecg_id'\].*fill_values"):
        AugmentedDataset(base, cache, classes=CLASSES, sampling_rate=100, signal_key="ecg", target_key="label")
    with pytest.raises(KeyError, match="signal_key"):
        AugmentedDataset(base, cache, classes=CLASSES, sampling_rate=100)
    dataset = AugmentedDataset(base, cache, classes=CLASSES, sampling_rate=100, signal_key="ecg", target_key="label",
                               fill_values={"ecg_id": -1})  # fmt: skip
    item = dataset[41]
    assert list(item) == ["ecg", "label", "age", "ecg_id"] and item["ecg_id"] == -1
    assert item["age"] == plan.jobs["age"][1]
    assert isinstance(item["ecg"], np.ndarray) and item["ecg"].dtype == np.float32 and item["label"].dtype == np.float32
    np.testing.assert_allclose(item["ecg"], expected(plan, 1).numpy())


def test_signals_are_converted_to_the_base_rate_and_lead_order(tmp_path, plan, real):
    _, targets = real
    mimic, _ = run_build(tmp_path / "mimic", plan, FakeGenerator(), GenerationSettings(lead_order="mimic"), shard_size=SHARD_SIZE,
                         show_progress=False)  # fmt: skip
    base = TensorDataset(torch.zeros(40, 12, 5000, dtype=torch.float64), targets)
    dataset = AugmentedDataset(base, mimic, classes=CLASSES, sampling_rate=500)
    x, _ = dataset[40]
    assert x.shape == (12, 5000) and x.dtype == torch.float64
    stored = torch.from_numpy(np.asarray(mimic.load_shard(0)[0], dtype=np.float32))
    torch.testing.assert_close(x, resample(reorder_leads(stored, "mimic", "ptbxl"), 5000).double())
    torch.testing.assert_close(resample(x, 1000).float(), expected(plan, 0), atol=1e-4, rtol=0)


def test_caches_that_do_not_fit_are_refused(cache, real):
    signals, targets = real
    base = TensorDataset(signals, targets)
    with pytest.raises(CacheMismatchError, match=r"10 s records .* last 5 s"):
        AugmentedDataset(base, cache, classes=CLASSES, sampling_rate=200)
    with pytest.raises(CacheMismatchError, match="has classes"):
        AugmentedDataset(base, cache, classes=["NORM", "MI", "STTC", "AFIB"], sampling_rate=100)
    with pytest.raises(CacheMismatchError, match="made by model 'fake-1', not 'ptbxl-lite"):
        AugmentedDataset(base, cache, classes=CLASSES, sampling_rate=100, model_id="ptbxl-lite-0")
    with pytest.raises(ValueError, match="pass sampling_rate="):
        AugmentedDataset(base, cache, classes=CLASSES)
    with pytest.raises(ValueError, match="pass classes="):
        AugmentedDataset(base, cache, sampling_rate=100)
    with pytest.raises(ValueError, match=r"channel-first \(12, num_samples\)"):
        AugmentedDataset(TensorDataset(signals.transpose(1, 2), targets), cache, classes=CLASSES, sampling_rate=100)


def test_a_lead_order_that_is_not_the_bases_leads_is_refused(cache, real):
    eight = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    with pytest.raises(ValueError, match=r"lead_order names 8 leads .* the base's signals have 12 leads"):
        AugmentedDataset(TensorDataset(*real), cache, classes=CLASSES, sampling_rate=100, lead_order=eight)


def test_nan_base_targets_are_an_error_naming_the_record(cache, real):
    signals, targets = real
    targets = targets.clone()
    targets[7, 2] = float("nan")
    dataset = AugmentedDataset(TensorDataset(signals, targets), cache, classes=CLASSES, sampling_rate=100)
    with pytest.raises(ValueError, match=r"base target 7 is NaN"):
        dataset.targets


def test_class_order_is_matched_by_name(cache, plan, real):
    signals, targets = real
    order = [3, 1, 0, 2]
    dataset = AugmentedDataset(TensorDataset(signals, targets[:, order]), cache, classes=[CLASSES[i] for i in order], sampling_rate=100)
    assert dataset[40][1].tolist() == plan.targets[0, order].tolist()


def test_dataloader_workers_read_the_same_items(cache, real):
    dataset = AugmentedDataset(TensorDataset(*real), cache, classes=CLASSES, sampling_rate=100)
    loader = DataLoader(dataset, batch_size=16, num_workers=2, multiprocessing_context="fork")
    signals = torch.cat([batch[0] for batch in loader])
    expected_signals = torch.stack([dataset[i][0] for i in range(len(dataset))])
    assert torch.equal(signals, expected_signals)
    assert sorted(dataset._mmaps) == [0, 1, 2, 3], "the main process maps the shards it reads itself"


def test_on_demand_generates_missing_shards_on_first_use(tmp_path, plan, real):
    root = tmp_path / "lazy"
    SyntheticCache.create(root, CacheConfig.for_plan(plan, model_id="fake-1", sampler="FakeScheduler", shard_size=SHARD_SIZE), plan)
    with pytest.raises(IncompleteCacheError, match="on_demand=True"):
        AugmentedDataset(TensorDataset(*real), root, classes=CLASSES, sampling_rate=100)
    with pytest.raises(CacheMismatchError, match="model 'fake-2'"):
        AugmentedDataset(TensorDataset(*real), root, classes=CLASSES, sampling_rate=100, on_demand=True, generator=FakeGenerator("fake-2"))
    generator = FakeGenerator()
    dataset = AugmentedDataset(TensorDataset(*real), root, classes=CLASSES, sampling_rate=100, on_demand=True, generator=generator)
    assert len(dataset) == 65 and dataset.cache.completed_shards() == set()
    x, _ = dataset[40 + 17]  # shard 2
    torch.testing.assert_close(x, expected(plan, 17))
    assert dataset.cache.completed_shards() == {2} and len(generator.calls) == 1
    dataset[40 + 16]
    assert len(generator.calls) == 1, "a generated shard is read from the cache afterwards"
    assert SyntheticCache(root).verify().ok


def test_wraps_the_ptbxl_dataset_with_real_reports_and_patients(tmp_path):
    from ptbxl_fixture import make_ptbxl

    from ecgaug.augment.patients import PatientSampler
    from ecgaug.augment.plan import make_plan
    from ecgaug.data.ptbxl import PTBXL
    from ecgaug.text.reports import ReportTemplater

    root = make_ptbxl(tmp_path / "ptbxl", num_records=36)
    base = PTBXL(root, "train", task="rhythm")
    plan = make_plan(base.targets, base.classes, reports=ReportTemplater.from_ptbxl(root, task="rhythm"),
                     patients=PatientSampler.from_dataset(base))  # fmt: skip
    sbrad = plan.jobs["labels"].str.split("|").map(lambda labels: "SBRAD" in labels)
    assert sbrad.any() and (plan.jobs.loc[sbrad, "heart_rate"] < 60).all()
    cache, _ = run_build(tmp_path / "cache", plan, FakeGenerator(), show_progress=False)
    dataset = AugmentedDataset(base, cache)  # classes, sampling rate and lead order come from PTBXL
    real_x, real_y = dataset[0]
    x, y = dataset[len(dataset) - 1]
    assert (type(x), x.shape, x.dtype, type(y), y.shape, y.dtype) == (type(real_x), real_x.shape, real_x.dtype, type(real_y),
                                                                      real_y.shape, real_y.dtype)  # fmt: skip
    counts = dataset.targets.sum(axis=0)
    assert (counts == counts.max()).all(), "balanced to the largest class"
