"""``vertebra synth``: write a synthetic cohort as analysis-ready Parquet and/or CSV files.

Bad input (patients < 1, negative seed, malformed date, unwritable directory) ends with one
line on stderr and exit code 2 via CliError; the data itself comes from vertebra.core.synth.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import typer

from vertebra.cli.errors import CliError

SYNTH_HELP = (
    "Generate a seeded synthetic cohort (clinics, patients, one row per patient x time point, "
    "events) and write it to DIR as Parquet and/or CSV with metadata.json. The same seed, "
    "patients and --today always give the same files. All people are synthetic."
)
_FORMATS = {"parquet": ("parquet",), "csv": ("csv",), "both": ("parquet", "csv")}


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to the root CLI app."""
    app.command(name="synth", help=SYNTH_HELP)(synth)


def synth(
    patients: int = typer.Option(..., "--patients", "-n", help="Number of patients (>= 1)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed (>= 0)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (created if missing)."),
    today: str = typer.Option(
        "", "--today", help="Reference date YYYY-MM-DD for due/overdue follow-ups (default: today)."
    ),
    fmt: str = typer.Option("both", "--format", "-f", help="parquet, csv or both."),
    clinics: int = typer.Option(0, "--clinics", help="Number of clinics (0 = automatic)."),
    no_stories: bool = typer.Option(
        False, "--no-stories", help="Leave out the three named patients."
    ),
    deidentified: bool = typer.Option(
        False, "--deidentified", help="Leave out the synthetic names and e-mail addresses."
    ),
) -> None:
    """Write a synthetic cohort (see SYNTH_HELP)."""
    formats = _check(patients, seed, fmt, clinics)
    ref = _parse_today(today)
    _check_writable(out)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vertebra.core import synth as core

    chunks = core.iter_cohort(
        patients,
        seed,
        today=ref,
        n_clinics=clinics or None,
        include_stories=not no_stories,
    )
    columns = (
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patients"),
        TimeElapsedColumn(),
    )
    # The bar goes to stderr so stdout carries only the summary line.
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("synth", total=patients)
        try:
            written = core.write_cohort(
                chunks,
                out,
                formats,
                identified=not deidentified,
                on_chunk=lambda k: progress.advance(task, k),
            )
        except OSError as exc:
            raise CliError(f"synth: cannot write to {out}: {exc.strerror or exc}") from None
    files = sorted(p.name for paths in written.values() for p in paths)
    typer.echo(f"wrote {len(files)} files to {out}: {', '.join(files)}")


def _check(patients: int, seed: int, fmt: str, clinics: int) -> tuple[str, ...]:
    """Validate the numeric options and the format; return the formats to write."""
    if patients < 1:
        raise CliError(f"synth: --patients must be at least 1, got {patients}")
    if seed < 0:
        raise CliError(f"synth: --seed must be 0 or more, got {seed}")
    if clinics < 0:
        raise CliError(f"synth: --clinics must be 0 (automatic) or more, got {clinics}")
    if fmt not in _FORMATS:
        raise CliError(f"synth: --format must be parquet, csv or both, got {fmt!r}")
    return _FORMATS[fmt]


def _parse_today(text: str) -> date:
    """--today as a date; the local date when empty (the only clock read, in the shell)."""
    if not text:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"synth: --today must be a date YYYY-MM-DD, got {text!r}") from None


def _check_writable(out: Path) -> None:
    """Fail early, in one line, if `out` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"synth: cannot create {out}: {exc.strerror or exc}") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"synth: {out} is not a writable directory")
