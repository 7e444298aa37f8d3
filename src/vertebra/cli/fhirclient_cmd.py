"""``vertebra fhir-client``: register, list and revoke SMART Backend Services system clients.

An operator's command (whoever runs it can write the database anyway); each registration and
revocation is audited as ``system:fhir-client-admin``. A client is a clinic's system
(``--clinic``: identified data of that clinic) or, without ``--clinic``, a research system
(registry-wide, de-identified only: it cannot run the identified FHIR export). Bad input ends
with one line on stderr and exit code 2. docs/fhir-bulk.md shows the whole flow.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vertebra.cli.errors import CliError

client_app = typer.Typer(
    name="fhir-client",
    help="System clients of the FHIR Bulk Data API (SMART Backend Services).",
    no_args_is_help=True,
)


@client_app.command("add")
def add(
    client_id: str = typer.Option(..., "--id", help="The client_id (the JWT's iss and sub)."),
    name: str = typer.Option(..., "--name", help="Who runs the system and what it is."),
    jwks: Path = typer.Option(..., "--jwks", help="File with the client's public JWKS."),
    clinic: str | None = typer.Option(
        None, "--clinic", help="Clinic id it may export; omit for a research system."
    ),
    scope: str = typer.Option(
        "system/*.read system/*.rs", "--scope", help="The most it may be granted."
    ),
) -> None:
    """Register a system client with its public keys (JWKS)."""
    if clinic is not None and not clinic.isdigit():
        raise CliError(f"--clinic: {clinic!r} is not a clinic id (a number)")
    try:
        text = jwks.read_bytes()
    except OSError as exc:
        raise CliError(f"--jwks {jwks}: {exc.strerror or exc}") from None
    from vertebra.core.safeinput import load_json

    try:
        document = load_json(text)
    except ValueError as exc:
        raise CliError(f"--jwks {jwks}: {exc}".splitlines()[0]) from None
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from django.utils import timezone

    from vertebra.fhirbulk.auth import ClientError, register_client

    try:
        client = register_client(
            client_id=client_id, name=name, jwks=document, scope=scope, now=timezone.now(),
            clinic_id=int(clinic) if clinic is not None else None,
        )  # fmt: skip
    except ClientError as exc:
        raise CliError(str(exc)) from None
    where = f"clinic {client.clinic_id}" if client.clinic_id else "research (de-identified only)"
    typer.echo(f"registered {client.client_id} ({where}), scope {client.scope}")


@client_app.command("list")
def list_clients() -> None:
    """List the registered system clients (one line each, tab-separated)."""
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from vertebra.fhirbulk.models import BackendClient

    for client in BackendClient.objects.order_by("client_id"):
        state = "revoked" if client.revoked_at else "active"
        clinic = str(client.clinic_id) if client.clinic_id else "-"
        typer.echo(f"{client.client_id}\t{client.kind}\t{clinic}\t{state}\t{client.name}")


@client_app.command("revoke")
def revoke(client_id: str = typer.Argument(..., help="The client_id to revoke.")) -> None:
    """Revoke a client: its tokens stop working at once and it gets no new ones."""
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)
    from django.utils import timezone

    from vertebra.fhirbulk.auth import ClientError, revoke_client

    try:
        revoke_client(client_id, now=timezone.now())
    except ClientError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"revoked {client_id}")


def register(app: typer.Typer) -> None:
    """Add the ``fhir-client`` command group to the root CLI app."""
    app.add_typer(client_app, name="fhir-client")
