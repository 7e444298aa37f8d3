"""Hostile files for the CLI, as real subprocesses: one line on stderr, exit 2, never a
traceback; CSV exports never hold a live spreadsheet formula. On SQLite (a migrated temporary
file) and PostgreSQL (the test database, committed by a transactional test).

Requirement ids: issue 14 "hostile input"; security-reliability.md §6 T16 (CSV cells starting
with = + - @ neutralised), T18 (no traceback); OWASP CSV Injection.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, run_cli
from tests.migrated import sqlite_database
from vertebra.core.safeinput import FORMULA_TRIGGERS, neutralise_frame

DEEP = b'{"age": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
NOT_UTF8 = b'{"age": 40, "note": "\xff\xfe caf\xe9"}'
FORMULAS = ["+SUM(1+1)", '=HYPERLINK("http://x")', "@SUM(A1)", "-2+3", "\tTAB", "\rCR"]
#: Patients of the seeded cohort: with seed 5, two arms reach the research export's minimum
#: cell size (11 patients, data/disclosure.yaml), so it releases rows to check.
COHORT = 60

SEED = """
import datetime as dt, django
django.setup()
from django.contrib.auth.models import User
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry.models import Clinic, Membership, Patient
load_cohort(generate_cohort({cohort}, 5, today=dt.date(2026, 11, 25)),
            now=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC))
formulas = {formulas!r}
for patient, value in zip(Patient.objects.order_by("pk"), formulas):
    Patient.objects.filter(pk=patient.pk).update(mrn=value)
clinic = Clinic.objects.order_by("pk").first()
user = User.objects.create(username="importer")
Membership.objects.create(user=user, clinic=clinic, role="coordinator")
Membership.objects.create(user=user, clinic=clinic, role="clinician")  # import fhir needs one
print(clinic.pk)
"""


def _one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (DEEP, "nested deeper than 64 levels"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
        (NOT_UTF8, "not UTF-8 text (byte 22 is invalid)"),
        (b"\x00\x01\x02", "not valid JSON"),
    ],
    ids=["deep-100000", "deep-65", "latin-1", "binary"],
)
def test_screen_refuses_hostile_files_in_one_line(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "facts.json"
    path.write_bytes(content)
    _one_line_error(run_cli("screen", str(path)), fragment)
    stdin = subprocess.run(
        [sys.executable, "-m", "vertebra", "screen", "-"],
        input=content, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert stdin.returncode == 2 and b"Traceback" not in stdin.stderr
    assert fragment.encode() in stdin.stderr


def test_screen_refuses_an_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b'{"age": 40, "x": "' + b"a" * (1024 * 1024 + 10) + b'"}')
    _one_line_error(run_cli("screen", str(path)), "over 1048576 bytes")


def _check_database_commands(env: dict[str, str], clinic: int, tmp_path: Path) -> None:
    # import fhir: a deep line and a non-UTF-8 line are named by file and line.
    for name, line, fragment in [
        ("deep", DEEP, "Patient.ndjson line 1: JSON nested deeper than 64 levels"),
        ("latin1", NOT_UTF8, "Patient.ndjson line 1: the content is not UTF-8 text"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "Patient.ndjson").write_bytes(line + b'\n{"resourceType": "Patient"}\n')
        done = run_cli("import", "fhir", str(folder), "--clinic", str(clinic), "--as", "importer",
                       env=env)  # fmt: skip
        _one_line_error(done, fragment)
    # export csv: the formulas written into MRNs come out as text, never as formulas.
    out = tmp_path / "csv"
    done = run_cli("export", "csv", "--out", str(out), env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    with (out / "patients.csv").open(newline="", encoding="utf-8") as handle:
        mrns = [row["mrn"] for row in csv.DictReader(handle)]
    assert "'+SUM(1+1)" in mrns and '\'=HYPERLINK("http://x")' in mrns and "'-2+3" in mrns
    for path in out.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in frame.columns:
            text = [v for v in frame[column] if v and not _is_number(v)]
            assert not [v for v in text if v.startswith(FORMULA_TRIGGERS)], (path.name, column)
    # research export (de-identified): no text cell starts a formula either.
    research = tmp_path / "research"
    done = run_cli("export", "research", "--out", str(research), env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    with (research / "patients.csv").open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) >= 11  # released rows, not an empty table
    for path in research.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in frame.columns:
            text = [v for v in frame[column] if v and not _is_number(v)]
            assert not [v for v in text if v.startswith(FORMULA_TRIGGERS)], (path.name, column)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.sqlite
def test_database_commands_on_sqlite(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": sqlite_database(tmp_path / "registry.sqlite3"),
        "VERTEBRA_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    seeded = subprocess.run(
        [sys.executable, "-c", SEED.format(formulas=FORMULAS, cohort=COHORT)],
        env={**os.environ, **env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    _check_database_commands(env, int(seeded.stdout.strip().splitlines()[-1]), tmp_path)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_database_commands_on_postgresql(tmp_path: Path) -> None:
    """The data is committed to the test database, which the subprocesses then use."""
    import datetime as dt

    from django.contrib.auth.models import User
    from django.db import connection

    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    from vertebra.registry.models import Clinic, Membership, Patient

    load_cohort(
        generate_cohort(COHORT, 5, today=dt.date(2026, 11, 25)),
        now=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC),
    )
    for patient, value in zip(Patient.objects.order_by("pk"), FORMULAS, strict=False):
        Patient.objects.filter(pk=patient.pk).update(mrn=value)
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    user = User.objects.create(username="importer")
    Membership.objects.create(user=user, clinic=clinic, role="coordinator")
    Membership.objects.create(user=user, clinic=clinic, role="clinician")  # import fhir needs one
    s: dict[str, Any] = connection.settings_dict
    url = (
        f"postgres://{quote(str(s['USER']))}:{quote(str(s['PASSWORD']))}"
        f"@{s['HOST']}:{s['PORT']}/{s['NAME']}"
    )
    _check_database_commands(
        {"DATABASE_URL": url, "VERTEBRA_DATA_DIR": str(tmp_path)}, clinic.pk, tmp_path
    )


def test_neutralise_frame_keeps_numbers_and_quotes_formula_text() -> None:
    frame = pd.DataFrame({"text": [*FORMULAS, "plain", None], "n": range(-4, 4)})
    out = neutralise_frame(frame)
    assert list(out["text"][:6]) == ["'" + v for v in FORMULAS]
    assert out["text"][6] == "plain" and out["text"][7] is None
    assert list(out["n"]) == list(range(-4, 4)) and out["n"].dtype == frame["n"].dtype
