"""Inputs are checked at the door, with the same ranges in the Python API and the CLI (ecgaug.settings)."""
import json
import math

import numpy as np
import pytest

from ecgaug.cli import main
from ecgaug.pipeline import list_pretrained
from ecgaug.schedulers import make_scheduler
from ecgaug.settings import DEFAULT_MODEL, GenerationSettings, add_generation_arguments

REPORTS = ["sinus rhythm"]
OK = dict(age=60, sex="M", heart_rate=70)


@pytest.mark.parametrize("field, value, match", [
    ("age", -5, "age should be between 0 and 120"),
    ("age", 500, "age should be between 0 and 120"),
    ("age", 1e9, "age"),
    ("age", math.inf, "age"),
    ("age", "60", "age should be a number"),
    ("heart_rate", -10, "heart_rate should be between 20 and 300"),
    ("heart_rate", 0, "heart_rate"),
    ("heart_rate", 1000, "heart_rate"),
    ("heart_rate", np.float32(-1.0), "heart_rate should be between 20 and 300"),
])
def test_patient_information_out_of_range_is_refused(tiny_pipeline, field, value, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipeline.generate(REPORTS, **{**OK, field: value}, num_inference_steps=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"guidance_scale": -1.0}, "guidance_scale should be a finite number >= 1"),
    ({"guidance_scale": math.nan}, "guidance_scale"),
    ({"guidance_scale": math.inf}, "guidance_scale"),
    ({"num_inference_steps": 0}, "num_inference_steps should be a positive integer"),
    ({"num_inference_steps": 2.5}, "num_inference_steps"),
    ({"num_inference_steps": True}, "num_inference_steps"),
    ({"num_inference_steps": 1001}, "at most the model's 1000 training steps"),
    ({"strength": 0.0}, r"strength should be in \(0, 1\]"),
    ({"strength": 1.5}, "strength should be between 0 and 1"),
    ({"strength": math.nan}, "strength"),
    ({"num_samples": 0}, "num_samples should be a positive integer"),
    ({"num_samples": True}, "num_samples"),
    ({"sampling_rate": math.inf}, "sampling_rate should be between 1 and 10000 Hz"),
    ({"sampling_rate": 0}, "sampling_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"lead_order": "nope"}, "lead order"),
])
def test_settings_out_of_range_are_refused(tiny_pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipeline.generate(REPORTS, **OK, **kwargs)


def test_unknown_patient_values_and_range_ends_are_accepted(tiny_pipeline):
    ecgs = tiny_pipeline.generate(["a", "b"], age=[0, None], sex=["F", None], heart_rate=[300, math.nan], num_inference_steps=1)
    assert ecgs.shape == (2, 12, 1000)
    assert tiny_pipeline.generate(REPORTS, age=120, sex="M", heart_rate=20, num_inference_steps=1).shape == (1, 12, 1000)


def test_default_steps_are_resolved_once_in_the_settings(tiny_pipeline):
    assert GenerationSettings().num_inference_steps == 15 and GenerationSettings().scheduler == "sde-dpmsolver++"
    assert GenerationSettings(scheduler="unipc").num_inference_steps == 12
    assert GenerationSettings(scheduler="dpmsolver++").num_inference_steps == 25
    assert GenerationSettings(scheduler="ddim").num_inference_steps == 50
    assert GenerationSettings(scheduler="ddpm").num_inference_steps == 1000
    instance = make_scheduler("dpmsolver++", tiny_pipeline.scheduler.config)
    assert GenerationSettings(scheduler=instance).num_inference_steps == 25  # an instance: by its name
    assert GenerationSettings(num_inference_steps=7).call_kwargs()["num_inference_steps"] == 7


def test_settings_are_frozen_and_round_trip_through_the_command_line():
    import argparse

    settings = GenerationSettings(scheduler="ddim", guidance_scale=2, sampling_rate=500)
    with pytest.raises(AttributeError):
        settings.guidance_scale = 3.0  # noqa
    parser = argparse.ArgumentParser()
    add_generation_arguments(parser, seed_ecgs=True)
    args = parser.parse_args(["--scheduler", "ddim", "--guidance_scale", "2", "--sampling_rate", "500", "--request_timeout", "5"])
    from_cli = GenerationSettings.from_cli_args(args)
    assert from_cli.to_dict() == {**settings.to_dict(), "text_encoder": {"request_timeout": 5.0}}
    assert json.dumps(from_cli.to_dict())  # JSON-ready
    with pytest.raises(ValueError, match="revision pins"):
        GenerationSettings(revision="main")


@pytest.mark.parametrize("flag, value, match", [
    ("--age", "-5", "argument --age: age should be between 0 and 120"),
    ("--age", "500", "age should be between 0 and 120"),
    ("--age", "1e9", "age should be between"),
    ("--age", "inf", "age should be between"),
    ("--age", "sixty", "could not convert"),
    ("--heart_rate", "-10", "argument --heart_rate/--heart-rate: heart_rate should be between 20 and 300"),
    ("--heart_rate", "0", "heart_rate"),
    ("--heart_rate", "1000", "heart_rate"),
    ("--guidance_scale", "-1", "guidance_scale should be a finite number >= 1"),
    ("--guidance_scale", "nan", "guidance_scale"),
    ("--num_inference_steps", "0", "num_inference_steps should be a positive integer"),
    ("--num_inference_steps", "5000", "at most the model's 1000"),
    ("--strength", "0", "strength"),
    ("--strength", "2", "strength"),
    ("-n", "0", "num_samples should be a positive integer"),
    ("--sampling_rate", "inf", "sampling_rate"),
    ("--batch_size", "0", "batch_size"),
])
def test_cli_refuses_bad_values_like_argparse(tmp_path, capsys, flag, value, match):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--report", "sinus rhythm", "--out", str(tmp_path), flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: ecgaug generate" in err and "Traceback" not in err
    assert match in err
    assert not list(tmp_path.iterdir())


def test_cli_strength_needs_a_seed_ecg(tmp_path, capsys):
    assert main(["generate", "--report", "sinus rhythm", "--out", str(tmp_path), "--strength", "0.5"]) == 2
    assert "ecgaug generate: error: --strength below 1 needs --init_ecg" in capsys.readouterr().err


def test_cli_help_states_the_valid_ranges(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("0–120", "20–300", "1–1000", "(0, 1]", ">= 1"):
        assert text in out


@pytest.mark.skipif(DEFAULT_MODEL not in list_pretrained(), reason="the shipped model is not in this checkout")
def test_cli_records_the_steps_that_ran_and_refuses_a_bad_seed_ecg(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--report", "sinus rhythm", "--age", "50", "--sex", "M", "--heart_rate", "60",
                 "--out", str(out), "--num_inference_steps", "2"]) == 0
    meta = json.loads((out / "generation.json").read_text())
    assert meta["num_inference_steps"] == 2 and meta["scheduler"] == "sde-dpmsolver++" and meta["strength"] == 1.0

    seed = tmp_path / "seed.npy"
    np.save(seed, np.zeros((12, 500), dtype=np.float32))  # 5 s, not 10 s at 100 Hz
    code = main(["generate", "--report", "sinus rhythm", "--age", "50", "--sex", "M", "--heart_rate", "60",
                 "--out", str(tmp_path / "bad"), "--init_ecg", str(seed), "--strength", "0.5", "--num_inference_steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "ecgaug generate: error: Seed ECGs should have shape (num_ecgs, 12, 1000)" in err
