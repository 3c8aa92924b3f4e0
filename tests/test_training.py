"""DiffuSETS training on a fake PTB-XL: both stages run, a killed run resumes exactly, DDP works."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ecgaug.commands.train import parse_folds, run_unet, run_vae
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.training.conditions import from_ptbxl

from ptbxl_fixture import make_ptbxl


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptbxl", num_records=40)


def vae_args(root, out, **overrides):
    args = dict(ptbxl=root, folds=parse_folds("1-8"), output_dir=out, max_steps=4, batch_size=8, learning_rate=1e-3, warmup_steps=1,
                max_minutes=None, checkpoint_every=2, seed=0, device="cpu", size="tiny", kl_weight=1e-4, mixed_precision="no",
                init_from=None)
    return argparse.Namespace(**{**args, **overrides})


def test_ptbxl_conditions_keep_unknowns_and_use_only_the_given_folds(ptbxl_root):
    data = from_ptbxl(ptbxl_root, folds=(1, 2, 3), num_report_variants=2, show_progress=False)
    assert data.signals.shape[1:] == (12, 1024)
    assert all(len(r) == 2 and all(r) for r in data.reports)
    import pandas as pd

    db = pd.read_csv(ptbxl_root / "ptbxl_database.csv")
    allowed = set(db.loc[db.strat_fold.isin([1, 2, 3]), "ecg_id"])
    assert set(data.record_ids) <= allowed
    ages = db.set_index("ecg_id").loc[data.record_ids, "age"].to_numpy()
    assert torch.equal(torch.isnan(data.patient[:, 1]), torch.from_numpy(pd.isna(ages)))  # unknown age stays unknown


def test_killed_vae_run_resumes_to_the_same_weights(ptbxl_root, tmp_path):
    run_vae(vae_args(ptbxl_root, tmp_path / "straight"))
    run_vae(vae_args(ptbxl_root, tmp_path / "resumed", max_minutes=0.0))  # stops after its first step, with a checkpoint
    assert not (tmp_path / "resumed" / "vae").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 1
    run_vae(vae_args(ptbxl_root, tmp_path / "resumed"))
    a = load_file(tmp_path / "straight" / "vae" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "vae" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice


def test_warm_start_takes_the_given_weights_when_there_is_no_checkpoint(ptbxl_root, tmp_path):
    run_vae(vae_args(ptbxl_root, tmp_path / "first"))
    first = load_file(tmp_path / "first" / "vae" / "model.safetensors")
    # a near-zero learning rate: after one step the weights are still the ones it started from
    run_vae(vae_args(ptbxl_root, tmp_path / "warm", init_from=tmp_path / "first" / "vae", learning_rate=1e-12, max_minutes=0.0))
    run_vae(vae_args(ptbxl_root, tmp_path / "cold", learning_rate=1e-12, max_minutes=0.0))
    warm = torch.load(tmp_path / "warm" / "checkpoint.pt", weights_only=True)["model"]
    cold = torch.load(tmp_path / "cold" / "checkpoint.pt", weights_only=True)["model"]
    key = "decoder.conv_out.weight"
    torch.testing.assert_close(warm[key], first[key], rtol=0, atol=1e-6)
    assert not torch.allclose(cold[key], first[key], atol=1e-3)
    with pytest.raises(FileNotFoundError, match="init_from"):
        run_vae(vae_args(ptbxl_root, tmp_path / "bad", init_from=tmp_path / "nowhere"))


def test_bf16_autocast_trains_on_the_cpu(ptbxl_root, tmp_path):
    from ecgaug.training.loop import TrainingConfig, use_bf16

    assert use_bf16("bf16", torch.device("cpu")) and not use_bf16("no", torch.device("cuda"))
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainingConfig(output_dir=str(tmp_path), mixed_precision="fp8")
    run_vae(vae_args(ptbxl_root, tmp_path / "bf16", mixed_precision="bf16"))
    weights = load_file(tmp_path / "bf16" / "vae" / "model.safetensors")
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in weights.values())


def test_unet_stage_writes_a_loadable_model(ptbxl_root, tmp_path):
    run_vae(vae_args(ptbxl_root, tmp_path / "vae", max_steps=2))
    args = vae_args(ptbxl_root, tmp_path / "unet", max_steps=3, vae=tmp_path / "vae", text_encoder="minilm", text_cache_dir=None,
                    condition_dropout=0.2, patient_feature_dropout=0.1, num_report_variants=2, name="tiny-test")
    run_unet(args)
    pipe = DiffuSETSPipeline.from_pretrained(tmp_path / "unet" / "pipeline")
    assert pipe.supports_guidance and pipe.model_id.startswith("tiny-test-")
    assert pipe.info["training"]["folds"] == [1, 2, 3, 4, 5, 6, 7, 8]
    ecgs = pipe.generate(["sinus rhythm"], age=None, sex="F", heart_rate=70, num_inference_steps=3, guidance_scale=2.0)
    assert ecgs.shape == (1, 12, 1000) and torch.isfinite(ecgs).all()


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(ptbxl_root, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "ecgaug",
               "train", "vae", "--ptbxl", str(ptbxl_root), "--output_dir", str(tmp_path / "ddp"), "--size", "tiny",
               "--max_steps", "2", "--batch_size", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "vae_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert Path(tmp_path / "ddp" / "vae" / "model.safetensors").exists()
