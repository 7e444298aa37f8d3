"""``vertebra export research``: the de-identified research export (HIPAA Safe Harbor).

Writes ``patients``, ``timepoints`` (scores and item-level answers) and ``events`` as
de-identified by :mod:`vertebra.core.deidentify` and prepared for release
(:func:`~vertebra.core.deidentify.release`), in the research codebook's written form
(:mod:`vertebra.core.codebook`: booleans 0/1, missing ``NA``), plus ``codebook.csv``,
``manifest.json`` and ``README.md``: what was removed and why, row counts, follow-up
completeness and the rule-set and codebook versions. ``--format`` chooses the files: ``csv``
or ``parquet`` (the three tables), ``redcap`` (REDCap data dictionary, events, arms,
instrument-event mapping, repeating instruments and longitudinal records,
:mod:`vertebra.core.redcap`), ``omop`` (OMOP CDM v5.4 tables, :mod:`vertebra.core.omop`). No file holds a calendar date. The read is audited as
``system:export-research`` (de-identified). The target directory must be new or empty, so that
no identified file can end up beside the release. Bad input ends with one line on stderr and
exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd
import typer

from vertebra.cli.errors import CliError
from vertebra.core.safeinput import neutralise_frame

FORMATS = ("csv", "parquet", "redcap", "omop")
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
    from vertebra.core.codebook import codebook, for_csv
    from vertebra.core.codebook import rows as codebook_rows
    from vertebra.core.deidentify import release, release_manifest, release_readme
    from vertebra.outcomes.selectors import system_tables

    try:
        with _progress("reading the registry (de-identified)"):
            tables = system_tables(
                CohortFilter(),
                purpose="export-research",
                deidentified=True,
                as_of=cutoff,
                with_items=True,
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
    frames = {name: for_csv(getattr(released.tables, name), name) for name in TABLES}
    for name in TABLES:
        manifest["tables"][name]["columns"] = [str(c) for c in frames[name].columns]
        if fmt in ("redcap", "omop"):
            manifest["tables"][name]["file"] = f"({fmt} files, see files)"
    manifest["codebook_version"] = codebook().version
    manifest["missing_code"] = codebook().missing_code
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = _WRITERS[fmt](frames, out, cutoff.year)
        _write_csv(pd.DataFrame(codebook_rows()), out / "codebook.csv")
        manifest["files"] = sorted([*written, "codebook.csv", "manifest.json", "README.md"])
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


@contextmanager
def _progress(what: str) -> Iterator[None]:
    """A rich spinner on stderr while ``what`` runs (nothing left behind when it ends)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        bar.add_task(what, total=None)
        yield


def _write_csv(frame: pd.DataFrame, path: Path, *, na: str = "NA") -> None:
    """One CSV file, UTF-8, missing as ``na``; never a live spreadsheet formula."""
    neutralise_frame(frame).to_csv(path, index=False, na_rep=na)


def _write_tables_csv(frames: dict[str, pd.DataFrame], out: Path, _year: int) -> list[str]:
    """patients/timepoints/events.csv in codebook form (missing NA, booleans 0/1)."""
    for name, frame in frames.items():
        _write_csv(frame, out / f"{name}.csv")
    return [f"{name}.csv" for name in frames]


def _write_tables_parquet(frames: dict[str, pd.DataFrame], out: Path, _year: int) -> list[str]:
    """patients/timepoints/events.parquet in codebook form (typed, nulls for missing)."""
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    return [f"{name}.parquet" for name in frames]


def _write_redcap(frames: dict[str, pd.DataFrame], out: Path, _year: int) -> list[str]:
    """The REDCap files; refuses (CliError) if REDCap's import rules would reject them."""
    from vertebra.core import redcap

    dictionary = redcap.dictionary()
    records = redcap.records(frames)
    mapping = redcap.instrument_event_mapping()
    repeating = redcap.repeating_instruments()
    checked = redcap.check_dictionary(dictionary)
    checked.problems += redcap.check_records(records, dictionary, mapping, repeating).problems
    if checked.problems:
        raise CliError(f"REDCap rules: {checked.problems[0]} ({len(checked.problems)} problems)")
    files = {
        "redcap_data_dictionary.csv": dictionary,
        "redcap_records.csv": records,
        "redcap_events.csv": redcap.events(),
        "redcap_arms.csv": redcap.arms(),
        "redcap_instrument_event_mapping.csv": mapping,
        "redcap_repeating_instruments.csv": repeating,
    }
    for name, rows in files.items():
        frame = pd.DataFrame(rows, dtype=str)
        if name == "redcap_records.csv":
            # Checked above: every value is a validated code or number, and a negative day
            # must stay a number (neutralising would write '-8, which REDCap refuses).
            frame.to_csv(out / name, index=False, na_rep="")
        else:
            _write_csv(frame, out / name, na="")
    return list(files)


def _write_omop(frames: dict[str, pd.DataFrame], out: Path, year: int) -> list[str]:
    """The OMOP CDM v5.4 tables (tab-free CSV, one file per table, OHDSI column names)."""
    from vertebra.core import omop

    tables = omop.build(frames, cutoff_year=year)
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False, na_rep="")
    return [f"{name}.csv" for name in tables]


_WRITERS = {
    "csv": _write_tables_csv,
    "parquet": _write_tables_parquet,
    "redcap": _write_redcap,
    "omop": _write_omop,
}
