"""``vertebra screen`` as a real subprocess: JSON out, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_cli

EXAMPLES = REPO_ROOT / "docs" / "examples" / "screening"


@pytest.mark.parametrize(
    ("name", "verdict", "fired"),
    [
        ("emergency", "emergency", ["redflag.cauda_equina"]),
        ("refer", "refer", ["redflag.malignancy"]),
        (
            "not_candidate",
            "not_candidate",
            [
                "exclusion.modic_type_3",
                "candidacy.chronic_pain",
                "candidacy.conservative_care_duration",
            ],
        ),
        (
            "needs_more_information",
            "needs_more_information",
            ["completeness.no_imaging", "completeness.candidacy_facts"],
        ),
        ("candidate", "candidate", []),
    ],
)
def test_screen_each_example(name: str, verdict: str, fired: list[str]) -> None:
    result = run_cli("screen", str(EXAMPLES / f"{name}.json"))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["verdict"] == verdict
    assert [rule["id"] for rule in output["fired"]] == fired
    assert output["ruleset_id"] == "vertebra-screening"
    assert output["ruleset_version"]


def test_screen_reports_missing_facts_and_startback() -> None:
    output = json.loads(run_cli("screen", str(EXAMPLES / "needs_more_information.json")).stdout)
    assert output["missing"][0] == {
        "fact": "worse_pain",
        "label": "Which is worse, back pain or pain down the leg",
        "question": (
            "Which pain is worse, the pain in your lower back or the pain going down your leg?"
        ),
    }
    emergency = json.loads(run_cli("screen", str(EXAMPLES / "emergency.json")).stdout)
    assert emergency["startback"] == {"risk_group": "high", "total": 8, "subscale": 4}
    assert emergency["missing"] == []


def test_screen_reads_stdin() -> None:
    result = run_cli("screen", "-", input_text='{"red_flags": ["fever"]}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "refer"


def test_screen_indent_zero_prints_one_line() -> None:
    result = run_cli("screen", "--indent", "0", "-", input_text="{}")
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1


def test_screen_schema() -> None:
    result = run_cli("screen", "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert "red_flags" in schema["properties"]


def _assert_one_line_error(result_stderr: str, fragment: str) -> None:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert fragment in lines[0]
    assert "Traceback" not in result_stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"age": ', "stdin: not valid JSON: Expecting value at line 1 column 9"),
        ("", "stdin: not valid JSON"),
        ('{"pain_duration_months": NaN}', "NaN is not allowed"),
        ("[1, 2]", "facts must be a JSON object"),
        ('{"agee": 40}', "invalid facts: agee: unknown fact; allowed: age"),
        ('{"age": 130}', "invalid facts: age: must be a whole number from 0 to 120, got 130"),
        ('{"red_flags": ["flu"]}', "red_flags[0]: unknown id 'flu'"),
        ('{"findings": {"modic_type": "3"}}', "findings.modic_type: must be a whole number"),
    ],
)
def test_screen_bad_input_exits_2_with_one_line(text: str, fragment: str) -> None:
    result = run_cli("screen", "-", input_text=text)
    assert result.returncode == 2
    assert result.stdout == ""
    _assert_one_line_error(result.stderr, fragment)


def test_screen_bad_file_in_a_path(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text('{"age": "old"}', encoding="utf-8")
    result = run_cli("screen", str(path))
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, f"{path}: invalid facts: age")


def test_screen_missing_file() -> None:
    result = run_cli("screen", "/nonexistent/facts.json")
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, "cannot read /nonexistent/facts.json")


def test_screen_without_file() -> None:
    result = run_cli("screen")
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, "give a facts FILE")


def test_screen_text_says_what_is_missing_and_what_to_bring() -> None:
    """``--text``: the outcome in plain words, e.g. no MRI yet -> needs more information."""
    result = run_cli("screen", "--text", str(EXAMPLES / "needs_more_information.json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("We need more information\n")
    assert "You have not had an MRI scan of your lower back." in out
    assert "Still to answer:\n- Which pain is worse" in out
    assert "What to bring to your doctor or a clinic: your written MRI report" in out
    assert "Rules: vertebra-screening 3.0.0" in out
