import pytest

from ecgaug.text import build_prompt, ordinal, split_report


def test_single_line_matches_published_template():
    assert build_prompt("sinus rhythm") == "Most importantly, the 1st diagnosis is sinus rhythm."


def test_lines_are_split_on_pipes_stripped_and_concatenated_without_separator():
    prompt = build_prompt(" Sinus rhythm |Left axis deviation|| borderline ECG |")
    assert prompt == (
        "Most importantly, the 1st diagnosis is Sinus rhythm."
        "As a supplementary condition, the 2nd diagnosis is Left axis deviation."
        "As a supplementary condition, the 3rd diagnosis is borderline ECG."
    )


def test_sequence_input_gives_the_same_prompt_as_joined_string():
    lines = ["sinus rhythm", "left axis deviation", "low QRS voltage", "abnormal ECG"]
    assert build_prompt(lines) == build_prompt("|".join(lines))
    assert build_prompt(lines).endswith("As a supplementary condition, the 4th diagnosis is abnormal ECG.")


def test_many_lines_use_correct_ordinals():
    prompt = build_prompt([f"line {i}" for i in range(1, 23)])
    assert "the 11th diagnosis is line 11." in prompt
    assert "the 12th diagnosis is line 12." in prompt
    assert "the 13th diagnosis is line 13." in prompt
    assert "the 21st diagnosis is line 21." in prompt
    assert prompt.endswith("As a supplementary condition, the 22nd diagnosis is line 22.")


@pytest.mark.parametrize(
    "n, expected",
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (10, "10th"), (11, "11th"), (12, "12th"), (13, "13th"),
     (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st"), (111, "111th"), (112, "112th"), (1002, "1002nd")],
)
def test_ordinal(n, expected):
    assert ordinal(n) == expected


@pytest.mark.parametrize("n", [0, -1, 1.0])
def test_ordinal_rejects_non_positive_integers(n):
    with pytest.raises(ValueError, match="positive integer"):
        ordinal(n)


@pytest.mark.parametrize("report", ["", "  |  | ", [], ["", "  "]])
def test_empty_report_is_an_error(report):
    with pytest.raises(ValueError, match="at least one non-empty line"):
        build_prompt(report)


def test_sequence_items_must_not_contain_the_separator():
    with pytest.raises(ValueError, match="should not contain '\\|'"):
        build_prompt(["sinus rhythm|left axis deviation"])


def test_split_report_keeps_case_and_order():
    assert split_report("B | a|C") == ["B", "a", "C"]
