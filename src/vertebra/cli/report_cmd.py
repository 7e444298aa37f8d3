"""``vertebra report``: the clinic outcome report as JSON or self-contained HTML.

Reads the tables written by ``vertebra synth`` / ``vertebra export csv`` (patients,
timepoints, events as .parquet or .csv) from ``--from DIR``. Bad input ends with one line on
stderr and exit code 2 (CliError).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer

from vertebra.cli.errors import CliError

FORMATS = ("json", "html")


def _parse_date(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CliError(f"--as-of: {value!r} is not a date (YYYY-MM-DD)") from exc


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the root CLI app."""

    @app.command()
    def report(
        from_dir: Path = typer.Option(
            ..., "--from", help="Directory with patients/timepoints/events .parquet or .csv."
        ),
        fmt: str = typer.Option("json", "--format", help="json or html (pdf comes later)."),
        out: Path = typer.Option(..., "--out", help="File to write."),
        arm: list[str] = typer.Option([], "--arm", help="Keep only this arm (repeatable)."),
        condition: list[str] = typer.Option([], "--condition", help="Condition (repeatable)."),
        clinic: list[str] = typer.Option([], "--clinic", help="Clinic id (repeatable)."),
        cell_source: list[str] = typer.Option([], "--cell-source", help="Cell source."),
        adjunct: list[str] = typer.Option([], "--adjunct", help="Adjunct (repeatable)."),
        as_of: str | None = typer.Option(
            None, "--as-of", help="Follow-up due by this date (YYYY-MM-DD); default today."
        ),
    ) -> None:
        """Write the outcome report (denominators, completeness, both responder figures)."""
        if fmt not in FORMATS:
            raise CliError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        cutoff = _parse_date(as_of)
        from vertebra.core.analytics import CohortFilter, SchemaError, build_report, read_tables

        try:
            tables = read_tables(from_dir)
        except (SchemaError, OSError) as exc:
            raise CliError(f"--from {from_dir}: {exc}") from exc
        except Exception as exc:  # unreadable Parquet/CSV: still one line, not a traceback
            raise CliError(f"--from {from_dir}: cannot read tables ({exc})") from exc
        flt = CohortFilter.build(
            clinics=clinic,
            conditions=condition,
            arms=arm,
            cell_sources=cell_source,
            adjuncts=adjunct,
        )
        try:
            rep = build_report(tables, flt, cutoff)
        except (SchemaError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        if rep.n_patients == 0:
            raise CliError("no patients match the filter")
        if fmt == "json":
            text = json.dumps(rep.to_dict(), indent=1, allow_nan=False)
        else:
            from vertebra.core.analytics.html import render_html

            text = render_html(rep)
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--out {out}: {exc}") from exc
        typer.echo(f"wrote {out} ({rep.n_patients} patients, {len(rep.arms)} arms)", err=True)
