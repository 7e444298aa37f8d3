"""`vertebra score` and `vertebra instruments`, run as real subprocesses (python -m vertebra)."""

from __future__ import annotations

import json
from typing import Any

import pytest


def _json(proc: Any) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_score_odi_worked_example(cli: Any) -> None:
    """16 points over 9 sections (section 8 left empty): 16/45 x 100 = 35.6, moderate."""
    out = _json(cli("score", "odi", "--answers", "1,2,1,2,1,2,1,,3,3"))
    assert out["instrument_id"] == "odi"
    assert out["version"] == "2.1a"
    assert out["score"] == 35.6
    assert out["band"] == "moderate"
    assert (out["items_answered"], out["items_total"]) == (9, 10)
    assert out["extras"]["raw"] == 16


def test_score_not_scoreable_is_not_an_error(cli: Any) -> None:
    out = _json(cli("score", "odi", "--answers", "1,2,1,2,1,2,1,,,3"))
    assert out["score"] is None
    assert "unscored_reason" in out["extras"]


def test_score_yes_no_as_1_0_and_words(cli: Any) -> None:
    """RMDQ with 6 'yes' answers given as 1, yes, y, true and 18 'no' as 0/no -> 6."""
    answers = ["1", "yes", "y", "true", "1", "1"] + ["0"] * 9 + ["no"] * 9
    out = _json(cli("score", "rmdq", "--answers", ",".join(answers)))
    assert out["score"] == 6.0


def test_score_startback_risk_group(cli: Any) -> None:
    out = _json(cli("score", "startback", "-a", "0,0,0,0,1,1,1,1,3", "--indent", "0"))
    assert out["score"] == 5.0
    assert out["band"] == "high"
    assert out["extras"]["psychosocial_subscale"] == 5


def test_score_opioid_use(cli: Any) -> None:
    """Oxycodone 10 mg BID = 20 mg/day -> 30 MME/day."""
    out = _json(cli("score", "opioid_use", "--answers", "yes,oxycodone,20"))
    assert out["score"] == 30.0
    assert out["band"] == "opioid"


def test_score_promis_prorated(cli: Any) -> None:
    out = _json(cli("score", "promis_pf_4a", "--answers", "5,5,4,"))
    assert out["score"] == 48.3
    assert out["extras"]["raw_used"] == 19


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["score", "odi", "--answers", "1,2,1,2,1,2,1,0,3,9"], "'travelling': '9' is not allowed"),
        (["score", "odi", "--answers", "1,2,3"], "expected 10 answers"),
        (["score", "oswestry", "--answers", "1"], "unknown instrument 'oswestry'"),
        (["score", "rmdq", "--answers", ",".join(["maybe"] * 24)], "'rmdq_01'"),
        (["score", "opioid_use", "--answers", "0,oxycodone,20"], "current_use is 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Any, args: list[str], expected: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_value_message_lists_allowed_values(cli: Any) -> None:
    proc = cli("score", "odi", "--answers", "1,2,1,2,1,2,1,0,3,9")
    assert "allowed values: 0, 1, 2, 3, 4, 5" in proc.stderr


def test_instruments_json(cli: Any) -> None:
    rows = {r["id"]: r for r in _json(cli("instruments", "--json"))}
    assert {
        "odi",
        "rmdq",
        "nrs_back",
        "nrs_leg",
        "promis_pf_4a",
        "promis_pi_4a",
        "startback",
    } <= set(rows)
    assert rows["odi"]["item_text_shipped"] is False
    assert rows["odi"]["version"] == "2.1a"
    assert "Mapi" in rows["odi"]["licence"]["holder"]
    assert rows["nrs_back"]["item_text_shipped"] is True
    assert rows["startback"]["text_source"] == "placeholder"


def test_instruments_table(cli: Any) -> None:
    proc = cli("instruments", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "odi" in proc.stdout and "2.1a" in proc.stdout
    assert "placeholder" in proc.stdout and "shipped" in proc.stdout


def test_every_command_has_help(cli: Any) -> None:
    for command in ("score", "instruments"):
        proc = cli(command, "--help")
        assert proc.returncode == 0
        assert len(proc.stdout) > 200
    assert "print the result as JSON" in " ".join(cli("score", "--help").stdout.split())


def test_site_text_directory(cli: Any, tmp_path: Any) -> None:
    """A licensed-text overlay in VERTEBRA_INSTRUMENT_TEXT_DIR is picked up; a malformed one is
    refused with one line and exit code 2."""
    items = {
        f"pi4a_{i}": {"text": f"Q{i}", "options": {c: f"L{c}" for c in range(1, 6)}}
        for i in range(1, 5)
    }
    overlay = {"id": "promis_pi_4a", "version": "1.0", "instructions": "I", "items": items}
    (tmp_path / "pi.yaml").write_text(json.dumps(overlay), encoding="utf-8")  # JSON is YAML
    rows = {
        r["id"]: r
        for r in _json(
            cli("instruments", "--json", env={"VERTEBRA_INSTRUMENT_TEXT_DIR": str(tmp_path)})
        )
    }
    assert rows["promis_pi_4a"]["text_source"].startswith("overlay:")
    assert rows["promis_pf_4a"]["text_source"] == "placeholder"

    del items["pi4a_4"]
    (tmp_path / "pi.yaml").write_text(json.dumps(overlay), encoding="utf-8")
    proc = cli(
        "score",
        "promis_pi_4a",
        "-a",
        "1,2,3,4",
        env={"VERTEBRA_INSTRUMENT_TEXT_DIR": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "missing: pi4a_4" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
