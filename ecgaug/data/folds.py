"""PTB-XL ``strat_fold`` sets: parsed from a command line and checked in one place.

PTB-XL splits its records into ten stratified folds, 1–10 (the recommended split trains on 1–8,
validates on 9 and tests on 10). Every command, the dataset, the evaluation and the experiment
take fold sets through these two functions:

* :func:`check_folds` (Python API): a non-empty iterable of integers in 1..10 → sorted, distinct tuple;
* :func:`parse_folds` (argparse ``type=``): ``"1-8"``, ``"1,2,3"`` or ``"1-3,9"`` → the same tuple.
"""
from __future__ import annotations

import argparse
import numbers
from typing import Iterable

__all__ = ["NUM_FOLDS", "check_folds", "parse_folds"]

NUM_FOLDS = 10  # PTB-XL's strat_fold runs from 1 to 10


def check_folds(folds: Iterable[int], name: str = "folds") -> tuple[int, ...]:
    """A non-empty set of PTB-XL ``strat_fold`` numbers in 1..10, as a sorted tuple without repeats.

    Args:
        folds: integers (``bool`` and non-integral numbers are refused; numpy integers are accepted).
        name: the argument's name, for the error message.

    Raises:
        ValueError: naming ``name`` and the offending value.
    """
    if isinstance(folds, (str, bytes)) or not isinstance(folds, Iterable):
        raise ValueError(f"{name} should be a non-empty sequence of PTB-XL strat_folds in 1..{NUM_FOLDS}, but got {folds!r}.")
    folds = tuple(folds)
    bad = [fold for fold in folds
           if isinstance(fold, bool) or not isinstance(fold, numbers.Integral) or not 1 <= fold <= NUM_FOLDS]  # fmt: skip
    if not folds or bad:
        raise ValueError(f"{name} should be a non-empty sequence of PTB-XL strat_folds in 1..{NUM_FOLDS}, but got "
                         f"{folds!r}" + (f" (invalid: {bad!r})." if bad else "."))  # fmt: skip
    return tuple(sorted({int(fold) for fold in folds}))


def parse_folds(text: str) -> tuple[int, ...]:
    """``"1-8"``, ``"1,2,3"`` or ``"1-3,9"`` → fold numbers (an argparse ``type=``).

    Raises:
        argparse.ArgumentTypeError: for text that is not such a list, or folds outside 1..10.
    """
    folds: list[int] = []
    try:
        for part in str(text).split(","):
            low, dash, high = part.strip().partition("-")
            low, high = int(low), int(high) if dash else int(low)
            if high < low:
                raise ValueError(f"empty range {part.strip()!r}")
            folds += range(low, high + 1)
        return check_folds(folds, "folds")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"folds should be PTB-XL strat_folds in 1..{NUM_FOLDS} like '1-8', '1,2,3' or '1-3,9', but got {text!r}"
        ) from None
