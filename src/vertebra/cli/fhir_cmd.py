"""``vertebra export fhir`` and ``vertebra import fhir``: FHIR R4 Bulk Data (NDJSON).

Both are operator commands on the clinic's own identified data. The export writes one
``<Type>.ndjson`` per resource type and ``manifest.json`` under ``--out``, with a progress bar
on stderr, audited as ``system:export-fhir``. The import reads ``Patient``, ``Condition``,
``Consent``, ``Procedure`` (treatment episodes) and ``QuestionnaireResponse`` files and writes
them through the registry and follow-up services as a named staff user (see
:mod:`vertebra.interop.importer`). Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from vertebra.cli.errors import CliError


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
    help="Import registry data (fhir: Patient, Condition, Consent, Procedure, "
    "QuestionnaireResponse NDJSON).",
    no_args_is_help=True,
)


@import_app.command("fhir")
def import_fhir(
    folder: Path = typer.Argument(..., help="Folder holding <Type>.ndjson files."),
    clinic: str = typer.Option(..., "--clinic", help="Clinic id the patients are registered at."),
    user: str = typer.Option(
        ..., "--as", help="Username of a clinician or coordinator there; every write is theirs."
    ),
) -> None:
    """Import patients with their diagnoses, consents, treatment episodes and questionnaire
    responses, each patient in one transaction through the audited services."""
    clinic_id = _clinic_ids([clinic])[0]
    if not folder.is_dir():
        raise CliError(f"{folder}: not a directory")
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from django.utils import timezone

    from vertebra.interop.importer import ImportFormatError, ImportSetupError, import_fhir_folder

    try:
        report = import_fhir_folder(
            folder, clinic_id=clinic_id, username=user, today=timezone.localdate()
        )
    except (ImportFormatError, ImportSetupError) as exc:
        raise CliError(str(exc)) from None
    for problem in report.failed:
        typer.echo(f"not imported: {problem}", err=True)
    typer.echo(
        f"imported {report.imported} of {report.imported + len(report.failed)} patients from "
        f"{shlex.quote(str(folder))} at clinic {clinic_id}: " + report.describe_counts(),
        err=True,
    )
    if report.failed:
        raise CliError(f"{len(report.failed)} patients were not imported (see above)", 1)


def register(app: typer.Typer) -> None:
    """Add the ``import`` command group to the root CLI app."""
    app.add_typer(import_app, name="import")
