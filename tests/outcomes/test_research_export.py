"""`vertebra export research` as a real subprocess on the ``db_env`` registry (60 synthetic
patients): de-identified files, manifest and README, no identifier in any cell of any file
(HIPAA Safe Harbor, 45 CFR 164.514(b)(2)), an audit row, and a valid `report --from` input."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import run_cli
from vertebra.core.deidentify import ruleset

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _registry(env: dict[str, str]) -> sqlite3.Connection:
    """A read-only connection to the CLI's SQLite registry."""
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _identifiers(env: dict[str, str]) -> tuple[set[str], set[str]]:
    """(exact values, whole-word names): every MRN, e-mail, phone, birth date and calendar
    date of every patient; and their given and family names."""
    values: set[str] = set()
    names: set[str] = set()
    queries = [
        "select mrn, email, phone, date_of_birth from registry_patient",
        "select start_date from registry_treatmentepisode",
        "select target, opens, closes, substr(completed_at, 1, 10) from followup_followuptimepoint",
        "select onset, resolved_on from registry_adverseevent",
        "select occurred_on from registry_clinicalevent",
    ]
    with _registry(env) as db:
        for query in queries:
            for row in db.execute(query):
                values |= {str(v) for v in row if v not in (None, "")}
        for given, family in db.execute("select given_name, family_name from registry_patient"):
            names |= {given, family}
    return values, names


def _cells(folder: Path) -> Iterator[str]:
    """Every cell of every table file in ``folder`` as text (CSV read as text, no NA magic)."""
    for path in sorted(folder.iterdir()):
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path).astype(str)
        else:
            continue
        yield from frame.columns
        yield from frame.to_numpy().ravel().tolist()


def _assert_no_identifier(folder: Path, env: dict[str, str]) -> None:
    """Scan every cell and the README/manifest text for identifiers and full dates."""
    values, names = _identifiers(env)
    assert len(values) > 500 and len(names) > 50  # the scan has something to find
    cells = set(_cells(folder))
    assert not cells & (values | names)
    assert not [c for c in cells if ISO_DATE.search(c)]
    for doc in ("README.md", "manifest.json"):
        text = (folder / doc).read_text(encoding="utf-8")
        assert not ISO_DATE.search(text), doc
        assert not [v for v in values if v in text], doc
        assert not [n for n in names if re.search(rf"\b{re.escape(n)}\b", text)], doc


@pytest.fixture(scope="module")
def csv_export(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CSV research export of the registry at the cohort's cut-off."""
    out = tmp_path_factory.mktemp("research") / "csv"
    done = run_cli("export", "research", "--out", str(out), "--as-of", "2026-11-25", env=db_env)
    assert done.returncode == 0, done.stderr
    exported = re.search(r"(\d+) patients", done.stderr)
    assert "de-identified" in done.stderr and exported is not None
    # Minimum cell size: arms of fewer than 11 of the 60 patients are not exported.
    assert 11 <= int(exported.group(1)) < 60
    return out


def test_export_research_writes_tables_manifest_and_readme(csv_export: Path) -> None:
    assert sorted(p.name for p in csv_export.iterdir()) == [
        "README.md", "codebook.csv", "events.csv", "manifest.json", "patients.csv",
        "timepoints.csv",
    ]  # fmt: skip
    manifest: dict[str, Any] = json.loads((csv_export / "manifest.json").read_text())
    assert manifest["ruleset_version"] == ruleset().version
    assert manifest["data_cutoff_year"] == 2026
    for name in ("patients", "timepoints", "events"):
        frame = pd.read_csv(csv_export / f"{name}.csv")
        assert manifest["tables"][name]["rows"] == len(frame)
        assert manifest["tables"][name]["columns"] == list(frame.columns)
        assert set(frame.columns) <= set(ruleset().columns[name])
    patients = pd.read_csv(csv_export / "patients.csv")
    n = len(patients)
    assert sorted(patients["patient_id"]) == list(range(1, n + 1))
    assert patients["arm"].value_counts().min() >= 11  # minimum cell size
    withheld = manifest["disclosure"]["withheld_arms"]
    assert withheld and not set(withheld) & set(patients["arm"])
    assert manifest["disclosure"]["min_cell"] == 11
    assert "followup_days" not in patients.columns and "treatment_year" in patients.columns
    month_12 = next(r for r in manifest["follow_up_completeness"] if r["timepoint"] == "month_12")
    assert month_12["n_expected"] <= n
    assert month_12["n_completed"] == "fewer than 11 (suppressed)" or (
        11 <= month_12["n_completed"] <= month_12["n_expected"]
    )
    assert [i["id"] for i in manifest["safe_harbor"]] == list("ABCDEFGHIJKLMNOPQR")
    readme = (csv_export / "README.md").read_text()
    assert "Safe Harbor" in readme and "90 or older" in readme and "month_12" in readme
    assert "Minimum cell size 11" in readme and withheld[0] in readme


def test_export_research_files_hold_no_identifier(csv_export: Path, db_env: dict[str, str]) -> None:
    """HIPAA-164.514(b)(2)(i): every cell of every file, and the README and manifest."""
    _assert_no_identifier(csv_export, db_env)


def test_export_research_is_audited(csv_export: Path, db_env: dict[str, str]) -> None:
    with _registry(db_env) as db:
        rows = db.execute(
            "select action, object_type, new_values from registry_auditevent "
            "where actor_username = 'system:export-research'"
        ).fetchall()
    assert len(rows) >= 1
    action, object_type, new_values = rows[-1]
    assert (action, object_type) == ("read", "outcomes_report")
    values = json.loads(new_values)
    assert values["deidentified"] is True and values["n_patients"] == 60


def test_parquet_export_is_a_report_input(db_env: dict[str, str], tmp_path: Path) -> None:
    """The Parquet release reads back into `vertebra report --from` (survival censored at the
    last contact, since followup_days is not released) and the report shows no date."""
    out = tmp_path / "pq"
    done = run_cli("export", "research", "--out", str(out), "--format", "parquet",
                   "--as-of", "2026-11-25", env=db_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "patients.parquet").is_file() and not (out / "patients.csv").exists()
    _assert_no_identifier(out, db_env)
    report_file = tmp_path / "r.json"
    rep = run_cli("report", "--from", str(out), "--format", "json", "--out", str(report_file),
                  "--as-of", "2026-11-25", env=db_env)  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    text = report_file.read_text()
    report = json.loads(text)
    released = len(pd.read_parquet(out / "patients.parquet"))
    assert report["n_patients"] == released < 60 and report["as_of"] is None
    assert report["survival"]["censoring"] == "last_contact"
    assert not ISO_DATE.search(text)
