"""`vertebra export csv` and `vertebra report` (database mode) as real subprocesses on a
temporary SQLite file (the ``db_env`` fixture: migrated, 60 synthetic patients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import run_cli


def test_export_csv_writes_the_three_tables(db_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "export"
    done = run_cli("export", "csv", "--out", str(out), env=db_env)
    assert done.returncode == 0, done.stderr
    assert "IDENTIFIED" in done.stderr
    patients = pd.read_csv(out / "patients.csv")
    timepoints = pd.read_csv(out / "timepoints.csv")
    events = pd.read_csv(out / "events.csv")
    assert len(patients) == 60 and patients["patient_id"].is_unique
    assert "mrn" in patients.columns  # identified export, for the clinic's own use
    # one row per patient x scheduled time point (the default protocol has 6)
    assert len(timepoints) == 60 * 6
    assert not timepoints.duplicated(["patient_id", "timepoint"]).any()
    assert set(events["kind"]) <= {"adverse_event", "subsequent_surgery", "repeat_injection"}
    # the export is a valid input of `vertebra report --from`
    rep = run_cli(
        "report", "--from", str(out), "--format", "json", "--out", str(tmp_path / "r.json"),
        "--as-of", "2026-11-25", env=db_env,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert json.loads((tmp_path / "r.json").read_text())["n_patients"] == 60


def test_export_parquet_and_one_clinic(db_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "pq"
    done = run_cli("export", "csv", "--out", str(out), "--format", "parquet", "--clinic", "1",
                   env=db_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    patients = pd.read_parquet(out / "patients.parquet")
    assert 0 < len(patients) < 60 and set(patients["clinic_id"]) == {"1"}
    tps = pd.read_parquet(out / "timepoints.parquet")
    assert set(tps["patient_id"]) == set(patients["patient_id"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "csv", "--out", "X", "--format", "xlsx"], "--format"),
        (["export", "csv", "--out", "X", "--clinic", "north"], "--clinic"),
        (["report", "--out", "X", "--format", "docx"], "--format"),
        (["report", "--out", "X", "--arm", "no_such_arm"], "no patients"),
        (["report", "--out", "X", "--treated-from", "2026-02-30"], "--treated-from"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    db_env: dict[str, str], tmp_path: Path, args: list[str], needle: str
) -> None:
    args = [str(tmp_path / "x") if a == "X" else a for a in args]
    done = run_cli(*args, env=db_env)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_report_from_database_pdf_and_json(db_env: dict[str, str], tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    done = run_cli("report", "--format", "pdf", "--out", str(pdf), "--as-of", "2026-11-25",
                   env=db_env, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    js = tmp_path / "report.json"
    done = run_cli("report", "--format", "json", "--out", str(js), "--as-of", "2026-11-25",
                   "--condition", "degenerative_disc_disease", env=db_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(js.read_text())
    assert report["filter"]["conditions"] == ["degenerative_disc_disease"]
    for key in ("report_version", "as_of", "n_patients", "arms", "honesty_notes",
                "observational_caveat", "survival", "comparisons", "benchmark"):  # fmt: skip
        assert key in report
    arm = next(iter(report["arms"].values()))
    tp = next(t for t in arm["timepoints"] if t["timepoint"] == "month_12")
    for key in ("months", "n_expected", "n_completed"):
        assert key in tp
    for measure in ("odi", "nrs_back"):
        for key in ("mean_change", "mean_change_ci", "responder_rate_completers",
                    "responder_rate_all"):  # fmt: skip
            assert key in tp[measure]
    assert [p["months"] for p in arm["surgery_free"]] == [6, 12, 24]
    assert {"survival", "ci", "at_risk"} <= set(arm["surgery_free"][0])
