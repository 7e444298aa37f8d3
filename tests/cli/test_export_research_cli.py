"""``vertebra export research`` usage errors as a real subprocess: one line on stderr, exit 2,
and nothing written (the registry itself is exercised in tests/outcomes/test_research_export)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_help_names_the_rules() -> None:
    done = run_cli("export", "research", "--help")
    assert done.returncode == 0
    assert "DE-IDENTIFIED" in done.stdout and "--format" in done.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--format", "xlsx"], "--format"),
        (["--as-of", "2026-02-30"], "--as-of"),
    ],
)
def test_bad_options_are_one_line_exit_2(tmp_path: Path, extra: list[str], needle: str) -> None:
    out = tmp_path / "x"
    done = run_cli("export", "research", "--out", str(out), *extra)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    """A release never lands beside other files (an identified export, say)."""
    (tmp_path / "patients.csv").write_text("patient_id,mrn\n1,MRN-1\n")
    done = run_cli("export", "research", "--out", str(tmp_path))
    assert done.returncode == 2 and "not empty" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    a_file = tmp_path / "patients.csv"
    done = run_cli("export", "research", "--out", str(a_file))
    assert done.returncode == 2 and "not a directory" in done.stderr


def test_unreadable_registry_is_one_line_exit_2(tmp_path: Path) -> None:
    """An unmigrated database: one line naming the problem, not a traceback."""
    sqlite3.connect(tmp_path / "empty.sqlite3").close()  # exists, but holds no registry
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        "VERTEBRA_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    done = run_cli("export", "research", "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "is not ready" in err and "vertebra manage migrate" in err
    assert len(err.splitlines()) == 1


def test_help_names_every_format() -> None:
    done = run_cli("export", "research", "--help")
    assert done.returncode == 0
    assert all(f in done.stdout for f in ("parquet", "redcap", "omop"))


def test_codebook_command_writes_the_codebook(tmp_path: Path) -> None:
    """`vertebra export codebook`: the CSV is the codebook's rows, the Markdown its page."""
    import csv

    from vertebra.core.codebook import CSV_FIELDS, rows, to_markdown

    out = tmp_path / "codebook.csv"
    done = run_cli("export", "codebook", "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_FIELDS
        assert list(reader) == rows()
    page = tmp_path / "codebook.md"
    done = run_cli("export", "codebook", "--out", str(page), "--format", "markdown")
    assert done.returncode == 0 and page.read_text(encoding="utf-8") == to_markdown()
    bad = run_cli("export", "codebook", "--out", str(page), "--format", "xlsx")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
