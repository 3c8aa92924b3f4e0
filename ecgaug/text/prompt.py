"""The DiffuSETS prompt: report lines wrapped in the published sentence template.

DiffuSETS embeds one string per ECG, built from its report lines (published lines are joined
with ``|``). The first line is wrapped as ``Most importantly, the 1st diagnosis is {LINE}.``,
every later one as ``As a supplementary condition, the Nth diagnosis is {LINE}.``, and the
sentences are concatenated with no separator. Stored embedding tables
(``ptbxl_text_embed.csv``) are keyed by these exact strings, so the wording, the ordinals and
the missing spaces between sentences must not change.

Example::

    >>> build_prompt("sinus rhythm | left axis deviation")
    'Most importantly, the 1st diagnosis is sinus rhythm.As a supplementary condition, the 2nd diagnosis is left axis deviation.'
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["REPORT_SEPARATOR", "build_prompt", "ordinal", "split_report"]

REPORT_SEPARATOR = "|"

FIRST_LINE_TEMPLATE = "Most importantly, the {ordinal} diagnosis is {line}."
OTHER_LINE_TEMPLATE = "As a supplementary condition, the {ordinal} diagnosis is {line}."


def ordinal(n: int) -> str:
    """English ordinal of a positive integer: 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ..."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n should be a positive integer, but got n={n!r}.")
    if 11 <= n % 100 <= 13:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def split_report(report: str | Sequence[str]) -> list[str]:
    """Report lines, stripped, without empty ones.

    Args:
        report: one string whose lines are joined with ``|`` (the published format), or a
            sequence with one line per item (items must not contain ``|``).

    Returns:
        The non-empty lines in their original order (possibly an empty list).
    """
    if isinstance(report, str):
        parts = report.split(REPORT_SEPARATOR)
    else:
        parts = list(report)
        for part in parts:
            if not isinstance(part, str):
                raise TypeError(f"Report lines should be strings, but got {type(part).__name__}: {part!r}.")
            if REPORT_SEPARATOR in part:
                raise ValueError(
                    f"A report line in a sequence should not contain {REPORT_SEPARATOR!r}, but got {part!r}; "
                    f"pass the whole report as one {REPORT_SEPARATOR!r}-joined string to have it split."
                )
    return [line for line in (part.strip() for part in parts) if line]


def build_prompt(report: str | Sequence[str]) -> str:
    """Wrap report lines in the DiffuSETS template and concatenate them.

    Lines are used verbatim apart from stripping surrounding whitespace (their case and
    punctuation are kept, as stored embedding tables are keyed by the exact prompt).

    Args:
        report: ``"line 1 | line 2 | ..."`` or a sequence of lines.

    Returns:
        The prompt string that the text encoder embeds.

    Raises:
        ValueError: if the report has no non-empty line.
    """
    lines = split_report(report)
    if not lines:
        raise ValueError(f"report should contain at least one non-empty line, but got {report!r}.")
    sentences = [FIRST_LINE_TEMPLATE.format(ordinal=ordinal(1), line=lines[0])]
    sentences += [OTHER_LINE_TEMPLATE.format(ordinal=ordinal(i), line=line) for i, line in enumerate(lines[1:], start=2)]
    return "".join(sentences)
