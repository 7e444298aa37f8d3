"""Freshly migrated databases for the tests that need one of their own (a file or a database
their subprocesses share), made by copying a template that the real ``vertebra manage
migrate`` migrated once per test process.

Why: one migration from nothing costs ~7 s on a 2-core CI machine (Django renders the
migration state after each of ~65 migrations, and the command's system checks import every
view); about thirty tests each paid it, several minutes of every CI run. A copy costs ~10 ms
(SQLite: the file, through SQLite's backup API) or ~0.1 s (PostgreSQL: ``CREATE DATABASE …
TEMPLATE``). The template is migrated by the same command a deployment runs, so the copy is
the database those tests made before; the commands that migrate by themselves (``vertebra
demo``, ``manage migrate`` in ``tests/cli``) are still tested as they are.

A migrated database holds no row tied to a data folder (no audit row, no seal, no key: only
Django's content types and permissions), so a copy serves any ``VERTEBRA_DATA_DIR``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

_lock = threading.Lock()
_templates: dict[str, str] = {}


def _migrate(database_url: str, data_dir: str) -> None:
    """Run ``vertebra manage migrate`` on ``database_url`` as a subprocess; fail loudly."""
    from tests.conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "-m", "vertebra", "manage", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "VERTEBRA_DATA_DIR": data_dir,
            "DJANGO_SETTINGS_MODULE": "vertebra.settings",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"migrating the template failed:\n{done.stderr[-3000:]}"


def sqlite_template() -> str:
    """The path of this process's migrated SQLite template (migrated on first use)."""
    with _lock:
        if "sqlite" not in _templates:
            folder = tempfile.mkdtemp(prefix="vertebra-migrated-")
            atexit.register(shutil.rmtree, folder, True)
            path = str(Path(folder) / "template.sqlite3")
            _migrate(f"sqlite:///{path}", folder)
            _templates["sqlite"] = path
        return _templates["sqlite"]


def sqlite_database(path: Path) -> str:
    """Make ``path`` (which must not exist) a freshly migrated SQLite registry; its
    ``DATABASE_URL``."""
    if path.exists():
        raise FileExistsError(path)
    source = sqlite3.connect(sqlite_template())
    target = sqlite3.connect(path)
    try:
        source.backup(target)  # a consistent copy whatever the journal mode
    finally:
        target.close()
        source.close()
    return f"sqlite:///{path}"


def pg_admin(url: str, sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database, outside a transaction."""
    import psycopg

    admin = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)  # type: ignore[arg-type]  # our own SQL from known names


def _postgres_template(server_url: str) -> str:
    """The name of this process's migrated template database on the server of
    ``server_url`` (made on first use, dropped when the process ends)."""
    with _lock:
        if "postgresql" not in _templates:
            parts = urllib.parse.urlsplit(server_url)
            name = f"test_{parts.path.lstrip('/')}_migrated_{os.getpid()}"
            pg_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg_admin(server_url, f'CREATE DATABASE "{name}"')
            atexit.register(pg_admin, server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            with tempfile.TemporaryDirectory() as folder:
                _migrate(urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), folder)
            _templates["postgresql"] = name
        return _templates["postgresql"]


def postgres_database(server_url: str, name: str) -> str:
    """Make ``name`` on the server of ``server_url`` a freshly migrated database (dropped
    first if a killed run left it behind); its URL."""
    template = _postgres_template(server_url)
    pg_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    parts = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
