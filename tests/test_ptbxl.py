import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

from ecgaug.commands import ptbxl as ptbxl_command
from ecgaug.data.ptbxl import PTBXL, build_signal_cache, compute_labels, load_database, load_scp_statements
from ptbxl_fixture import FIXTURE_CODES, PROFILES, load_fixture_truth, make_ptbxl

NUM_RECORDS = 40


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl"), num_records=NUM_RECORDS, sampling_rates=(100, 500))


def profile_codes(ecg_id):
    return PROFILES[(ecg_id - 1) % len(PROFILES)][0]


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"PTB-XL not found at .* \(missing ptbxl_database.csv\)\. Download it with `ecgaug ptbxl download"):
        PTBXL(tmp_path)


def test_invalid_arguments(root):
    with pytest.raises(ValueError, match=r"Unknown value 'trian' for argument split\. Valid values are \{'train', 'val', 'test', 'all'\}\."):
        PTBXL(root, split="trian")
    with pytest.raises(ValueError, match="Unknown value 'superclass' for argument task"):
        PTBXL(root, task="superclass")
    with pytest.raises(ValueError, match="Unknown value '250' for argument sampling_rate"):
        PTBXL(root, sampling_rate=250)
    with pytest.raises(ValueError, match="folds should be a non-empty sequence of PTB-XL strat_folds in 1..10"):
        PTBXL(root, folds=[0, 3])
    with pytest.raises(ValueError, match=r"classes should be distinct superdiagnostic labels .* \(unknown: \['IMI'\]\)"):
        PTBXL(root, classes=["MI", "IMI"])


def test_load_database_conventions(root):
    database = load_database(root)
    assert database.index.name == "ecg_id" and database.index.is_monotonic_increasing
    assert set(database["sex"]) <= {"M", "F"} and database["sex"].dtype == object
    assert database["age"].isna().any() and database["age"].dtype == np.float64
    assert database["patient_id"].dtype == np.int64
    assert database.loc[1, "scp_codes"] == profile_codes(1)


def test_labels_follow_the_benchmark(root):
    statements = load_scp_statements(root)
    codes = pd.Series({7: {"LAFB": 100.0, "IMI": 15.0, "SR": 0.0}, 11: {"LVOLT": 0.0, "SR": 0.0}, 4: {"ASMI": 100.0, "ISC_": 50.0, "SR": 0.0}})
    assert compute_labels(codes, statements, "superdiagnostic").to_dict() == {7: ["CD", "MI"], 11: [], 4: ["MI", "STTC"]}
    assert compute_labels(codes, statements, "subdiagnostic").to_dict() == {7: ["IMI", "LAFB/LPFB"], 11: [], 4: ["AMI", "ISC_"]}
    assert compute_labels(codes, statements, "diagnostic").to_dict() == {7: ["IMI", "LAFB"], 11: [], 4: ["ASMI", "ISC_"]}
    assert compute_labels(codes, statements, "form").to_dict() == {7: [], 11: ["LVOLT"], 4: []}
    assert compute_labels(codes, statements, "rhythm").to_dict() == {7: ["SR"], 11: ["SR"], 4: ["SR"]}
    assert compute_labels(codes, statements, "all")[7] == ["IMI", "LAFB", "SR"]


@pytest.mark.parametrize(
    "task, classes, splits",
    [
        ("superdiagnostic", ["CD", "HYP", "MI", "NORM", "STTC"], ("train", "val", "test")),
        ("form", ["LVOLT", "NDT", "PVC"], ("train", "all")),  # no form labels in folds 9 and 10
        ("rhythm", ["AFIB", "AFLT", "SBRAD", "SR", "STACH"], ("train", "val", "test")),
        ("all", sorted(FIXTURE_CODES), ("train", "val", "test")),
    ],
)
def test_classes_come_from_the_whole_database(root, task, classes, splits):
    for split in splits:
        dataset = PTBXL(root, split, task=task)
        assert dataset.classes == classes
        assert dataset.class_to_idx == {name: index for index, name in enumerate(classes)}
        assert dataset.targets.shape == (len(dataset), len(classes)) and dataset.targets.dtype == np.float32
        assert (dataset.targets.sum(axis=1) > 0).all()


