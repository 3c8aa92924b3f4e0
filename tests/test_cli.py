"""The ``ecgaug`` command line: every subcommand documents itself; ``generate`` writes what it says."""
import json
import subprocess
import sys

import numpy as np
import pytest
import wfdb

from ecgaug.cli import build_parser, main
from ecgaug.pipeline import list_pretrained
from ecgaug.settings import DEFAULT_MODEL


def subcommands(parser):
    action = next(a for a in parser._actions if a.dest == "command")
    for name, sub in action.choices.items():
        nested = [a for a in sub._actions if getattr(a, "choices", None) and isinstance(a.choices, dict)]
        if nested:
            for child in nested[0].choices:
                yield [name, child]
        else:
            yield [name]


def test_module_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "ecgaug", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("generate", "train", "evaluate", "cache", "ptbxl", "convert"):
        assert name in out


@pytest.mark.parametrize("words", list(subcommands(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ecgaug " + " ".join(words) in capsys.readouterr().out


@pytest.mark.skipif(DEFAULT_MODEL not in list_pretrained(), reason="the shipped model is not in this checkout")
def test_generate_writes_npy_wfdb_and_plots(tmp_path):
    code = main(["generate", "--report", "sinus rhythm|normal ECG", "--age", "64", "--sex", "F", "--heart-rate", "80", "-n", "2",
                 "--out", str(tmp_path), "--num_inference_steps", "3", "--seed", "7"])
    assert code == 0
    ecgs = np.load(tmp_path / "ecgs.npy")
    assert ecgs.shape == (2, 12, 1000) and np.isfinite(ecgs).all()
    record = wfdb.rdrecord(str(tmp_path / "ecg_0001"))
    assert record.fs == 100 and record.sig_name[:6] == ["I", "II", "III", "AVR", "AVL", "AVF"]
    np.testing.assert_allclose(record.p_signal.T, ecgs[1], atol=2e-3)  # 16-bit WFDB quantisation
    assert (tmp_path / "ecg_0000.png").stat().st_size > 10_000
    meta = json.loads((tmp_path / "generation.json").read_text())
    assert meta["seeds"] == [7, 8] and meta["model_id"].startswith(DEFAULT_MODEL + "-")
