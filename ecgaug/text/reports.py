"""Report text for SCP codes: the condition DiffuSETS is prompted with.

PTB-XL labels ECGs with SCP-ECG statement codes (``{"IMI": 100.0, "SR": 0.0}``), while
DiffuSETS was trained on free-text report lines. :class:`ReportTemplater` turns codes into
report lines, ``|``-joined as in the published reports (pass the result to
:func:`ecgaug.text.build_prompt`)::

    >>> templater = ReportTemplater.from_ptbxl("datasets/ptbxl")  # doctest: +SKIP
    >>> templater.report({"IMI": 100.0, "SR": 0.0})  # doctest: +SKIP
    'inferior myocardial infarction|sinus rhythm'

Phrasings of a code come, in this order, from its ``description``; its ``SCP-ECG Statement
Description`` (prefixed with its ``Statement Category`` when it starts with "in ..."); the
hand-written clinical synonyms in :data:`PTBXL_SYNONYMS`; and, if that gives fewer than three,
the frames in :data:`PHRASE_FRAMES` around the first phrasing. Table text is cleaned up:
parenthetical remarks dropped ("(beat)", "(former EDIS)"), "a/b" read as "a or b", known
typos fixed, and capitalised words lower-cased (acronyms such as ECG, QRS, AV are kept).
The first phrasing is the deterministic one (``rng=None``); the others give variety.

Other vocabularies (SNOMED codes, MIMIC-IV-ECG report lines) are added with
:meth:`ReportTemplater.add_templates`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .prompt import REPORT_SEPARATOR

__all__ = ["KINDS", "PHRASE_FRAMES", "PTBXL_SYNONYMS", "TASKS", "LabelStatistics", "ReportTemplater", "UnknownCodeError"]

# PTB-XL statement kinds (the 0/1 columns of scp_statements.csv).
KINDS = ("diagnostic", "form", "rhythm")
# PTB-XL benchmark label sets (Strodthoff et al. 2020) that a label can belong to.
TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
MIN_PHRASINGS = 3

# Used around a code's first phrasing only when the table and synonyms give fewer than three.
PHRASE_FRAMES = ("ECG shows {}", "findings consistent with {}", "{} noted")

# Fixes applied to table text after parentheses and slashes are handled.
_TEXT_FIXES = (
    (r"Wolf-Parkinson-White", "Wolff-Parkinson-White"),
    (r"digitalis-effect", "digitalis effect"),
    (r"QT-interval", "QT interval"),
    (r"^ischemic in ", "ischemic ST-T changes in "),
    (r"^non-specific ischemic$", "non-specific ischemic ST-T changes"),
    (r"^electrolytic disturbance or drug$", "electrolytic disturbance or drug effect"),
)

# Clinical synonyms, worded like machine ECG reports (e.g. MIMIC-IV-ECG), for PTB-XL codes that
# have them. Codes absent here get their variety from the table text and PHRASE_FRAMES.
PTBXL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "NORM": ("normal electrocardiogram", "ECG within normal limits"),
    "NDT": ("non-diagnostic T-wave abnormalities",),
    "NST_": ("nonspecific ST abnormality",),
    "DIG": ("ST-T changes consistent with digitalis effect",),
    "LNGQT": ("prolonged QT interval",),
    "IMI": ("inferior infarct", "inferior wall myocardial infarction"),
    "ASMI": ("anteroseptal infarct",),
    "AMI": ("anterior infarct",),
    "ALMI": ("anterolateral infarct",),
    "ILMI": ("inferolateral infarct",),
    "LMI": ("lateral infarct",),
    "IPLMI": ("inferoposterolateral infarct",),
    "IPMI": ("inferoposterior infarct",),
    "PMI": ("posterior infarct",),
    "LAFB": ("left anterior hemiblock",),
    "LPFB": ("left posterior hemiblock",),
    "ISC_": ("ST-T changes suggestive of ischemia",),
    "ISCAL": ("anterolateral ischemia", "anterolateral ST-T changes may be due to myocardial ischemia"),
    "ISCAN": ("anterior ischemia", "anterior ST-T changes may be due to myocardial ischemia"),
    "ISCAS": ("anteroseptal ischemia", "anteroseptal ST-T changes may be due to myocardial ischemia"),
    "ISCIL": ("inferolateral ischemia", "inferolateral ST-T changes may be due to myocardial ischemia"),
    "ISCIN": ("inferior ischemia", "inferior ST-T changes may be due to myocardial ischemia"),
    "ISCLA": ("lateral ischemia", "lateral ST-T changes may be due to myocardial ischemia"),
    "INJAS": ("anteroseptal subendocardial injury",),
    "INJAL": ("anterolateral subendocardial injury",),
    "INJIN": ("inferior subendocardial injury",),
    "INJIL": ("inferolateral subendocardial injury",),
    "INJLA": ("lateral subendocardial injury",),
    "1AVB": ("1st degree AV block", "first degree atrioventricular block"),
    "2AVB": ("2nd degree AV block", "second degree atrioventricular block"),
    "3AVB": ("complete heart block", "third degree atrioventricular block"),
    "IVCD": ("intraventricular conduction delay",),
    "LAO/LAE": ("left atrial enlargement", "left atrial overload"),
    "RAO/RAE": ("right atrial enlargement", "right atrial overload"),
    "EL": ("electrolyte abnormality",),
    "ANEUR": ("ST-T changes suggestive of ventricular aneurysm", "ventricular aneurysm pattern"),
    "WPW": ("ventricular pre-excitation",),
    "PVC": ("premature ventricular contraction", "ventricular premature beat"),
    "PAC": ("premature atrial contraction", "atrial premature beat"),
    "PRC(S)": ("premature beats", "ectopic beats"),
    "QWAVE": ("Q waves", "abnormal Q waves"),
    "LOWT": ("low T-wave amplitude",),
    "INVT": ("T-wave inversion",),
    "LPR": ("PR prolongation", "long PR interval"),
    "LVOLT": ("low QRS voltage",),
    "HVOLT": ("increased QRS voltage",),
    "STD_": ("nonspecific ST depression",),
    "STE_": ("nonspecific ST elevation",),
    "NT_": ("nonspecific T-wave abnormality",),
}

_REQUIRED_COLUMNS = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
_CATEGORY_COLUMN = "Statement Category"
_SCP_DESCRIPTION_COLUMN = "SCP-ECG Statement Description"


class UnknownCodeError(KeyError):
    """A code has no phrasings."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


