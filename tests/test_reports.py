import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgaug.text import ReportTemplater, UnknownCodeError, build_prompt

# Rows copied from PTB-XL 1.0.3 scp_statements.csv (the columns the templater reads).
SCP_CSV = """\
,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass,Statement Category,SCP-ECG Statement Description
NDT,non-diagnostic T abnormalities,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,non-diagnostic T abnormalities
DIG,digitalis-effect,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,suggests digitalis-effect
NORM,normal ECG,1.0,,,NORM,NORM,Normal/abnormal,normal ECG
IMI,inferior myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferior myocardial infarction
ASMI,anteroseptal myocardial infarction,1.0,,,MI,AMI,Myocardial Infarction,anteroseptal myocardial infarction
CRBBB,complete right bundle branch block,1.0,,,CD,CRBBB,Intraventricular and intra-atrial Conduction disturbances,(complete) right bundle branch block
ISCAL,ischemic in anterolateral leads,1.0,,,STTC,ISCA,ischemic ST-T changes,in anterolateral leads
ILMI,inferolateral myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferolateral myocardial infarction
LAO/LAE,left atrial overload/enlargement,1.0,,,HYP,LAO/LAE,Atrial statements,left atrial overload/enlargement
LVOLT,low QRS voltages in the frontal and horizontal leads,,1.0,,,,Other QRS morphology descriptive statements,low QRS voltages in the frontal and horizontal leads
PRC(S),premature complex(es),,1.0,,,,Statements related to ectopic rhythm abnormalities,premature complex(es)
SR,sinus rhythm,,,1.0,,,Statements related to impulse formation (abnormalities),sinus rhythm
AFIB,atrial fibrillation,,,1.0,,,Statements related to impulse formation (abnormalities),atrial fibrillation
"""
CODES = ["NDT", "DIG", "NORM", "IMI", "ASMI", "CRBBB", "ISCAL", "ILMI", "LAO/LAE", "LVOLT", "PRC(S)", "SR", "AFIB"]
REAL_SCP_STATEMENTS = Path("/work/shared/ptbxl/scp_statements.csv")


def scp_table() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(SCP_CSV), index_col=0)


@pytest.fixture
def templater():
    return ReportTemplater(scp_table())


# ----------------------------------------------------------------------------- phrasings


def test_every_code_has_three_distinct_clean_phrasings(templater):
    assert templater.codes == CODES
    for code in CODES:
        phrasings = templater.phrasings(code)
        assert len(set(phrasings)) == len(phrasings) >= 3, code
        for phrasing in phrasings:
            assert phrasing == phrasing.strip() and "|" not in phrasing and not phrasing.endswith(".")
            assert "(" not in phrasing and "/" not in phrasing, phrasing


@pytest.mark.parametrize(
    "code, first_phrasings",
    [
        ("SR", ["sinus rhythm", "ECG shows sinus rhythm", "findings consistent with sinus rhythm"]),  # frames fill up to three
        ("CRBBB", ["complete right bundle branch block", "right bundle branch block"]),  # "(complete)" dropped
        ("DIG", ["digitalis effect", "suggests digitalis effect", "ST-T changes consistent with digitalis effect"]),  # typo fixed, synonym
        ("ISCAL", ["ischemic ST-T changes in anterolateral leads", "anterolateral ischemia"]),  # category joined to "in ..."
        ("LAO/LAE", ["left atrial overload or enlargement", "left atrial enlargement", "left atrial overload"]),
        ("PRC(S)", ["premature complexes"]),
        ("NORM", ["normal ECG", "normal electrocardiogram", "ECG within normal limits"]),  # acronyms keep their case
    ],
)
def test_phrasings_are_cleaned_from_the_table(templater, code, first_phrasings):
    assert templater.phrasings(code)[: len(first_phrasings)] == first_phrasings


def test_unknown_code_error_names_code_and_fix(templater):
    with pytest.raises(UnknownCodeError, match=r"'E11\.9'.*add_templates\('E11\.9'"):
        templater.phrasings("E11.9")
    with pytest.raises(KeyError):
        templater.report(["SR", "E11.9"])


