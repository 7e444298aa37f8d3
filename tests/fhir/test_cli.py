"""``vertebra export fhir`` and ``vertebra import fhir`` as real subprocesses, on SQLite (a
migrated temporary file) and on PostgreSQL (the test database, committed by a transactional
test): counts per resource type against the database, every line parses, import of one
clinic's export into another clinic, a malformed line, and usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import REPO_ROOT, run_cli
from tests.fhir.conftest import NOW, TODAY
from tests.migrated import sqlite_database

LOAD = f"""
import datetime as dt, django
django.setup()
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
load_cohort(generate_cohort(40, 21, today=dt.date.fromisoformat({TODAY.isoformat()!r})),
            now=dt.datetime.fromisoformat({NOW.isoformat()!r}))
"""


def python(code_or_module: list[str], env: dict[str, str]) -> str:
    """Run Python in a subprocess from the repository root (``tests`` importable); stdout."""
    done = subprocess.run(
        [sys.executable, *code_or_module], env={**os.environ, **env}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected(env: dict[str, str], *clinics: int) -> dict[str, int]:
    """Resources per type the database says an export must hold (counted in a subprocess)."""
    out = python(["-m", "tests.fhir.expected", *map(str, clinics)], env)
    return {k: v for k, v in json.loads(out).items() if v}


def clinic_ids(env: dict[str, str]) -> list[int]:
    code = "import django; django.setup(); from vertebra.registry.models import Clinic; "
    code += "print(list(Clinic.objects.order_by('pk').values_list('pk', flat=True)))"
    return list(json.loads(python(["-c", code], env)))


def lines_of(out: Path) -> dict[str, int]:
    """Lines per NDJSON file; every line must parse as one resource of the file's type."""
    counts = {}
    for path in out.glob("*.ndjson"):
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert all(item["resourceType"] == path.stem for item in items), path.name
        counts[path.stem] = len(items)
    return counts


def refused_patients(table: str) -> int:
    """The refused column of the Patient row of the import's table."""
    row = next(line for line in table.splitlines() if line.strip("│ ").startswith("Patient "))
    return int(row.strip("│ ").split("│")[-1].strip().replace(",", ""))


def check_export_and_import(env: dict[str, str], tmp_path: Path) -> None:
    """The shared body of both database passes."""
    out = tmp_path / "all"
    done = run_cli("export", "fhir", "--out", str(out), env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "IDENTIFIED" in done.stderr and "for 40 patients" in done.stderr
    counts = lines_of(out)
    assert counts == expected(env)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {o["type"]: o["count"] for o in manifest["output"]} == counts

    first, second = clinic_ids(env)[:2]
    one = tmp_path / "one"
    done = run_cli(
        "export", "fhir", "--out", str(one), "--clinic", str(first), env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert lines_of(one) == expected(env, first)

    # The first clinic's patients, imported at the second clinic of the same registry: the
    # patients are new there (MRNs are per clinic), but product ids are registry-wide, so every
    # patient with a processed product is refused: exit 1, the table says why.
    before = expected(env, second)["Patient"]
    args = ["import", "fhir", str(one), "--clinic", str(second), "--as", f"clinician-c{second}"]
    done = run_cli(*args, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    moved = lines_of(one)["Patient"]
    refused = refused_patients(done.stdout)
    assert 0 < refused < moved
    assert f"patients: {moved - refused} imported, 0 already present, {refused} refused" in (
        done.stderr
    )
    assert "resources were refused (see the table)" in done.stderr.splitlines()[-1]
    assert "This product id cannot be used" in done.stdout
    assert expected(env, second)["Patient"] == before + moved - refused

    # Again with --allow-partial (and the careful path): exit 0; the imported patients are
    # already present.
    done = run_cli(*args, "--allow-partial", "--careful", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"patients: 0 imported, {moved - refused} already present, {refused} refused" in (
        done.stderr
    )
    assert expected(env, second)["Patient"] == before + moved - refused

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Patient.ndjson").write_text('{"resourceType": "Patient"}\n{oops\n')
    done = run_cli("import", "fhir", str(broken), "--clinic", str(second), "--as",
                   f"clinician-c{second}", env=env)  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("vertebra: error: Patient.ndjson line 2: not valid JSON"), line
    assert expected(env, second)["Patient"] == before + moved - refused  # nothing written

    missing = max(clinic_ids(env)) + 1
    done = run_cli(
        "export", "fhir", "--out", str(tmp_path / "x"), "--clinic", str(missing), env=env
    )
    assert done.returncode == 2 and f"no clinic with id {missing}" in done.stderr


@pytest.mark.sqlite
def test_cli_on_sqlite(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": sqlite_database(tmp_path / "registry.sqlite3"),
        "VERTEBRA_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    python(["-c", LOAD], env)
    check_export_and_import(env, tmp_path)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_cli_on_postgresql(tmp_path: Path) -> None:
    """The cohort is committed to the test database, which the subprocesses then use."""
    from django.db import connection

    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort

    load_cohort(generate_cohort(40, 21, today=TODAY), now=NOW)
    s: dict[str, Any] = connection.settings_dict
    url = (
        f"postgres://{quote(str(s['USER']))}:{quote(str(s['PASSWORD']))}"
        f"@{s['HOST']}:{s['PORT']}/{s['NAME']}"
    )
    env = {"DATABASE_URL": url, "VERTEBRA_DATA_DIR": str(tmp_path)}
    check_export_and_import(env, tmp_path)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["export", "fhir", "--out", "X", "--clinic", "north"],
            "--clinic: 'north' is not a clinic id",
        ),
        (["export", "fhir"], "--out"),
        (
            ["import", "fhir", "/nonexistent-folder", "--clinic", "1", "--as", "a"],
            "not a directory",
        ),
        (["import", "fhir", ".", "--clinic", "x", "--as", "a"], "--clinic: 'x' is not a clinic id"),
        (["import", "fhir", ".", "--as", "a"], "--clinic: name the receiving clinic"),
        (["import", "fhir", ".", "--clinic-map", "3", "--as", "a"], "is not SOURCE=CLINIC_ID"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr
