"""``vertebra snapshot refresh|status|watch``: the analysis snapshot the pages answer from.

* ``refresh``: check the watermark and rebuild the snapshot when the registry changed
  (``--force``: rebuild anyway). For cron and operations; ``vertebra worker`` does the same on
  every ``SNAPSHOT_REFRESH_SECONDS``.
* ``status``: when the current snapshot was built and last confirmed current, its row counts.
* ``watch``: only the snapshot refresh, in a loop (the demo runs it as its own process).

Audit rows name ``system:analysis-snapshot`` and ``system:decision-aid`` (ADR 0022).
"""

from __future__ import annotations

import json
import threading
import time

import typer

from vertebra.cli.errors import CliError

snapshot_app = typer.Typer(
    help="Build and inspect the analysis snapshot (dashboards, reports, decision aid).",
    no_args_is_help=True,
)


def _setup() -> None:
    from vertebra.cli.server import django_setup

    django_setup(existing_registry=True)


@snapshot_app.command("refresh")
def refresh(
    force: bool = typer.Option(False, "--force", help="Rebuild even if nothing changed."),
) -> None:
    """Rebuild the snapshot if the registry changed since it was built (or with --force)."""
    _setup()
    from vertebra.outcomes import snapshot

    result = snapshot.refresh(force=force)
    rows = (result.manifest or {}).get("rows", {})
    typer.echo(f"vertebra snapshot: {result.outcome} in {result.seconds:.2f} s, rows {rows}")


@snapshot_app.command("status")
def status() -> None:
    """Print the current snapshot's manifest and status as JSON (exit 1 when there is none)."""
    _setup()
    from vertebra.outcomes import snapshot

    now = snapshot.status()
    if now is None:
        raise CliError("no analysis snapshot yet (run `vertebra snapshot refresh`)", exit_code=1)
    manifest = snapshot.current_manifest() or {}  # the manifest only: never the rows
    typer.echo(
        json.dumps(
            {
                **manifest,
                "checked_at": now.checked_at.isoformat(),
                "stale": now.stale,
                "refresh_seconds": now.refresh_seconds,
            },
            indent=1,
        )
    )


@snapshot_app.command("watch")
def watch(
    interval: float = typer.Option(
        0.0, help="Seconds between checks (0: the SNAPSHOT_REFRESH_SECONDS setting)."
    ),
) -> None:
    """Keep the snapshot current until interrupted (checks only; follow-up work is not done);
    between checks, build the filters pages ask for every SNAPSHOT_REQUEST_POLL_SECONDS."""
    _setup()
    from django.conf import settings

    from vertebra.followup.worker import refresh_snapshot, serve_snapshot_requests

    every = interval or float(settings.SNAPSHOT_REFRESH_SECONDS)
    if every <= 0:
        raise CliError("--interval must be a positive number of seconds")
    poll = min(every, float(settings.SNAPSHOT_REQUEST_POLL_SECONDS))
    stop = threading.Event()
    while not stop.is_set():
        refresh_snapshot()
        next_check = time.monotonic() + every
        while not stop.wait(max(0.0, min(poll, next_check - time.monotonic()))):
            if time.monotonic() >= next_check:
                break
            serve_snapshot_requests()


def register(app: typer.Typer) -> None:
    """Add ``vertebra snapshot`` to the main command."""
    app.add_typer(snapshot_app, name="snapshot")