def clean_statement(text: str) -> str:
    """Tidy an SCP table description into a report line (see the module docstring)."""
    text = re.sub(r"(\w)\((e?s)\)", r"\1\2", text)  # "complex(es)" -> "complexes"
    text = re.sub(r"\s*\([^)]*\)", "", text)  # "(beat)", "(former EDIS)", "(complete)"
    text = re.sub(r"(?<=[a-z])/(?=[a-z])", " or ", text)  # "overload/enlargement"
    text = " ".join(text.split())
    for pattern, replacement in _TEXT_FIXES:
        text = re.sub(pattern, replacement, text)
    return " ".join(word.lower() if re.fullmatch(r"[A-Z][a-z]+", word) else word for word in text.split())


def _dedupe(phrasings: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(p for p in phrasings if p))


def _check_phrasings(code: str, phrasings: Sequence[str]) -> list[str]:
    if isinstance(phrasings, str):
        raise TypeError(
            f"phrasings for {code!r} should be a sequence of strings, but got a single string {phrasings!r}; wrap it in a list."
        )
    checked = []
    for phrasing in phrasings:
        if not isinstance(phrasing, str) or not phrasing.strip():
            raise ValueError(f"phrasings for {code!r} should be non-empty strings, but got {phrasing!r}.")
        phrasing = phrasing.strip()
        if REPORT_SEPARATOR in phrasing or phrasing.endswith("."):
            raise ValueError(
                f"A phrasing should be one report line without {REPORT_SEPARATOR!r} and without a final '.', "
                f"since the prompt template adds both, but got {phrasing!r} for {code!r}."
            )
        checked.append(phrasing)
    if not checked:
        raise ValueError(f"phrasings for {code!r} should contain at least one string, but got none.")
    return checked


@dataclasses.dataclass
class LabelStatistics:
    """How a label's member codes and other codes occur in a set of records.

    Attributes:
        num_records: records carrying the label (any of its member codes).
        code_counts: member code -> records carrying it; for ``report_for_class(code_counts=...)``.
        co_occurring: other code -> fraction of the label's records carrying it; for
            ``report_for_class(co_occurring=...)``.
    """

    num_records: int
    code_counts: dict[str, int]
    co_occurring: dict[str, float]


