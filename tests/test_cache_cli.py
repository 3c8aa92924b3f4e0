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
    build = ["build", "--plan", str(tmp_path / "plan.jsonl"), "--model_factory", "fake_generator:FakeGenerator",
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
    with pytest.raises(SystemExit, match="exactly one of --ptbxl"):
        run(["build", "--output_dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="exactly one of --ptbxl"):
        run(["build", "--output_dir", str(tmp_path / "c"), "--plan", "p.jsonl", "--ptbxl_root", "ptbxl"])
    with pytest.raises(SystemExit, match="--model_factory should be MODULE:FACTORY"):
        run(["build", "--output_dir", str(tmp_path / "c"), "--plan", "p.jsonl", "--model_factory", "nocolon"])
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
    with pytest.raises(SystemExit) as exit_info:  # the shared --text_encoder checks its choices when parsing
        build_parser_args(["--text_encoder", "clip"])
    assert exit_info.value.code == 2
    table = tmp_path / "embeddings.csv"
    table.write_text('text,embed\nsinus rhythm,"[0.1, 0.2, 0.3]"\n')
    for argv in (["--text_encoder", "table", "--text_table", str(table)], ["--text_table", str(table)]):
        with pytest.raises(SystemExit, match=r"error: .*3-d embeddings"):  # the shipped model expects 384-d MiniLM ones
            cache_command._load_generator(build_parser_args(argv))
    with pytest.raises(SystemExit, match="--text_table without a path needs --upstream"):
        cache_command._load_generator(build_parser_args(["--text_encoder", "table"]))
    with pytest.raises(SystemExit, match="cannot go with --text_encoder minilm"):
        cache_command._load_generator(build_parser_args(["--text_encoder", "minilm", "--text_table", str(table)]))


def test_build_reads_one_generation_settings_object():
    from ecgaug.settings import GenerationSettings

    args = build_parser_args(["--scheduler", "ddim", "--guidance_scale", "2", "--lead_order", "mimic", "--batch_size", "3",
                              "--request_timeout", "5", "--text_encoder", "openai"])  # fmt: skip
    settings = cache_command._settings(args)
    assert settings == GenerationSettings(scheduler="ddim", num_inference_steps=50, guidance_scale=2.0, lead_order="mimic",
                                          batch_size=3, text_encoder={"type": "openai", "request_timeout": 5.0})  # fmt: skip
    assert cache_command._settings(build_parser_args([])).num_inference_steps == 15, "the default steps come from the settings"
    for bad in (["--num_inference_steps", "0"], ["--guidance_scale", "0.5"], ["--sampling_rate", "0"], ["--request_timeout", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser_args(bad)
        assert exit_info.value.code == 2, bad
    ptbxl = build_parser_args(["--ptbxl", "data/ptbxl"])
    assert ptbxl.ptbxl_root == "data/ptbxl" and build_parser_args(["--ptbxl_root", "data/ptbxl"]).ptbxl_root == "data/ptbxl"


def test_build_with_a_model_factory_records_the_resolved_steps(tmp_path, capsys):
    small_plan().save(tmp_path / "plan.jsonl")
    build = ["build", "--plan", str(tmp_path / "plan.jsonl"), "--model_factory", "fake_generator:FakeGenerator",
             "--output_dir", str(tmp_path / "cache"), "--shard_size", "8", "--no_progress", "--scheduler", "ddpm"]  # fmt: skip
    assert run(build) == 0
    assert SyntheticCache(tmp_path / "cache").config.num_inference_steps == 1000