def test_splits_and_dropped_records(root):
    database = load_database(root)
    train, val, test = (PTBXL(root, split) for split in ("train", "val", "test"))
    assert set(train.metadata.strat_fold) <= set(range(1, 9))
    assert set(val.metadata.strat_fold) == {9} and set(test.metadata.strat_fold) == {10}
    every = PTBXL(root, "all")
    assert len(train) + len(val) + len(test) == len(every)
    # records without a diagnostic statement (LVOLT only, AFLT only) are left out of diagnostic tasks ...
    no_diagnostic = [ecg_id for ecg_id in database.index if set(profile_codes(ecg_id)) <= {"LVOLT", "SR", "AFLT"}]
    assert no_diagnostic and not set(no_diagnostic) & set(every.metadata.ecg_id)
    assert len(every) == NUM_RECORDS - len(no_diagnostic)
    # ... but kept by the tasks they have labels for
    assert set(no_diagnostic) <= set(PTBXL(root, "all", task="all").metadata.ecg_id)
    assert PTBXL(root, folds=[9]).metadata.ecg_id.tolist() == val.metadata.ecg_id.tolist()


def test_targets_and_metadata(root):
    dataset = PTBXL(root, "all", task="superdiagnostic")
    row = dataset.metadata.index[dataset.metadata.ecg_id == 7][0]
    np.testing.assert_array_equal(dataset.targets[row], [1, 0, 1, 0, 0])  # CD, MI
    assert dataset.metadata.loc[row, "labels"] == ["CD", "MI"]
    assert dataset.metadata.loc[row, "scp_codes"] == profile_codes(7)
    assert dataset.metadata.loc[row, "filename"] == "records100/00000/00007_lr"
    assert list(dataset.metadata.columns) == ["ecg_id", "patient_id", "age", "sex", "strat_fold", "scp_codes", "labels", "filename"]
    assert set(dataset.metadata.sex) <= {"M", "F"}


def test_classes_override(root):
    dataset = PTBXL(root, "all", classes=["NORM", "MI"])
    assert dataset.classes == ["NORM", "MI"]
    assert (dataset.targets.sum(axis=1) > 0).all()
    assert all(set(labels) <= {"NORM", "MI"} and labels for labels in dataset.metadata.labels)


@pytest.mark.parametrize("sampling_rate, num_samples", [(100, 1000), (500, 5000)])
def test_items_match_wfdb(root, sampling_rate, num_samples, tmp_path):
    cached = PTBXL(root, "val", sampling_rate=sampling_rate, cache_dir=tmp_path / "cache")
    direct = PTBXL(root, "val", sampling_rate=sampling_rate, preprocessed=False)
    assert cached.num_samples == num_samples and len(cached) == len(direct) > 0
    for index in (0, len(cached) - 1):
        signal, target = cached[index]
        assert signal.shape == (12, num_samples) and signal.dtype == torch.float32
        assert target.dtype == torch.float32 and torch.equal(target, torch.from_numpy(cached.targets[index]))
        expected, _ = wfdb.rdsamp(str(root / cached.metadata.filename[index]))
        np.testing.assert_allclose(signal.numpy(), expected.T, atol=1e-6)
        torch.testing.assert_close(direct[index][0], signal)
    assert (tmp_path / "cache" / f"signals{sampling_rate}.npy").is_file()


def test_cache_is_reused_and_rebuilt_when_the_database_changes(root, tmp_path):
    copy = tmp_path / "ptbxl"
    copy.mkdir()
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        shutil.copy(root / name, copy / name)
    (copy / "records100").symlink_to(root / "records100")
    PTBXL(copy)
    array = copy / "ecgaug_cache" / "signals100.npy"
    first = array.stat().st_mtime_ns
    PTBXL(copy, "val")
    assert array.stat().st_mtime_ns == first  # fresh: reused

    database = pd.read_csv(copy / "ptbxl_database.csv")
    database = database[database.strat_fold != 10]
    database.to_csv(copy / "ptbxl_database.csv", index=False)
    with pytest.warns(UserWarning, match="is stale"):
        dataset = PTBXL(copy, "val")
    assert np.load(array, mmap_mode="r").shape[0] == len(database)
    signal, _ = dataset[0]
    expected, _ = wfdb.rdsamp(str(copy / dataset.metadata.filename[0]))
    np.testing.assert_allclose(signal.numpy(), expected.T, atol=1e-6)
    # a split with no records (no fold 10 here) is an error that names the folds present
    with pytest.raises(ValueError, match=r"no records with superdiagnostic labels in folds \[10\] \(split='test'\); folds present: \[1, 2, 3, 4, 5, 6, 7, 8, 9\]"):
        PTBXL(copy, "test")


