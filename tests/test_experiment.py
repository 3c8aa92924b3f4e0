"""The data-scarcity experiment (experiments/augment_ptbxl.py) on a fake PTB-XL with a tiny generator.

End to end: every output of a run, a rerun that trains nothing, --evaluate_only, and the refusal
of a generator whose model card lists the test fold. Plus the pieces whose mistakes would not
show in the end-to-end numbers: patient subsets, the rare-class cut and the synthetic draw.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))  # the experiment scripts are not a package

import augment_ptbxl  # noqa: E402
from conftest import TINY_UNET, TINY_VAE, HashTextEncoder  # noqa: E402
from ptbxl_fixture import make_ptbxl  # noqa: E402
from scarcity.config import ExperimentConfig, Regime  # noqa: E402
from scarcity.regimes import keep_k_positives, make_subset, patient_subset  # noqa: E402
from scarcity.synthetic import GeneratorCardError, check_model_card  # noqa: E402

from ecgaug.models import ECGVAE, ConditionalUNet1D, UNetConfig  # noqa: E402
from ecgaug.pipeline import DiffuSETSPipeline  # noqa: E402
from ecgaug.schedulers import make_scheduler, published_ddpm_scheduler  # noqa: E402

TRAIN_FOLDS = [1, 2, 3, 4, 5, 6, 7]
ARMS = ("real", "weighted", "classic", "synthetic", "classic_synthetic")


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory):
    # 96 records put a positive of every superclass in folds 8 (validation) and 9 (test).
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptbxl", num_records=96)


def save_tiny_generator(directory: Path, folds) -> Path:
    """A tiny DiffuSETS with MiniLM-sized text embeddings, saved with a model card listing ``folds``."""
    torch.manual_seed(0)
    unet = ConditionalUNet1D(UNetConfig(**{**TINY_UNET.__dict__, "text_embed_dim": 384}))
    training = published_ddpm_scheduler(clip_sample=False).config
    pipe = DiffuSETSPipeline(ECGVAE(TINY_VAE), unet, make_scheduler("dpmsolver++", training), HashTextEncoder(384),
                             training_scheduler_config=training, info={"name": "tiny-test"})  # fmt: skip
    return pipe.save_pretrained(directory, text_encoder_spec={"type": "minilm"}, extra={"training": {"folds": list(folds)}})


def experiment_args(ptbxl_root, output_dir, generator_dir, *extra):
    # A fixed sampler, so that the seeded tiny run does not depend on the package default (its filter keeps ECGs).
    return [
        "--ptbxl", str(ptbxl_root), "--output_dir", str(output_dir), "--model", str(generator_dir),
        "--train_folds", "1-7", "--val_folds", "8", "--test_folds", "9", "--classifier", "resnet1d_small",
        "--fractions", "0.5", "1.0", "--rare_k", "2", "--seeds", "0", "1", "--epochs", "1", "--batch_size", "8",
        "--patience", "0", "--val_fraction", "1.0", "--pool_per_class", "4", "--scheduler", "dpmsolver++", "--num_inference_steps", "2",
        "--n_bootstrap", "20", "--num_threads", "1", "--no_progress", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_run_writes_every_output_resumes_without_retraining_and_reevaluates(ptbxl_root, tmp_path, capsys):
    generator = save_tiny_generator(tmp_path / "generator", TRAIN_FOLDS)
    run_dir = tmp_path / "run"
    args = experiment_args(ptbxl_root, run_dir, generator, "--arms", *ARMS)
    assert augment_ptbxl.main(args) == 0

    for name in ("results.json", "table.md", "auc_vs_fraction.png", "per_class_gain.png", "command.txt", "config.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "command.txt").read_text().splitlines()[0].endswith(" ".join(args[-4:]))
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["results"]) == ["fraction_0.5", "fraction_1", "rare_k2"]
    assert results["missing_cells"] == [] and results["num_test_records"] == len(np.load(run_dir / "test_targets.npy"))
    assert results["reference"] == results["results"]["fraction_1"]["real"]  # a fraction-1 regime is the reference: no extra cells
    for regime in results["results"].values():
        assert list(regime) == list(ARMS)
        for arm, entry in regime.items():
            assert entry["seeds"] == [0, 1]
            assert entry["macro_auc"]["low"] <= entry["macro_auc"]["point"] <= entry["macro_auc"]["high"]
            assert ("vs_real" in entry) == (arm != "real")
            assert (entry["num_train_synthetic"] > 0) == ("synthetic" in arm)
    # Every arm of a (regime, seed) trains on the same real records; the rare regime keeps k positives.
    cells = sorted((run_dir / "cells").glob("*/*/seed*/cell.json"))
    assert len(cells) == 3 * len(ARMS) * 2
    infos = {tuple(p.parts[-4:-1]): json.loads(p.read_text()) for p in cells}
    for (regime, arm, seed), info in infos.items():
        assert info["real_positives"] == infos[(regime, "real", seed)]["real_positives"]
    rare = results["rare_classes"]
    assert len(rare) == 2
    positives = dict(zip(results["classes"], infos[("rare_k2", "real", "seed0")]["real_positives"]))
    assert all(positives[name] <= 2 for name in rare)
    table = (run_dir / "table.md").read_text()
    assert "| rare_k2 | classic_synthetic | 2 |" in table and "Only 2 seed(s)" in table
    assert np.load(run_dir / "cells/fraction_1/real/seed0/y_test_pred.npy").shape == (results["num_test_records"], 5)

    capsys.readouterr()
    finished = {p: p.stat().st_mtime_ns for p in cells}
    assert augment_ptbxl.main(args) == 0  # resume: nothing left to train
    assert "30 of 30 cells already finished; training 0." in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in cells} == finished

    (run_dir / "table.md").unlink()
    assert augment_ptbxl.main(["--output_dir", str(run_dir), "--evaluate_only", "--no_progress"]) == 0
    assert (run_dir / "table.md").is_file()
    assert {p: p.stat().st_mtime_ns for p in cells} == finished


def test_generator_that_saw_the_test_fold_is_refused_before_any_work(ptbxl_root, tmp_path, capsys):
    generator = save_tiny_generator(tmp_path / "generator", TRAIN_FOLDS + [8, 9])
    assert augment_ptbxl.main(experiment_args(ptbxl_root, tmp_path / "run", generator)) == 1
    error = capsys.readouterr().err
    assert "include the test folds [9]" in error
    assert not (tmp_path / "run" / "cells").exists() and not (tmp_path / "run" / "synthetic_cache").exists()


def test_model_card_check():
    with pytest.raises(GeneratorCardError, match="should list its training folds"):
        check_model_card({"name": "x"}, model_id="x", val_folds=[9], test_folds=[10])
    card = check_model_card({"training": {"folds": [1, 2, 9]}}, model_id="x", val_folds=[9], test_folds=[10])
    assert card["training_folds"] == [1, 2, 9] and "validation folds [9]" in card["notes"][0]
    assert check_model_card({"training": {"folds": [1, 2]}}, model_id="x", val_folds=[9], test_folds=[10])["notes"] == []


def test_patient_subsets_are_nested_whole_patients_and_seeded():
    patients = np.repeat(np.arange(50), 3)  # three records per patient
    small, large = patient_subset(patients, 0.1, seed=0), patient_subset(patients, 0.5, seed=0)
    assert set(small) < set(large)
    assert len(np.unique(patients[small])) == 5 and len(small) == 15  # all records of each kept patient
    assert np.array_equal(small, patient_subset(patients, 0.1, seed=0))
    assert not np.array_equal(small, patient_subset(patients, 0.1, seed=1))


def test_rare_cut_keeps_k_positives_of_each_rare_class_and_nothing_else_changes():
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 4)) < [0.5, 0.4, 0.1, 0.08]).astype(np.float32)
    targets[targets.sum(axis=1) == 0, 0] = 1
    rows = np.arange(200)
    kept = keep_k_positives(targets, rows, [2, 3], k=5, seed=0)
    assert (targets[kept][:, 2].sum(), targets[kept][:, 3].sum()) == (5, 5)
    removed = np.setdiff1d(rows, kept)
    assert (targets[removed][:, [2, 3]].sum(axis=1) > 0).all()  # only rare-class carriers are removed
    subset = make_subset(Regime("rare", rare_k=5), 0, targets=targets, patient_ids=rows, ecg_ids=rows + 1,
                         classes=["A", "B", "C", "D"], rare_classes=["C", "D"])  # fmt: skip
    assert subset.positives["C"] == 5 and np.array_equal(subset.ecg_ids, subset.rows + 1)
    with pytest.raises(ValueError, match="no positive record of"):
        make_subset(Regime("tiny", fraction=0.01), 0, targets=targets, patient_ids=rows, ecg_ids=rows, classes=["A", "B", "C", "D"], rare_classes=[])


def test_config_round_trips_and_names_what_changed(tmp_path):
    config = ExperimentConfig(ptbxl="p", output_dir=str(tmp_path))
    config.save(tmp_path)
    loaded = ExperimentConfig.load(tmp_path)
    assert loaded.to_dict() == config.to_dict() and loaded.mismatches(config) == []
    changed = ExperimentConfig(ptbxl="elsewhere", output_dir=str(tmp_path), epochs=3, seeds=[5])
    assert changed.mismatches(config) == ["epochs: 30 -> 3"]  # paths and cell lists may change on resume
    with pytest.raises(ValueError, match="should be disjoint"):
        ExperimentConfig(ptbxl="p", output_dir="o", val_folds=(8,), test_folds=(8,))


def test_the_generator_model_is_the_model_flag_and_old_run_folders_still_load(tmp_path):
    config, _ = augment_ptbxl.parse_args(["--ptbxl", "p", "--output_dir", str(tmp_path), "--model", "my-model"])
    assert config.model == "my-model" and not hasattr(config, "generator")
    with pytest.raises(SystemExit):
        augment_ptbxl.parse_args(["--ptbxl", "p", "--output_dir", str(tmp_path), "--generator", "my-model"])
    old = {("generator" if name == "model" else name): value for name, value in config.to_dict().items()}  # config.json before the rename
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert ExperimentConfig.load(tmp_path).to_dict() == config.to_dict()


ALL_ARMS = ("real", "weighted", "classic", "balanced", "synthetic", "classic_synthetic", "guided", "filtered", "soft", "pretrain",
            "downweighted", "filtered_pretrain")  # fmt: skip
NON_GENERATIVE = ("real", "weighted", "classic", "balanced")


@pytest.mark.slow
def test_new_arms_vs_table_and_reference_row(ptbxl_root, tmp_path):
    generator = save_tiny_generator(tmp_path / "generator", TRAIN_FOLDS)
    run_dir = tmp_path / "run"
    args = experiment_args(ptbxl_root, run_dir, generator)
    args[args.index("--fractions") + 1 : args.index("--fractions") + 3] = ["0.5"]
    args[args.index("--seeds") + 1 : args.index("--seeds") + 3] = ["0"]
    assert augment_ptbxl.main(args) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["results"]) == ["fraction_0.5", "rare_k2"]  # the reference regime is not a regime of the tables
    reference = results["reference"]
    assert reference["seeds"] == [0] and reference["num_train_real"] > results["results"]["fraction_0.5"]["real"]["num_train_real"]
    assert reference["num_train_synthetic"] == 0 and "per_class" in reference
    for regime in results["results"].values():
        assert list(regime) == list(ALL_ARMS)
        for arm, entry in regime.items():
            assert set(entry["vs"]) == set(NON_GENERATIVE) - {arm}
            for difference in entry["vs"].values():
                for metric in ("macro_auc", "rare_auc", "rare_auprc"):
                    assert difference[metric]["low"] <= difference[metric]["point"] <= difference[metric]["high"]
            assert (entry["num_train_synthetic"] > 0) == (arm not in NON_GENERATIVE), arm
        # vs real is the same paired difference as vs_real; an arm against itself is never listed
        assert regime["synthetic"]["vs"]["real"]["macro_auc"] == {k: v for k, v in regime["synthetic"]["vs_real"]["macro_auc"].items()}
    cell = lambda regime, arm: json.loads((run_dir / "cells" / regime / arm / "seed0" / "cell.json").read_text())  # noqa: E731
    # guided: only rare classes, every synthetic ECG seeded by a real record of the cell (and traced in the manifest)
    from ecgaug.augment import SyntheticCache

    guided = SyntheticCache(run_dir / "guided" / "rare_k2" / "seed0")
    subset = json.loads((run_dir / "subsets" / "rare_k2" / "seed0.json").read_text())
    assert guided.config.strength == 0.5 and guided.plan.seed_source["num_records"] == len(subset["ecg_ids"])
    assert guided.read_manifest()["seed_index"].max() < len(subset["ecg_ids"])
    rare = results["rare_classes"]
    assert {label for labels in guided.plan.jobs["labels"] for label in labels.split("|")[:1]} <= set(rare)
    wanted = cell("rare_k2", "guided")["synthetic"]["wanted"]
    assert all((wanted[i] == 0) == (c not in rare) or wanted[i] == 0 for i, c in enumerate(results["classes"]))
    assert sum(wanted[results["classes"].index(c)] for c in results["classes"] if c not in rare) == 0
    # filtered: thresholds from the real classifier on validation; never more ECGs than the unfiltered draw
    filtered, plain = cell("fraction_0.5", "filtered"), cell("fraction_0.5", "synthetic")
    assert set(filtered["synthetic"]["filter"]["thresholds"]) == set(results["classes"])
    assert filtered["num_synthetic"] <= plain["num_synthetic"]
    assert (run_dir / "cells" / "fraction_0.5" / "pretrain" / "seed0" / "pretrain" / "best.pt").is_file()
    # the combination: pretrained on the filtered draw (the same filter, so the same ECGs as `filtered`)
    combined = cell("fraction_0.5", "filtered_pretrain")
    assert combined["synthetic"]["filter"] == filtered["synthetic"]["filter"] and combined["num_synthetic"] == filtered["num_synthetic"]
    assert (run_dir / "cells" / "fraction_0.5" / "filtered_pretrain" / "seed0" / "pretrain" / "best.pt").is_file()
    table = (run_dir / "table.md").read_text()
    assert table.count("*all real records (reference)*") == 3 * 2  # main, per-class AUC and AUPRC tables, each regime
    assert "| fraction_0.5 | guided | vs real" not in table and "vs balanced" in table


def test_loss_weight_and_validation_thresholds():
    from scarcity.variants import FlagSynthetic, WeightedLogits, youden_thresholds

    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 5, 3))
    signals, targets = torch.randn(4, 12, 5), torch.rand(4, 3).round()
    flagged = FlagSynthetic(list(zip(signals, targets)), np.array([False, True, False, True]))
    batch = torch.stack([flagged[i][0] for i in range(4)])
    assert batch.shape == (4, 13, 5) and batch[:, 12, 0].tolist() == [0, 1, 0, 1]
    model = WeightedLogits(linear, 0.25)
    torch.nn.functional.binary_cross_entropy_with_logits(model(batch), targets).backward()
    weighted = linear[1].weight.grad.clone()
    linear.zero_grad()
    weights = torch.tensor([1.0, 0.25, 1.0, 0.25])[:, None]
    (torch.nn.functional.binary_cross_entropy_with_logits(linear(signals), targets, reduction="none") * weights).mean().backward()
    torch.testing.assert_close(weighted, linear[1].weight.grad)  # exactly a per-item loss weight
    torch.testing.assert_close(model(signals), linear(signals))  # validation/test inputs carry no flag
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.7], [0.4, 0.6], [0.3, 0.9]])
    np.testing.assert_allclose(youden_thresholds(y, scores), [0.8, 0.6])
