"""Start Django and serve it with gunicorn, for ``vertebra serve`` and ``vertebra demo``."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

from vertebra.cli.errors import CliError


def django_setup(*, existing_registry: bool = False) -> None:
    """Configure Django from the environment; a bad setting becomes a one-line CliError.

    ``existing_registry=True`` is for commands that read or add to a registry (report, export,
    import, audit): they need a database that exists and is migrated, and must never create an
    empty one by accident, so they stop with one line saying how to get or point at one.
    Commands that build a database (demo, serve, manage, worker) leave it False.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise CliError(f"configuration error: {exc}") from None
    from django.conf import settings

    database = settings.DATABASES["default"]
    sqlite_file = database["ENGINE"].endswith("sqlite3") and str(database["NAME"]) != ":memory:"
    if existing_registry:
        if sqlite_file and not Path(database["NAME"]).exists():
            raise CliError(
                f"no Vertebra database at {database['NAME']}: run 'vertebra demo' first (it "
                "creates this database), or set DATABASE_URL to your registry, e.g. "
                "DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/vertebra"
            )
        _require_migrated(settings.DATABASE_DESCRIPTION)
    elif sqlite_file:
        # A first run on a new machine: the per-user data folder may not exist yet.
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)


def _require_migrated(description: str) -> None:
    """Raise CliError unless the default database answers and has every migration applied."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot open the database {description}: {first_line}") from None
    if pending:
        raise CliError(
            f"the database {description} is not ready ({len(pending)} migrations not applied): "
            "run 'vertebra manage migrate' first (or 'vertebra demo' for a demo registry)"
        )


def ensure_port_free(host: str, port: int) -> None:
    """Raise CliError if ``host:port`` cannot be bound (in use, privileged or invalid)."""
    if not 0 < port < 65536:
        raise CliError(f"port {port} is not valid; choose a number from 1 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: connections of a crashed server left in TIME_WAIT must not stop a
        # restart (without this, `vertebra serve` refused the port for a minute after kill -9).
        # A live listener on the port still makes bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use; stop the other program or "
                    f"choose another port with --port"
                ) from None
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def default_workers() -> int:
    """Gunicorn's rule of thumb, 2 × cores + 1, capped at 9 so a big host is not flooded."""
    return min(2 * (os.cpu_count() or 1) + 1, 9)


def run_gunicorn(*, host: str, port: int, workers: int, threads: int, quiet: bool = False) -> None:
    """Serve ``vertebra.wsgi`` with gunicorn in this process until interrupted."""
    from gunicorn.app.base import BaseApplication

    from vertebra.wsgi import application

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None if quiet else "-",
        "errorlog": "-",
        "loglevel": "warning" if quiet else "info",
        # Patient-link tokens must never reach a log: log the path only, without the query,
        # and through a logger that redacts token-like path segments under /p/.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
        "logger_class": "vertebra.perimeter.gunicorn_logging.GunicornLogger",
    }

    class _VertebraServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return application

    _VertebraServer().run()


def serve_production(*, host: str, port: int, workers: int, threads: int) -> None:
    """Entry point of ``vertebra serve``: check settings, collect static files, serve."""
    django_setup()
    from django.conf import settings
    from django.core.management import call_command

    ensure_port_free(host, port)
    if getattr(settings, "PRODUCTION", False):
        call_command("collectstatic", interactive=False, verbosity=0)
    run_gunicorn(host=host, port=port, workers=workers or default_workers(), threads=threads)
