"""``ecgaug`` command line: one subcommand per job, each defined beside the code it drives.

Each command module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` (called with the parsed namespace, returns an exit code). Modules are imported only
when the CLI starts, so ``import ecgaug`` stays light.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# In the order ``--help`` lists them.
COMMAND_MODULES = (
    "ecgaug.commands.generate",
    "ecgaug.commands.train",
    "ecgaug.commands.evaluate",
    "ecgaug.commands.cache",
    "ecgaug.commands.ptbxl",
    "ecgaug.commands.convert",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgaug",
        description="Synthetic 12-lead ECGs from DiffuSETS for class-balanced augmentation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