class ReportTemplater:
    """Builds report text from SCP codes.

    Args:
        scp_statements: PTB-XL's ``scp_statements.csv`` as a DataFrame indexed by code, with
            columns ``description``, ``diagnostic``, ``form``, ``rhythm`` (1 or empty),
            ``diagnostic_class``, ``diagnostic_subclass`` and optionally
            ``Statement Category`` and ``SCP-ECG Statement Description``.
        task: the PTB-XL label set (one of :data:`TASKS`) that class labels given to
            :meth:`codes_for_label`, :meth:`report_for_class` and :meth:`label_statistics` come
            from, e.g. the ``task`` of the data set being augmented. ``None`` infers it per label,
            which fails for labels that mean different codes in different tasks ("STTC" is a
            superclass and a subclass, "IMI" a code and a subclass).
        kind_order: order of the statement kinds in a report. Defaults to diagnostic, then
            form, then rhythm statements (codes of no kind go last).
        synonyms: extra phrasings per code; defaults to :data:`PTBXL_SYNONYMS`.
    """

    def __init__(
        self,
        scp_statements: pd.DataFrame,
        *,
        task: str | None = None,
        kind_order: Sequence[str] = KINDS,
        synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        missing = [column for column in _REQUIRED_COLUMNS if column not in scp_statements.columns]
        if missing:
            raise ValueError(f"scp_statements should have columns {list(_REQUIRED_COLUMNS)}, but lacks {missing}.")
        if not scp_statements.index.is_unique:
            repeated = sorted(set(scp_statements.index[scp_statements.index.duplicated()]))
            raise ValueError(f"scp_statements should be indexed by unique SCP codes, but repeats {repeated}.")
        if task is not None and task not in TASKS:
            raise ValueError(f"Unknown value {task!r} for argument task. Valid values are {list(TASKS)} or None.")
        if sorted(kind_order) != sorted(KINDS):
            raise ValueError(f"kind_order should order {list(KINDS)}, but got {list(kind_order)}.")
        self.task = task
        self.kind_order = tuple(kind_order)
        synonyms = PTBXL_SYNONYMS if synonyms is None else synonyms

        self._phrasings: dict[str, list[str]] = {}
        self._kinds: dict[str, set[str]] = {}
        self._subclass: dict[str, str] = {}
        self._superclass: dict[str, str] = {}
        for code, row in scp_statements.iterrows():
            code = str(code)
            self._kinds[code] = {kind for kind in KINDS if pd.notna(row[kind]) and float(row[kind]) == 1.0}
            if "diagnostic" in self._kinds[code]:
                for column, mapping in (("diagnostic_subclass", self._subclass), ("diagnostic_class", self._superclass)):
                    if pd.notna(row[column]):
                        mapping[code] = str(row[column])
            self._phrasings[code] = self._phrasings_from_row(row, synonyms.get(code, ()))

    @classmethod
    def from_ptbxl(cls, root: str | os.PathLike, **kwargs) -> "ReportTemplater":
        """Build from ``root/scp_statements.csv`` of a PTB-XL release; ``kwargs`` go to the constructor."""
        path = Path(root) / "scp_statements.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; root should be the PTB-XL folder that holds scp_statements.csv and ptbxl_database.csv."
            )
        return cls(pd.read_csv(path, index_col=0), **kwargs)

    @staticmethod
    def _phrasings_from_row(row: pd.Series, synonyms: Sequence[str]) -> list[str]:
        phrasings = [clean_statement(str(row["description"]))]
        scp_description = row.get(_SCP_DESCRIPTION_COLUMN)
        if isinstance(scp_description, str):
            category = row.get(_CATEGORY_COLUMN)
            if scp_description.startswith("in ") and isinstance(category, str):
                scp_description = f"{category} {scp_description}"  # "ischemic ST-T changes" + "in lateral leads"
            phrasings.append(clean_statement(scp_description))
        phrasings = _dedupe([*phrasings, *synonyms])
        for frame in PHRASE_FRAMES:
            if len(phrasings) >= MIN_PHRASINGS:
                break
            phrasings = _dedupe([*phrasings, frame.format(phrasings[0])])
        return phrasings

    # ----------------------------------------------------------------------------- vocabulary

    @property
    def codes(self) -> list[str]:
        """Every code with phrasings: the table's, then added ones."""
        return list(self._phrasings)

    def phrasings(self, code: str) -> list[str]:
        """The phrasings of ``code``; the first is the one used when no ``rng`` is given."""
        if code not in self._phrasings:
            raise UnknownCodeError(
                f"No phrasings for code {code!r}: it is not in the SCP table and none were added. "
                f"Add them with templater.add_templates({code!r}, ['first phrasing', 'another phrasing'])."
            )
        return list(self._phrasings[code])

    def add_templates(self, code: str, phrasings: Sequence[str], replace: bool = False, *, kind: str | None = None) -> None:
        """Add phrasings for ``code`` (a new code, e.g. a SNOMED code or a MIMIC report line, or a table code).

        Args:
            code: the code the phrasings describe.
            phrasings: report lines (no ``|``, no final ``.``); for a new code the first one
                is the deterministic phrasing.
            replace: replace the code's phrasings instead of appending to them.
            kind: ``"diagnostic"``, ``"form"`` or ``"rhythm"``, which places the code's line in
                a report; ``None`` keeps a table code's kinds (a new code goes last).
        """
        if not isinstance(code, str) or not code:
            raise ValueError(f"code should be a non-empty string, but got {code!r}.")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"Unknown value {kind!r} for argument kind. Valid values are {list(KINDS)} or None.")
        checked = _check_phrasings(code, phrasings)
        existing = [] if replace else self._phrasings.get(code, [])
        self._phrasings[code] = _dedupe([*existing, *checked])
        if kind is not None:
            self._kinds[code] = {kind}
        self._kinds.setdefault(code, set())

    # ----------------------------------------------------------------------------- labels

    def _members(self, label: str, task: str) -> list[str]:
        if task == "all":
            return [label] if label in self._phrasings else []
        if task in KINDS:
            return [label] if task in self._kinds.get(label, ()) else []
        mapping = self._subclass if task == "subdiagnostic" else self._superclass
        return [code for code in self._phrasings if mapping.get(code) == label]

    def codes_for_label(self, label: str, task: str | None = None) -> list[str]:
        """The codes that carry ``label``.

        Args:
            label: a code (``"IMI"``), a diagnostic subclass (``"_AVB"``) or a diagnostic
                superclass (``"MI"``).
            task: the label set ``label`` comes from, one of :data:`TASKS` (``"subdiagnostic"``:
                subclasses, ``"superdiagnostic"``: superclasses, the others: codes). ``None``
                uses the templater's ``task``; if that is ``None`` too, the task is inferred, and
                a label that names different code sets in different tasks (``"IMI"`` is a code
                and a subclass) raises, asking for ``task``.

        Returns:
            The member codes in table order.
        """
        task = self.task if task is None else task
        if task is not None and task not in TASKS:
            raise ValueError(f"Unknown value {task!r} for argument task. Valid values are {list(TASKS)} or None.")
        if task is not None:
            members = self._members(label, task)
            if not members:
                raise ValueError(
                    f"Label {label!r} is not a {task} label; check the label or pass another task (one of {list(TASKS)})."
                )
            return members
        readings = {name: self._members(label, name) for name in ("all", "subdiagnostic", "superdiagnostic")}
        distinct = {tuple(members) for members in readings.values() if members}
        if not distinct:
            raise ValueError(
                f"Unknown label {label!r}: it is neither a code, a diagnostic subclass {sorted(set(self._subclass.values()))} "
                f"nor a diagnostic superclass {sorted(set(self._superclass.values()))}."
            )
        if len(distinct) > 1:
            meanings = {name: members for name, members in readings.items() if members}
            raise ValueError(
                f"Label {label!r} is ambiguous: {meanings}. Pass task='all' (the code) or task='subdiagnostic'/'superdiagnostic', "
                "here or to the ReportTemplater."
            )
        return list(distinct.pop())

    def label_statistics(
        self, records: Iterable[Mapping[str, float] | Sequence[str]], label: str, *, task: str | None = None
    ) -> LabelStatistics:
        """Count ``label``'s member codes and the codes that co-occur with it.

        Args:
            records: the codes of each record, as PTB-XL ``scp_codes`` dicts or code lists.
            label, task: as in :meth:`codes_for_label`.
        """
        members = self.codes_for_label(label, task)
        num_records = 0
        code_counts = dict.fromkeys(members, 0)
        other_counts: dict[str, int] = {}
        for codes in records:
            codes = list(codes)
            if not any(code in code_counts for code in codes):
                continue
            num_records += 1
            for code in dict.fromkeys(codes):
                if code in code_counts:
                    code_counts[code] += 1
                else:
                    other_counts[code] = other_counts.get(code, 0) + 1
        co_occurring = {code: count / num_records for code, count in sorted(other_counts.items(), key=lambda item: -item[1])}
        return LabelStatistics(num_records=num_records, code_counts=code_counts, co_occurring=co_occurring)

    # ----------------------------------------------------------------------------- reports

    def _kind_rank(self, code: str) -> int:
        ranks = [self.kind_order.index(kind) for kind in self._kinds.get(code, ())]
        return min(ranks, default=len(self.kind_order))

    def report(
        self,
        codes: Sequence[str] | Mapping[str, float],
        *,
        rng: np.random.Generator | None = None,
        max_lines: int | None = None,
    ) -> str:
        """A ``|``-joined report with one line per code.

        Lines are ordered by kind (``kind_order``: diagnostic, form, rhythm by default), then
        by likelihood (highest first, for a PTB-XL ``scp_codes`` dict), then as given.

        Args:
            codes: codes as a sequence, or a PTB-XL ``scp_codes`` dict ``{code: likelihood}``
                (likelihood 0, as PTB-XL gives rhythm codes, still counts as present).
            rng: picks each code's phrasing at random; ``None`` takes the first phrasing.
            max_lines: keep only the first ``max_lines`` lines after ordering.

        Returns:
            e.g. ``"inferior myocardial infarction|sinus rhythm"``.
        """
        if isinstance(codes, str):
            raise TypeError(
                f"codes should be a sequence or a mapping of codes, but got a single string {codes!r}; wrap it in a list."
            )
        likelihoods = dict(codes) if isinstance(codes, Mapping) else dict.fromkeys(codes, 0.0)
        if not likelihoods:
            raise ValueError("codes should contain at least one code, but got none.")
        if max_lines is not None and (not isinstance(max_lines, int) or max_lines < 1):
            raise ValueError(f"max_lines should be a positive integer or None, but got max_lines={max_lines!r}.")
        phrasings = {code: self.phrasings(code) for code in likelihoods}
        # sorted() is stable: codes of the same kind and likelihood keep their input order.
        order = sorted(likelihoods, key=lambda code: (self._kind_rank(code), -float(likelihoods[code])))
        if max_lines is not None:
            order = order[:max_lines]
        if rng is None:
            lines = [phrasings[code][0] for code in order]
        else:
            lines = [phrasings[code][int(rng.integers(len(phrasings[code])))] for code in order]
        return REPORT_SEPARATOR.join(lines)

    def report_for_class(
        self,
        label: str,
        *,
        rng: np.random.Generator,
        task: str | None = None,
        code_counts: Mapping[str, float] | None = None,
        co_occurring: Mapping[str, float] | Sequence[str] | None = None,
        max_lines: int | None = None,
    ) -> str:
        """A random report for a record of class ``label``.

        Picks one member code of ``label`` (weighted by ``code_counts`` if given, else
        uniformly), adds the ``co_occurring`` codes or labels, and returns :meth:`report` of
        them with random phrasings. The picked code leads its kind's lines.

        Args:
            label, task: as in :meth:`codes_for_label`.
            rng: the random generator (all draws come from it).
            code_counts: how often each member code of ``label`` occurs; members absent from it
                are never picked. :meth:`label_statistics` computes it.
            co_occurring: what else the record carries. A sequence of codes or class labels is
                always added; a mapping ``{code or label: probability}`` adds each with its
                probability (:meth:`label_statistics` computes one). A code is used as is; a
                class label (e.g. ``"STTC"``) adds one of its member codes, picked uniformly.
            max_lines: as in :meth:`report`.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng should be a numpy.random.Generator (np.random.default_rng(seed)), but got {type(rng).__name__}.")
        if isinstance(co_occurring, str):
            raise TypeError(f"co_occurring should be a sequence or a mapping, but got a single string {co_occurring!r}; wrap it in a list.")
        if co_occurring is None:
            extras: list[tuple[str, float]] = []
        elif isinstance(co_occurring, Mapping):
            extras = [(name, float(probability)) for name, probability in co_occurring.items()]
        else:
            extras = [(name, 1.0) for name in co_occurring]
        for name, probability in extras:
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"co_occurring probabilities should lie in [0, 1], but got {probability!r} for {name!r}.")

        members = self.codes_for_label(label, task)
        if code_counts is None:
            weights = np.ones(len(members))
        else:
            weights = np.array([float(code_counts.get(code, 0.0)) for code in members])
            if np.any(weights < 0) or weights.sum() <= 0:
                raise ValueError(
                    f"code_counts should give a positive total to the codes of {label!r} {members}, but gives {weights.tolist()}."
                )
        codes = [members[int(rng.choice(len(members), p=weights / weights.sum()))]]
        for name, probability in extras:
            if rng.random() >= probability:
                continue
            if name in self._phrasings:
                code = name
            else:
                candidates = self.codes_for_label(name, task)
                code = candidates[int(rng.integers(len(candidates)))]
            if code not in codes:
                codes.append(code)
        return self.report(codes, rng=rng, max_lines=max_lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_codes={len(self._phrasings)}, kind_order={self.kind_order})"