def test_worker_safe_pickling_and_dataloader(root):
    dataset = PTBXL(root, "train")
    dataset[0]
    assert dataset._signals is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._signals is None
    torch.testing.assert_close(clone[1][0], dataset[1][0])
    signals, targets = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert signals.shape == (4, 12, 1000) and targets.shape == (4, 5)


def test_transforms_and_repr(root):
    dataset = PTBXL(root, "val", transform=lambda x: x[:2], target_transform=lambda y: y.argmax())
    signal, target = dataset[0]
    assert signal.shape == (2, 1000) and target.ndim == 0
    text = repr(dataset)
    assert text.startswith("Dataset PTBXL\n    Number of datapoints: ")
    assert "Split: val (folds [9])" in text and "Task: superdiagnostic (5 classes)" in text and "Transform:" in text


def test_heart_rates_are_cached(root, tmp_path, monkeypatch):
    dataset = PTBXL(root, "all", task="all", cache_dir=tmp_path)
    rates = dataset.heart_rates()
    assert rates.shape == (len(dataset),) and rates.dtype == np.float64
    truth = load_fixture_truth(root).heart_rate.loc[dataset.metadata.ecg_id].to_numpy()
    assert np.isfinite(rates).all()
    assert np.median(np.abs(rates - truth)) < 1.0 and np.abs(rates - truth).max() < 8.0
    assert (tmp_path / "heart_rates100.npz").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("heart rates were measured again")

    monkeypatch.setattr("ecgaug.data.ptbxl.measure_heart_rates", fail)
    again = PTBXL(root, "val", task="all", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.heart_rates(), rates[dataset.metadata.strat_fold.to_numpy() == 9])


def test_cli_prepare(root, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    ptbxl_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ptbxl", "prepare", str(root), "--cache_dir", str(tmp_path)])
    assert args.func(args) == 0
    assert (tmp_path / "signals100.npy").is_file() and (tmp_path / "heart_rates100.npz").is_file()
    output = capsys.readouterr().out
    assert f"{NUM_RECORDS} records, heart rate unmeasurable (NaN) for 0 (0.00%)" in output
    assert re.search(r"Heart rate: median \d+\.\d bpm, 5-95% \d+\.\d-\d+\.\d bpm", output)


def test_download_flag_calls_the_downloader(root, monkeypatch):
    calls = []
    monkeypatch.setattr("ecgaug.data.download.download_ptbxl", lambda path: calls.append(path))
    PTBXL(root, "val", download=True)
    assert calls == [root]


def finished_pid():
    """The id of a process that has exited (so no process has it, barring reuse within the test)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_files_of_killed_runs_are_removed(root, tmp_path):
    PTBXL(root, "val", cache_dir=tmp_path)
    dead, alive = finished_pid(), os.getpid()
    stale = [tmp_path / f"signals100.tmp{dead}.npy", tmp_path / f"signals100.json.tmp{dead}", tmp_path / f"heart_rates100.tmp{dead}.npz"]
    live = [tmp_path / f"signals100.tmp{alive}.npy", tmp_path / f"signals500.tmp{dead}.npy"]  # a running build; another rate
    for path in stale + live:
        path.write_bytes(b"partial")
    dataset = PTBXL(root, "val", cache_dir=tmp_path)  # fresh cache: reused, and the leftovers of killed runs removed
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in live)
    assert len(dataset[0][0]) == 12


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_build_leaves_no_files(root, tmp_path, monkeypatch, error):
    from ecgaug.data import ptbxl

    read_record = ptbxl.read_record
    calls = []

    def failing_read(*args):
        calls.append(args)
        if len(calls) == 5:
            raise error
        return read_record(*args)

    monkeypatch.setattr(ptbxl, "read_record", failing_read)
    with pytest.raises(type(error)):
        build_signal_cache(root, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_progress_false_hides_every_bar(root, tmp_path, capsys):
    dataset = PTBXL(root, "all", task="all", cache_dir=tmp_path / "quiet", progress=False)
    dataset.heart_rates()
    assert capsys.readouterr().err == ""
    dataset = PTBXL(root, "all", task="all", cache_dir=tmp_path / "loud")
    dataset.heart_rates()
    err = capsys.readouterr().err
    assert "Caching PTB-XL 100 Hz" in err and "Heart rates" in err
