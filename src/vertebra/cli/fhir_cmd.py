"""``vertebra export fhir`` and ``vertebra import fhir``: FHIR R4 Bulk Data (NDJSON).

Both are operator commands on the clinic's own identified data. The export writes one
``<Type>.ndjson`` per resource type and ``manifest.json`` under ``--out``, with a progress bar
on stderr, audited as ``system:export-fhir``. The import reads every file an export writes and
writes it through the registry and follow-up services as a named clinician (see
:mod:`vertebra.interop.importer`), with a progress bar on stderr and a per-type table on stdout;
exit 1 when anything was refused (unless ``--allow-partial``). Bad input ends with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from vertebra.cli.errors import CliError

if TYPE_CHECKING:
    from vertebra.interop.importer import ImportReport


def _clinic_ids(clinics: list[str]) -> list[int]:
    """--clinic values as ids; a non-number is a usage error naming the value."""
    bad = [c for c in clinics if not c.isdigit()]
    if bad:
        raise CliError(f"--clinic: {bad[0]!r} is not a clinic id (a number)")
    return [int(c) for c in clinics]


def run_export(*, out: Path, clinics: list[str], validate: bool) -> None:
    """Run ``vertebra export fhir`` (see the module docstring)."""
    clinic_ids = _clinic_ids(clinics)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from django.utils import timezone
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vertebra.core.fhir import FhirValidationError
    from vertebra.interop.export import export_fhir

    request = "vertebra export fhir" + "".join(f" --clinic {c}" for c in clinic_ids)
    columns = (
        TextColumn("export fhir"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patients"),
        TimeElapsedColumn(),
    )
    # The bar goes to stderr so stdout stays free for scripts.
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("export", total=None)
        try:
            summary = export_fhir(
                out,
                clinic_ids=clinic_ids,
                now=timezone.now(),
                request=request,
                validate=validate,
                on_start=lambda n: progress.update(task, total=n),
                on_chunk=lambda n: progress.advance(task, n),
            )
        except LookupError as exc:
            raise CliError(f"--clinic: {exc.args[0]}") from None
        except FhirValidationError as exc:
            raise CliError(f"export stopped, invalid resource: {exc}".splitlines()[0]) from None
        except OSError as exc:
            raise CliError(f"--out {out}: {exc.strerror or exc}") from None
        except Exception as exc:  # e.g. an unmigrated database: one line, not a traceback
            raise CliError(f"cannot read the registry: {exc}".splitlines()[0]) from exc
    total = sum(summary.counts.values())
    parts = ", ".join(f"{n} {kind}" for kind, n in summary.counts.items())
    typer.echo(
        f"wrote {total} FHIR resources for {summary.n_patients} patients to {out} "
        f"({parts}) (IDENTIFIED data)",
        err=True,
    )


import_app = typer.Typer(
    name="import",
    help="Import registry data (fhir: a Vertebra FHIR R4 NDJSON export, every resource type).",
    no_args_is_help=True,
)


def _clinic_map(pairs: list[str]) -> dict[str, int]:
    """``--clinic-map SOURCE=ID`` values: SOURCE a source clinic id or an MRN system URL."""
    found = {}
    for pair in pairs:
        source, _, target = pair.rpartition("=")
        if not source or not target.isdigit():
            raise CliError(f"--clinic-map: {pair!r} is not SOURCE=CLINIC_ID")
        found[source] = int(target)
    return found


def _table(report: ImportReport) -> Any:
    """The per-type summary: read, imported, already present, refused; then one line per
    refusal reason with its count and an example resource id."""
    from rich.table import Table

    table = Table(title="vertebra import fhir", title_justify="left")
    for name in ("resource type", "read", "imported", "already present", "refused"):
        table.add_column(name, justify="left" if name == "resource type" else "right")
    for kind, tally in report.rows():
        table.add_row(kind, *(f"{n:,}" for n in (tally.read, tally.imported, tally.present,
                                                  tally.n_refused)))  # fmt: skip
    reasons = Table(title="refused, by reason", title_justify="left")
    for name in ("resource type", "count", "example", "reason"):
        reasons.add_column(name, justify="right" if name == "count" else "left")
    for kind, tally in report.rows():
        for reason, (n, example) in sorted(tally.refused.items(), key=lambda r: -r[1][0]):
            reasons.add_row(kind, f"{n:,}", example, reason)
    return table, (reasons if report.n_refused else None)


@import_app.command("fhir")
def import_fhir(
    folder: Path = typer.Argument(..., help="Folder holding <Type>.ndjson files."),
    clinic: str = typer.Option(
        None, "--clinic", help="Clinic id receiving the patients --clinic-map does not place."
    ),
    clinic_map: list[str] = typer.Option(
        [],
        "--clinic-map",
        help="SOURCE=CLINIC_ID: patients whose MRN system is SOURCE (a source "
        "clinic id, or the system URL) go to CLINIC_ID. Repeatable.",
    ),
    user: str = typer.Option(
        ...,
        "--as",
        help="Username of a clinician of every receiving clinic; every write is theirs.",
    ),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Exit 0 even when some resources were refused."
    ),
    no_validate: bool = typer.Option(
        False, "--no-validate", help="Skip FHIR R4 model validation of each line (faster)."
    ),
    careful: bool = typer.Option(
        False,
        "--careful",
        help="Each patient in its own transaction through the services (slow; the default "
        "bulk path writes the same rows and audit records, many patients a transaction).",
    ),
) -> None:
    """Import a Vertebra FHIR export without loss: every resource type, with the rows and
    audit records of the audited services (bulk by default; --careful: one transaction per
    patient through the services). Prints a table per resource type; exits 1 when
    anything was refused (unless --allow-partial), 2 for a malformed file or bad options."""
    clinic_id = _clinic_ids([clinic])[0] if clinic is not None else None
    mapping = _clinic_map(clinic_map)
    if clinic_id is None and not mapping:
        raise CliError("--clinic: name the receiving clinic (or --clinic-map)")
    if not folder.is_dir():
        raise CliError(f"{folder}: not a directory")
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from django.utils import timezone
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vertebra.interop.importer import ImportFormatError, ImportSetupError, import_fhir_folder

    columns = (
        TextColumn("import fhir"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patients"),
        TimeElapsedColumn(),
    )
    # The bar (stderr) starts once the files are read: a malformed file stays one line.
    progress = Progress(*columns, console=Console(stderr=True))
    task = progress.add_task("import", total=None)

    def started(n_patients: int) -> None:
        progress.update(task, total=n_patients)
        progress.start()

    try:
        report = import_fhir_folder(
            folder, clinic_id=clinic_id, clinic_map=mapping, username=user,
            today=timezone.localdate(), validate=not no_validate, careful=careful,
            on_start=started,
            on_patient=lambda: progress.advance(task),
        )  # fmt: skip
    except (ImportFormatError, ImportSetupError) as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.stop()
    console = Console(width=max(120, Console().width))
    for table in _table(report):
        if table is not None:
            console.print(table)
    typer.echo(
        f"patients: {report.patients_imported} imported, {report.patients_present} already "
        f"present, {report.patients_refused} refused, from {shlex.quote(str(folder))}",
        err=True,
    )
    if report.n_refused and not allow_partial:
        raise CliError(
            f"{report.n_refused} resources were refused (see the table); "
            "--allow-partial accepts a partial import",
            1,
        )


def register(app: typer.Typer) -> None:
    """Add the ``import`` command group to the root CLI app."""
    app.add_typer(import_app, name="import")