def test_add_templates_extends_replaces_and_places_new_codes(templater):
    templater.add_templates("SR", ["regular sinus rhythm"])
    assert templater.phrasings("SR")[0] == "sinus rhythm" and templater.phrasings("SR")[-1] == "regular sinus rhythm"
    templater.add_templates("SR", ["Sinus rhythm"], replace=True)
    assert templater.phrasings("SR") == ["Sinus rhythm"]

    templater.add_templates("426783006", ["normal sinus rhythm", "NSR"], kind="rhythm")  # a SNOMED code
    templater.add_templates("misc", ["unconfirmed report"])  # no kind: goes last
    assert templater.report(["misc", "426783006", "IMI"]) == "inferior myocardial infarction|normal sinus rhythm|unconfirmed report"


@pytest.mark.parametrize(
    "phrasings, kind, error, match",
    [
        (["a|b"], None, ValueError, "without '\\|'"),
        (["sinus rhythm."], None, ValueError, "final '.'"),
        ([], None, ValueError, "at least one"),
        ("sinus rhythm", None, TypeError, "single string"),
        (["x"], "morphology", ValueError, "Valid values are \\['diagnostic', 'form', 'rhythm'\\]"),
    ],
)
def test_add_templates_rejects_bad_input(templater, phrasings, kind, error, match):
    with pytest.raises(error, match=match):
        templater.add_templates("X", phrasings, kind=kind)


# ----------------------------------------------------------------------------- reports


def test_report_orders_diagnostic_form_rhythm_then_likelihood(templater):
    scp_codes = {"SR": 0.0, "LVOLT": 100.0, "ILMI": 50.0, "IMI": 100.0}  # a PTB-XL scp_codes dict
    report = templater.report(scp_codes)
    assert report == (
        "inferior myocardial infarction|inferolateral myocardial infarction"
        "|low QRS voltages in the frontal and horizontal leads|sinus rhythm"
    )
    assert build_prompt(report).startswith("Most importantly, the 1st diagnosis is inferior myocardial infarction.")
    assert templater.report(["SR", "ILMI", "IMI"]) == "inferolateral myocardial infarction|inferior myocardial infarction|sinus rhythm"
    assert templater.report(["SR", "NDT"]) == "non-diagnostic T abnormalities|sinus rhythm"  # diagnostic and form: diagnostic
    assert templater.report(scp_codes, max_lines=2) == "inferior myocardial infarction|inferolateral myocardial infarction"


def test_kind_order_can_put_rhythm_first():
    templater = ReportTemplater(scp_table(), kind_order=("rhythm", "diagnostic", "form"))
    assert templater.report(["LVOLT", "IMI", "SR"]).split("|") == [
        "sinus rhythm",
        "inferior myocardial infarction",
        "low QRS voltages in the frontal and horizontal leads",
    ]


def test_random_phrasings_are_reproducible_and_varied(templater):
    reports = [templater.report(["IMI", "SR"], rng=np.random.default_rng(seed)) for seed in range(30)]
    assert reports[:5] == [templater.report(["IMI", "SR"], rng=np.random.default_rng(seed)) for seed in range(5)]
    first_lines = {report.split("|")[0] for report in reports}
    assert first_lines == set(templater.phrasings("IMI"))
    assert all(report.split("|")[1] in templater.phrasings("SR") for report in reports)


@pytest.mark.parametrize("codes, error", [([], ValueError), ("SR", TypeError), ({}, ValueError)])
def test_report_rejects_bad_codes(templater, codes, error):
    with pytest.raises(error):
        templater.report(codes)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "label, task, codes",
    [
        ("MI", None, ["IMI", "ASMI", "ILMI"]),
        ("MI", "superdiagnostic", ["IMI", "ASMI", "ILMI"]),
        ("IMI", "subdiagnostic", ["IMI", "ILMI"]),
        ("IMI", "all", ["IMI"]),
        ("AMI", None, ["ASMI"]),
        ("NORM", None, ["NORM"]),  # code, subclass and superclass agree
        ("LVOLT", "form", ["LVOLT"]),
        ("SR", None, ["SR"]),
    ],
)
def test_codes_for_label(templater, label, task, codes):
    assert templater.codes_for_label(label, task) == codes


@pytest.mark.parametrize(
    "label, task, match",
    [
        ("IMI", None, "ambiguous"),
        ("STTC", None, "ambiguous"),  # a superclass and a subclass of different codes
        ("XYZ", None, "Unknown label 'XYZ'"),
        ("IMI", "form", "not a form label"),
        ("MI", "subclass", "Unknown value 'subclass' for argument task"),
    ],
)
def test_codes_for_label_errors(templater, label, task, match):
    with pytest.raises(ValueError, match=match):
        templater.codes_for_label(label, task)


