import argparse
import json

import numpy as np
import pytest
from fake_generator import small_plan

from ecgaug.augment.cache import SyntheticCache
from ecgaug.commands import cache as cache_command


def run(argv):
    """Parse and run ``ecgaug cache ...`` exactly as ``ecgaug.cli`` does (register + func)."""
    parser = argparse.ArgumentParser(prog="ecgaug")
    cache_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", *argv])
    return args.func(args)


@pytest.fixture
def built(tmp_path, capsys):
    small_plan().save(tmp_path / "plan.jsonl")
    root = tmp_path / "cache"
    build = ["build", "--plan", str(tmp_path / "plan.jsonl"), "--generator", "fake_generator:FakeGenerator",
             "--output_dir", str(root), "--shard_size", "8", "--no_progress"]  # fmt: skip
    assert run(build) == 0
    return root, build


def test_build_info_verify(built, capsys):
    root, build = built
    assert "wrote 4 shards, 0 were already complete (25 ECGs in 4 shards)" in capsys.readouterr().out
    assert run(build) == 0
    assert "wrote 0 shards, 4 were already complete" in capsys.readouterr().out
    assert run(["info", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["model_id"], summary["num_records_complete"], summary["finished"]) == ("fake-1", 25, True)
    assert run(["info", str(root)]) == 0
    assert "records_per_class" in capsys.readouterr().out
    assert run(["verify", str(root)]) == 0
    assert "4 of 4 shards intact, 0 not built, 0 corrupt, 0 other problems" in capsys.readouterr().out


def test_verify_finds_a_corrupt_shard_and_the_build_repairs_it(built, capsys):
    root, build = built
    shard = root / "shards" / "shard-000001.npy"
    shard.write_bytes(shard.read_bytes()[:1000])
    assert run(["verify", str(root)]) == 1
    assert "shards/shard-000001.npy is truncated" in capsys.readouterr().out
    assert run(["verify", str(root), "--delete_corrupt"]) == 1
    assert run(["verify", str(root)]) == 2, "a deleted shard is missing, not corrupt"
    assert run(build) == 0
    assert "wrote 1 shards, 3 were already complete" in capsys.readouterr().out
    assert run(["verify", str(root)]) == 0
    assert np.isfinite(SyntheticCache(root).load_shard(1)).all()


def test_a_build_with_other_settings_is_refused(built, capsys):
    root, build = built
    assert run(build + ["--sampling_rate", "500"]) == 1
    error = capsys.readouterr().err
    assert "sampling_rate: the cache has 100.0, this build has 500.0" in error and "--overwrite" in error
    assert run(build + ["--sampling_rate", "500", "--overwrite"]) == 0
    assert SyntheticCache(root).config.num_samples == 5000


def test_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="exactly one of --ptbxl_root"):
        run(["build", "--output_dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="MODULE:FACTORY"):
        run(["build", "--output_dir", str(tmp_path / "c"), "--plan", "p.jsonl", "--generator", "nocolon"])
    with pytest.raises(SystemExit, match="--age shape a new plan"):
        run(["build", "--output_dir", str(tmp_path / "c"), "--plan", "p.jsonl", "--age", "50"])
    assert run(["build", "--output_dir", str(tmp_path / "c"), "--plan", str(tmp_path / "missing.jsonl")]) == 1
    assert "No plan file" in capsys.readouterr().err
    assert run(["info", str(tmp_path)]) == 1
    assert "ecgaug cache build" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["build", "verify", "info"])
def test_help(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([action, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def build_parser_args(argv):
    parser = argparse.ArgumentParser(prog="ecgaug")
    cache_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["cache", "build", "--plan", "plan.jsonl", "--output_dir", "cache", "--device", "cpu", *argv])


def test_build_text_encoder_names_an_encoder(tmp_path):
    from ecgaug.text import MiniLMTextEncoder

    generator = cache_command._load_generator(build_parser_args(["--text_encoder", "minilm"]))
    assert isinstance(generator.text_encoder, MiniLMTextEncoder)
    with pytest.raises(SystemExit, match=r"error: Unknown text encoder 'clip'"):
        cache_command._load_generator(build_parser_args(["--text_encoder", "clip"]))
    table = tmp_path / "embeddings.csv"
    table.write_text('text,embed\nsinus rhythm,"[0.1, 0.2, 0.3]"\n')
    with pytest.raises(SystemExit, match=r"error: .*3-d embeddings"):  # ptbxl-lite expects 384-d MiniLM ones
        cache_command._load_generator(build_parser_args(["--text_encoder", "table", "--text_table", str(table)]))
    with pytest.raises(SystemExit, match="--text_encoder table needs --text_table"):
        cache_command._check_build_args(build_parser_args(["--text_encoder", "table"]))
