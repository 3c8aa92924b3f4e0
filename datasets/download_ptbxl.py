#!/usr/bin/env python3
"""Download PTB-XL 1.0.3 into datasets/ptbxl (or ROOT); the same as `ecgaug ptbxl download ROOT`.

    python datasets/download_ptbxl.py                 # -> datasets/ptbxl
    python datasets/download_ptbxl.py /data/ptbxl --base_url https://mirror.example/ptb-xl/

Resumable: run it again after an interruption. Then build the caches with
`ecgaug ptbxl prepare ROOT`. See datasets/README.md for the licence and citation.
"""
import argparse
import sys
from pathlib import Path

from ecgaug.commands.ptbxl import add_download_arguments, run_download


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent / "ptbxl"),
                        help="Folder that will hold PTB-XL. Default: %(default)s")
    add_download_arguments(parser)
    return run_download(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
