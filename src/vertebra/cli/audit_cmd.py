"""``vertebra audit verify|checkpoint|keygen|rotate-key|grants``: the trail's tamper evidence.

* ``verify``: recompute the hash chain and every row's MAC, compare with the signed
  checkpoints (file outside the database), and record the run as a ``verify`` audit row.
  Exit 0 when intact; 1 with the first problem named (``row SEQ: KIND: ...``) otherwise;
  2 for a configuration problem (no key, unreadable key file).
* ``checkpoint``: append a signed checkpoint of the chain head to the checkpoint file (and
  the log). Run it from cron as often as a deleted tail must be noticed.
* ``keygen`` / ``rotate-key``: create the key file (0600) / retire its key and make a new one.
* ``grants --role NAME``: the SQL that makes a least-privilege runtime role (ADR 0008).

Operator commands: their audit rows name ``system:audit-cli``.
"""

from __future__ import annotations

import json

import typer

from vertebra.cli.errors import CliError

audit_app = typer.Typer(
    help="Verify and checkpoint the audit trail, manage its MAC key.",
    no_args_is_help=True,
)

CLI_ACTOR = "audit-cli"


def _setup(*, existing_registry: bool = True) -> None:
    """Start Django. Commands that read the trail need an existing, migrated registry (never
    create an empty one); ``keygen`` needs none."""
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=existing_registry)


@audit_app.command("verify")
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Verify the audit trail (exit 0 intact, 1 with the first problem named)."""
    _setup()
    from vertebra.registry.audit import system_actor, verify_and_record
    from vertebra.registry.auditroles import role_warnings
    from vertebra.registry.auditseal import AuditKeyError

    for warning in role_warnings():
        typer.echo(f"vertebra audit: warning: {warning} (see ADR 0008)", err=True)
    try:
        report, row = verify_and_record(actor=system_actor(CLI_ACTOR), source="cli")
    except AuditKeyError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **report.summary("cli"),
                    "recorded_as": row.pk,
                    "all_problems": [
                        {
                            "seq": p.seq,
                            "chain": p.chain,
                            "event_id": p.event_id,
                            "kind": p.kind,
                            "message": p.message,
                        }
                        for p in report.problems
                    ],
                },
                indent=2,
            )
        )
    elif report.intact:
        typer.echo(
            f"audit trail intact: {report.rows} rows, head seal {report.head_seq}, "
            f"{report.checkpoints} checkpoint(s) matched (recorded as audit row {row.pk})"
        )
    else:
        first = report.problems[0]
        typer.echo(f"audit trail NOT intact: row {first.seq}: {first.kind}: {first.message}")
        for problem in report.problems[1:20]:
            typer.echo(f"  row {problem.seq}: {problem.kind}: {problem.message}")
        if len(report.problems) > 20:
            typer.echo(f"  ... {len(report.problems) - 20} more")
        typer.echo(f"{len(report.problems)} problem(s); recorded as audit row {row.pk}")
    if not report.intact:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Write a signed checkpoint of the chain head outside the database (file and log)."""
    _setup()
    from vertebra.registry.audit import system_actor, write_checkpoint
    from vertebra.registry.auditseal import AuditKeyError, checkpoint_file

    try:
        written = write_checkpoint(actor=system_actor(CLI_ACTOR))
    except AuditKeyError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {checkpoint_file()}: {exc.strerror}") from None
    typer.echo(
        f"checkpoint: seal {written.seq}, hash {written.hash}, at {written.at}, "
        f"in {checkpoint_file()}"
    )


@audit_app.command("keygen")
def keygen() -> None:
    """Create the audit MAC key file (mode 0600) if there is none; print its path and key id."""
    _setup(existing_registry=False)
    from vertebra.registry.auditseal import ensure_key_file, key_file, keyring

    path = key_file()
    existed = path.exists()
    ensure_key_file()
    ring = keyring()
    typer.echo(f"{'kept the existing' if existed else 'created'} key {ring.current_id} in {path}")


@audit_app.command("rotate-key")
def rotate_key() -> None:
    """Retire the current key (kept for verification) and create a new one; restart after."""
    _setup()
    from vertebra.registry.auditseal import AuditKeyError, old_keys_file, rotate_key

    try:
        old, new = rotate_key()
    except (AuditKeyError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    typer.echo(
        f"retired key {old} (kept in {old_keys_file()}), new key {new}; restart the server "
        "and worker so that they sign with it"
    )


@audit_app.command("grants")
def grants(
    role: str = typer.Option(..., "--role", help="The runtime database role (not the owner)."),
    apply: bool = typer.Option(
        False, "--apply", help="Run the SQL on DATABASE_URL (connect as the owner role)."
    ),
) -> None:
    """Print (or apply) the SQL that gives the runtime role INSERT/SELECT only on the trail."""
    from vertebra.registry.auditroles import grant_statements

    try:
        statements = grant_statements(role)
    except ValueError as exc:
        raise CliError(f"--role: {exc}") from None
    if not apply:
        typer.echo("\n".join(statements))
        return
    _setup()
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        raise CliError("--apply needs PostgreSQL (SQLite has no roles: protect the file)")
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    typer.echo(f"granted: {role} may SELECT and INSERT on the audit trail, nothing more")


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to the root CLI app."""
    app.add_typer(audit_app, name="audit")
