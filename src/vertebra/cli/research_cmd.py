"""``vertebra export research``: the de-identified research export (HIPAA Safe Harbor).

Writes ``patients``, ``timepoints`` and ``events`` (CSV or Parquet) as de-identified by
:mod:`vertebra.core.deidentify` and prepared for release (:func:`~vertebra.core.deidentify.release`),
plus ``manifest.json`` and ``README.md``: what was removed and why, row counts, follow-up
completeness and the rule-set version. No file holds a calendar date. The read is audited as
``system:export-research`` (de-identified). The target directory must be new or empty, so that
no identified file can end up beside the release. Bad input ends with one line on stderr and
exit code 2.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer

from vertebra.cli.errors import CliError
from vertebra.core.safeinput import neutralise_frame

FORMATS = ("csv", "parquet")
TABLES = ("patients", "timepoints", "events")


def _cutoff(as_of: str | None) -> date:
    """The data cut-off: ``--as-of`` as a date, default today."""
    if as_of is None:
        return date.today()
    try:
        return date.fromisoformat(as_of)
    except ValueError as exc:
        raise CliError(f"--as-of: {as_of!r} is not a date (YYYY-MM-DD)") from exc


def _check_out(out: Path) -> None:
    """Refuse an --out that is a file or a directory with anything in it."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise CliError(
            f"--out {out}: not empty; a research export goes into a new or empty directory"
        )


def run_export(*, out: Path, fmt: str, as_of: str | None) -> None:
    """Read the registry de-identified at the cut-off, release it and write it to ``out``."""
    if fmt not in FORMATS:
        raise CliError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    cutoff = _cutoff(as_of)
    _check_out(out)
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from vertebra.core.analytics import CohortFilter
    from vertebra.core.deidentify import release, release_manifest, release_readme
    from vertebra.outcomes.selectors import system_tables

    try:
        tables = system_tables(
            CohortFilter(), purpose="export-research", deidentified=True, as_of=cutoff
        )
    except Exception as exc:  # e.g. an unmigrated database: one line, not a traceback
        raise CliError(f"cannot read the registry: {exc}".splitlines()[0]) from exc
    if len(tables.patients) == 0:
        raise CliError("the registry has no treated patients to export")
    released = release(tables)
    if released.withheld is not None and released.withheld.cohort:
        raise CliError(
            "fewer than 11 treated patients: nothing is exported (minimum cell size, "
            "CMS cell size suppression policy)"
        )
    manifest = release_manifest(released, cutoff_year=cutoff.year, table_format=fmt)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            frame = getattr(released.tables, name)
            if fmt == "csv":
                # Never a live spreadsheet formula (cells starting with = + - @).
                neutralise_frame(frame).to_csv(out / f"{name}.csv", index=False)
            else:
                frame.to_parquet(out / f"{name}.parquet", index=False)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
        (out / "README.md").write_text(release_readme(manifest), "utf-8")
    except OSError as exc:
        raise CliError(f"--out {out}: {exc}") from exc
    rows = manifest["tables"]
    typer.echo(
        f"wrote de-identified research export ({fmt}) to {out}: "
        f"{rows['patients']['rows']} patients, {rows['timepoints']['rows']} time points, "
        f"{rows['events']['rows']} events (rule set {manifest['ruleset_version']})",
        err=True,
    )
