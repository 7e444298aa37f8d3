"""``vertebra report``: the clinic outcome report as JSON, self-contained HTML or PDF.

Reads the tables written by ``vertebra synth`` / ``vertebra export csv`` (patients,
timepoints, events as .parquet or .csv) from ``--from DIR``; without ``--from`` it reads the
registry database (all clinics, identified, audited as ``system:report``). PDF is WeasyPrint
over the same HTML. Bad input ends with one line on stderr and exit code 2 (CliError).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import typer

from vertebra.cli.errors import CliError

FORMATS = ("json", "html", "pdf")
ENGINES = ("auto", "memory", "duckdb")
#: `--engine auto` reads Parquet out of core (DuckDB) above this many patients: the in-memory
#: engine needs ~1.5 GB per 10^6 patients (BENCHMARKS.md, "Analytics near the floor").
AUTO_DUCKDB_PATIENTS = 2_000_000


def _engine(engine: str, from_dir: Path | None) -> str:
    """The engine to use: "memory" or "duckdb" (ADR 0024)."""
    if engine not in ENGINES:
        raise CliError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    parquet = from_dir is not None and (from_dir / "patients.parquet").exists()
    if engine == "duckdb" and not parquet:
        raise CliError(
            "--engine duckdb reads Parquet tables: give --from DIR with patients.parquet"
        )
    if engine != "auto":
        return engine
    if not parquet:
        return "memory"
    assert from_dir is not None
    import pyarrow.parquet as papq  # type: ignore[import-untyped]

    rows = papq.ParquetFile(from_dir / "patients.parquet").metadata.num_rows
    return "duckdb" if rows > AUTO_DUCKDB_PATIENTS else "memory"


def _parse_date(value: str | None, option: str = "--as-of") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CliError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from exc


def _tables_from_dir(from_dir: Path) -> Any:
    from vertebra.core.analytics import SchemaError, read_tables

    try:
        return read_tables(from_dir)
    except (SchemaError, OSError) as exc:
        raise CliError(f"--from {from_dir}: {exc}") from exc
    except Exception as exc:  # unreadable Parquet/CSV: still one line, not a traceback
        raise CliError(f"--from {from_dir}: cannot read tables ({exc})") from exc


def _tables_from_database(flt: Any) -> Any:
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from vertebra.outcomes.selectors import system_tables

    try:
        return system_tables(flt, purpose="report")
    except Exception as exc:  # e.g. an unmigrated database: one line, not a traceback
        raise CliError(f"cannot read the registry: {exc}".splitlines()[0]) from exc


def _render(rep: Any, fmt: str) -> bytes:
    """The report in ``fmt`` as bytes."""
    if fmt == "json":
        return json.dumps(rep.to_dict(), indent=1, allow_nan=False).encode("utf-8")
    from vertebra.outcomes.rendering import report_html, report_pdf

    if fmt == "html":
        return report_html(rep).encode("utf-8")
    try:
        return report_pdf(rep)
    except ImportError as exc:  # pragma: no cover - weasyprint is a dependency
        raise CliError("--format pdf needs WeasyPrint (pip install weasyprint)") from exc


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the root CLI app."""

    @app.command()
    def report(
        from_dir: Path | None = typer.Option(
            None,
            "--from",
            help="Directory with patients/timepoints/events .parquet or .csv "
            "(default: the registry database).",
        ),
        fmt: str = typer.Option("json", "--format", help="json, html or pdf."),
        out: Path = typer.Option(..., "--out", help="File to write."),
        arm: list[str] = typer.Option([], "--arm", help="Keep only this arm (repeatable)."),
        condition: list[str] = typer.Option([], "--condition", help="Condition (repeatable)."),
        clinic: list[str] = typer.Option([], "--clinic", help="Clinic id (repeatable)."),
        cell_source: list[str] = typer.Option([], "--cell-source", help="Cell source."),
        adjunct: list[str] = typer.Option([], "--adjunct", help="Adjunct (repeatable)."),
        dose_min: float | None = typer.Option(None, "--dose-min", help="Lowest dose (incl.)."),
        dose_max: float | None = typer.Option(None, "--dose-max", help="Highest dose (incl.)."),
        treated_from: str | None = typer.Option(
            None, "--treated-from", help="Treated on or after (YYYY-MM-DD)."
        ),
        treated_to: str | None = typer.Option(
            None, "--treated-to", help="Treated on or before (YYYY-MM-DD)."
        ),
        as_of: str | None = typer.Option(
            None, "--as-of", help="Follow-up due by this date (YYYY-MM-DD); default today."
        ),
        engine: str = typer.Option(
            "auto",
            "--engine",
            help="memory, duckdb (out of core, Parquet only) or auto (duckdb above "
            f"{AUTO_DUCKDB_PATIENTS:,} patients in --from Parquet).",
        ),
    ) -> None:
        """Write the outcome report (denominators, completeness, both responder figures)."""
        if fmt not in FORMATS:
            raise CliError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        cutoff = _parse_date(as_of) or date.today()
        start = _parse_date(treated_from, "--treated-from")
        end = _parse_date(treated_to, "--treated-to")
        if start and end and end < start:
            raise CliError("--treated-to is before --treated-from")
        if dose_min is not None and dose_max is not None and dose_max < dose_min:
            raise CliError("--dose-max is below --dose-min")
        from vertebra.core.analytics import CohortFilter, SchemaError, build_report

        flt = CohortFilter.build(
            clinics=clinic,
            conditions=condition,
            arms=arm,
            cell_sources=cell_source,
            adjuncts=adjunct,
            dose_min=dose_min,
            dose_max=dose_max,
            treated_from=start,
            treated_to=end,
        )
        if _engine(engine, from_dir) == "duckdb":
            assert from_dir is not None
            from vertebra.analysis.duckdb_report import build_report_duckdb

            try:
                rep = build_report_duckdb(from_dir, flt, cutoff, processes=os.cpu_count() or 1)
            except (SchemaError, ValueError, OSError) as exc:
                raise CliError(f"--from {from_dir}: {exc}") from exc
        else:
            tables = _tables_from_dir(from_dir) if from_dir else _tables_from_database(flt)
            if len(tables.patients) == 0:
                raise CliError("no patients match the filter")
            try:
                rep = build_report(tables, flt, cutoff, processes=os.cpu_count() or 1)
            except (SchemaError, ValueError) as exc:
                raise CliError(str(exc)) from exc
        if rep.n_patients == 0:
            raise CliError("no patients match the filter")
        data = _render(rep, fmt)
        try:
            out.write_bytes(data)
        except OSError as exc:
            raise CliError(f"--out {out}: {exc}") from exc
        typer.echo(f"wrote {out} ({rep.n_patients} patients, {len(rep.arms)} arms)", err=True)
