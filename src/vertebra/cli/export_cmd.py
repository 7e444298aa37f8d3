"""``vertebra export csv``: the analysis-ready tables of the registry, identified, as CSV/Parquet.

An operator's command (it reads the whole database, as whoever runs it can anyway), for the
clinic's own use: the patients table carries the MRN. The read is audited as
``system:export-csv`` with the filter. Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vertebra.cli.errors import CliError
from vertebra.core.safeinput import neutralise_frame

FORMATS = ("csv", "parquet")

export_app = typer.Typer(
    name="export",
    help="Export registry data (csv: analysis-ready tables, identified; research: "
    "de-identified tables, HIPAA Safe Harbor; fhir: FHIR R4 Bulk Data NDJSON, identified).",
    no_args_is_help=True,
)


@export_app.command("csv")
def export_csv(
    out: Path = typer.Option(..., "--out", help="Directory to write (created if missing)."),
    clinic: list[str] = typer.Option([], "--clinic", help="Clinic id (repeatable); default all."),
    fmt: str = typer.Option("csv", "--format", help="csv (default) or parquet."),
) -> None:
    """Write patients, timepoints (one row per patient x time point) and events tables.

    IDENTIFIED data (MRN, registry ids, dates): for the clinic's own use only.
    """
    if fmt not in FORMATS:
        raise CliError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    bad = [c for c in clinic if not c.isdigit()]
    if bad:
        raise CliError(f"--clinic: {bad[0]!r} is not a clinic id (a number)")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from vertebra.core.analytics import CohortFilter
    from vertebra.outcomes.selectors import system_tables

    try:
        tables = system_tables(
            CohortFilter.build(clinics=clinic), purpose="export-csv", with_mrn=True
        )
    except Exception as exc:  # e.g. an unmigrated database: one line, not a traceback
        raise CliError(f"cannot read the registry: {exc}".splitlines()[0]) from exc
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("patients", "timepoints", "events"):
            frame = getattr(tables, name)
            if fmt == "csv":
                # Free text (names, notes) may start with = + - @: never a live formula.
                neutralise_frame(frame).to_csv(
                    out / f"{name}.csv", index=False, date_format="%Y-%m-%d"
                )
            else:
                frame.to_parquet(out / f"{name}.parquet", index=False)
    except OSError as exc:
        raise CliError(f"--out {out}: {exc}") from exc
    typer.echo(
        f"wrote {fmt} tables to {out}: {len(tables.patients)} patients, "
        f"{len(tables.timepoints)} time points, {len(tables.events)} events (IDENTIFIED data)",
        err=True,
    )


@export_app.command("fhir")
def export_fhir(
    out: Path = typer.Option(..., "--out", help="Directory to write (created if missing)."),
    clinic: list[str] = typer.Option([], "--clinic", help="Clinic id (repeatable); default all."),
    validate: bool = typer.Option(
        False, "--validate", help="Check every resource against the FHIR R4 models (slow)."
    ),
) -> None:
    """Write FHIR R4 Bulk Data NDJSON (one file per resource type) and manifest.json.

    IDENTIFIED data (names, MRN, dates of birth): for the clinic's own systems only. Audited.
    """
    from vertebra.cli.fhir_cmd import run_export

    run_export(out=out, clinics=clinic, validate=validate)


@export_app.command("research")
def export_research(
    out: Path = typer.Option(..., "--out", help="New or empty directory to write."),
    fmt: str = typer.Option(
        "csv",
        "--format",
        help="csv (default), parquet, redcap (data dictionary + longitudinal records) or omop "
        "(OMOP CDM v5.4 tables, dates shifted).",
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Data cut-off (YYYY-MM-DD); default today. Only its year is written."
    ),
) -> None:
    """Write DE-IDENTIFIED tables with codebook.csv, manifest.json and README.md.

    HIPAA Safe Harbor: no names, MRN, contact details or calendar dates (treatment year and
    days after treatment), ages capped at 90, random pseudonyms. Booleans 0/1, missing NA,
    item-level answers beside the scores (docs/research-exports.md). Audited.
    """
    from vertebra.cli.research_cmd import run_export

    run_export(out=out, fmt=fmt, as_of=as_of)


@export_app.command("codebook")
def export_codebook(
    out: Path = typer.Option(..., "--out", help="File to write."),
    fmt: str = typer.Option("csv", "--format", help="csv (default) or markdown."),
) -> None:
    """Write the research export's codebook (every column: label, type, units, values,
    missing code, source). No registry access."""
    if fmt not in ("csv", "markdown"):
        raise CliError(f"--format: {fmt!r} is not one of csv, markdown")
    import csv

    from vertebra.core.codebook import CSV_FIELDS, rows, to_markdown

    try:
        if fmt == "markdown":
            out.write_text(to_markdown(), "utf-8")
        else:
            with out.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
                writer.writeheader()
                writer.writerows(rows())
    except OSError as exc:
        raise CliError(f"--out {out}: {exc}") from exc
    typer.echo(f"wrote the research codebook ({fmt}) to {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group to the root CLI app."""
    app.add_typer(export_app, name="export")
