"""One fold parser (ecgaug.data.folds) and one torchrun-environment reader (ecgaug.distributed), used everywhere."""
import argparse

import numpy as np
import pytest

from ecgaug.data.folds import check_folds, parse_folds
from ecgaug.distributed import DistributedContext, distributed_context, distributed_env


@pytest.mark.parametrize("text, folds", [("1-8", tuple(range(1, 9))), ("3,1,3", (1, 3)), ("1-3, 9", (1, 2, 3, 9)), ("10", (10,))])
def test_parse_folds(text, folds):
    assert parse_folds(text) == folds


@pytest.mark.parametrize("text", ["", "0", "11", "1-11", "8-1", "a", "1,,2", "1-2-3"])
def test_parse_folds_refuses_with_an_argparse_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="folds should be PTB-XL strat_folds in 1..10"):
        parse_folds(text)


def test_check_folds():
    assert check_folds([9, np.int64(2), 2]) == (2, 9)
    assert all(type(fold) is int for fold in check_folds(np.array([3, 1])))
    for bad in ([], [0], [11], [1.5], [True], "12", 3, None):
        with pytest.raises(ValueError, match="test_folds should be a non-empty sequence of PTB-XL strat_folds"):
            check_folds(bad, "test_folds")


def test_every_consumer_uses_the_same_check():
    import ecgaug.commands.evaluate as evaluate_command
    import ecgaug.commands.train as train_command
    import ecgaug.evaluation.conditions as conditions
    from ecgaug.data.ptbxl import PTBXL

    assert train_command.parse_folds is parse_folds and evaluate_command.parse_folds is parse_folds
    assert conditions.check_folds is check_folds
    with pytest.raises(ValueError, match="folds should be a non-empty sequence of PTB-XL strat_folds"):
        PTBXL._resolve_folds("train", [0, 1])
    assert PTBXL._resolve_folds("train", [np.int64(2), 1]) == (1, 2)


def test_the_experiment_config_checks_folds_there(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    try:
        from scarcity.config import ExperimentConfig
    finally:
        sys.path.pop(0)
    with pytest.raises(ValueError, match="val_folds should be a non-empty sequence of PTB-XL strat_folds"):
        ExperimentConfig(ptbxl=str(tmp_path), output_dir=str(tmp_path), val_folds=(12,))


def test_distributed_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_env() == DistributedContext(0, 1, 0) and distributed_env().is_main
    assert distributed_context() == DistributedContext(0, 1, 0), "one process: no process group"
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "2"), monkeypatch.setenv("LOCAL_RANK", "1")
    env = distributed_env()
    assert (env.rank, env.world_size, env.local_rank, env.is_main, env.is_distributed) == (1, 2, 1, False, True)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK should be in \[0, WORLD_SIZE\)"):
        distributed_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="should be integers"):
        distributed_env()


def test_training_and_builder_share_the_helper():
    import ecgaug.augment.builder as builder
    import ecgaug.training.loop as loop

    assert loop.distributed_context is distributed_context and loop.DistributedContext is DistributedContext
    assert builder.distributed_env is distributed_env