def test_report_for_class_weights_members_and_adds_co_occurring_codes(templater):
    rng = np.random.default_rng(0)
    for _ in range(20):
        report = templater.report_for_class(
            "MI", rng=rng, code_counts={"IMI": 0, "ILMI": 7}, co_occurring={"SR": 1.0, "AFIB": 0.0, "ILMI": 1.0}
        )
        lines = report.split("|")
        assert len(lines) == 2  # ILMI (picked, so not added again) and SR, never AFIB or IMI
        assert lines[0] in templater.phrasings("ILMI") and lines[1] in templater.phrasings("SR")


def test_templater_task_resolves_labels_and_co_occurring_labels_add_member_codes():
    superclasses = ReportTemplater(scp_table(), task="superdiagnostic")
    assert superclasses.codes_for_label("STTC") == ["NDT", "DIG", "ISCAL"]
    assert ReportTemplater(scp_table(), task="subdiagnostic").codes_for_label("STTC") == ["NDT", "DIG"]
    sttc = {p for code in ["NDT", "DIG", "ISCAL"] for p in superclasses.phrasings(code)}
    seen = set()
    for seed in range(20):
        # As augment.plan calls it: the other class labels of the job, always added.
        lines = superclasses.report_for_class("MI", rng=np.random.default_rng(seed), co_occurring=["STTC", "SR"]).split("|")
        assert len(lines) == 3
        mi_line, sttc_line, sr_line = lines  # all diagnostic but SR; the class's own code leads
        assert mi_line in {p for code in ["IMI", "ASMI", "ILMI"] for p in superclasses.phrasings(code)}
        assert sttc_line in sttc and sr_line in superclasses.phrasings("SR")  # "SR" is a code: used as is
        seen.add(sttc_line)
    assert len(seen) > 3
    with pytest.raises(ValueError, match="Unknown value 'subclass' for argument task"):
        ReportTemplater(scp_table(), task="subclass")


def test_report_for_class_without_counts_picks_every_member_and_is_reproducible(templater):
    first_lines = set()
    for seed in range(40):
        report = templater.report_for_class("IMI", task="subdiagnostic", rng=np.random.default_rng(seed))
        assert report == templater.report_for_class("IMI", task="subdiagnostic", rng=np.random.default_rng(seed))
        first_lines.add(report)
    assert first_lines & set(templater.phrasings("IMI")) and first_lines & set(templater.phrasings("ILMI"))


def test_report_for_class_rejects_bad_arguments(templater):
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        templater.report_for_class("MI", rng=None)
    with pytest.raises(ValueError, match="positive total"):
        templater.report_for_class("MI", rng=np.random.default_rng(0), code_counts={"NORM": 3})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        templater.report_for_class("MI", rng=np.random.default_rng(0), co_occurring={"SR": 1.5})


def test_label_statistics(templater):
    records = [{"IMI": 100.0, "SR": 0.0}, {"ILMI": 50.0, "IMI": 100.0, "AFIB": 0.0}, {"NORM": 100.0, "SR": 0.0}, ["ASMI", "SR"]]
    stats = templater.label_statistics(records, "MI")
    assert stats.num_records == 3
    assert stats.code_counts == {"IMI": 2, "ASMI": 1, "ILMI": 1}
    assert stats.co_occurring == {"SR": 2 / 3, "AFIB": 1 / 3}


# ----------------------------------------------------------------------------- construction


def test_from_ptbxl_reads_scp_statements(tmp_path):
    (tmp_path / "scp_statements.csv").write_text(SCP_CSV)
    assert ReportTemplater.from_ptbxl(tmp_path).codes == CODES
    with pytest.raises(FileNotFoundError, match="scp_statements.csv"):
        ReportTemplater.from_ptbxl(tmp_path / "missing")


def test_table_missing_columns_is_an_error():
    with pytest.raises(ValueError, match="lacks \\['diagnostic_subclass'\\]"):
        ReportTemplater(scp_table().drop(columns=["diagnostic_subclass"]))


@pytest.mark.skipif(not REAL_SCP_STATEMENTS.is_file(), reason="real PTB-XL scp_statements.csv not available")
def test_real_scp_statements_give_three_phrasings_for_all_71_codes():
    templater = ReportTemplater(pd.read_csv(REAL_SCP_STATEMENTS, index_col=0))
    assert len(templater.codes) == 71
    for code in templater.codes:
        assert len(set(templater.phrasings(code))) >= 3, code
