"""Test-side pieces of the reliability tests: a database of their own, the real server as a
subprocess, and a patient client that submits over HTTP.

Everything that needs Django on the served database runs in a subprocess
(``python -m tests.reliability.dbtool``) with that database's DATABASE_URL, so the same code
serves the SQLite and the PostgreSQL pass; pytest's own Django connection is never used here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.conftest import REPO_ROOT, free_port
from tests.migrated import pg_admin, postgres_database, sqlite_database


@dataclass(frozen=True)
class ServedDatabase:
    """A migrated database that only the reliability tests use."""

    vendor: str  # "sqlite" or "postgresql"
    url: str  # DATABASE_URL for the server and dbtool
    sqlite_path: Path | None = None
    pg_name: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a server or dbtool subprocess on this database."""
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "DJANGO_SETTINGS_MODULE": "vertebra.settings",
            "VERTEBRA_ENV": "test",
            # This checkout's code first (not another installed copy), then the tests.
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def with_host(self, host: str, port: int) -> ServedDatabase:
        """The same PostgreSQL database reached through ``host:port`` (a proxy)."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = f"{parts.username}:{parts.password or ''}@{host}:{port}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return ServedDatabase(self.vendor, url, self.sqlite_path, self.pg_name)

    def direct_count(self, sql: str, params: list[Any]) -> int:
        """Run a one-number query straight on the database (no Django, no server)."""
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path, timeout=30) as conn:
                return int(conn.execute(sql.replace("%s", "?"), params).fetchone()[0])
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as conn:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return int(row[0])


def vendor_from_env() -> str:
    """The pass we are in: ``postgresql`` or ``sqlite`` (as tests/conftest.py decides)."""
    url = os.environ.get("DATABASE_URL", "")
    return "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


def create_database(vendor: str, folder: Path) -> ServedDatabase:
    """A new migrated database for the reliability tests (a copy of a migrated template:
    ``tests.migrated``).

    SQLite: a file in ``folder``. PostgreSQL: ``test_<name>_reliability`` on the server of
    DATABASE_URL (dropped first if a killed run left it behind; it belongs to these tests).
    """
    if vendor == "sqlite":
        path = folder / "reliability.sqlite3"
        return ServedDatabase("sqlite", sqlite_database(path), sqlite_path=path)
    base = os.environ["DATABASE_URL"]
    name = f"test_{urllib.parse.urlsplit(base).path.lstrip('/')}_reliability"
    return ServedDatabase("postgresql", postgres_database(base, name), pg_name=name)


def drop_database(db: ServedDatabase) -> None:
    """Remove a database made by :func:`create_database` (SQLite files go with their folder)."""
    if db.vendor == "postgresql":
        pg_admin(db.url, f'DROP DATABASE IF EXISTS "{db.pg_name}" WITH (FORCE)')


def run_dbtool(db: ServedDatabase, *args: str, timeout: float = 300) -> Any:
    """Run ``python -m tests.reliability.dbtool ARGS`` on ``db``; return its JSON output."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.dbtool", *args],
        cwd=REPO_ROOT,
        env=db.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"dbtool {args[0]} failed:\n{done.stderr[-4000:]}"
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


class Server:
    """``vertebra serve`` (gunicorn) as a subprocess in its own process group.

    ``kill()`` is ``kill -9`` of the whole group (master and workers at once), the crash of
    target 3; ``start()`` again restarts it on the same port. Output goes to ``log``.
    """

    def __init__(
        self,
        db: ServedDatabase,
        log: Path,
        *,
        workers: int = 2,
        threads: int = 2,
        entry: str = "vertebra",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.threads = threads
        self.entry = entry  # module run with -m: the real CLI, or a test wrapper around it
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, ready_timeout: float = 90) -> float:
        """Start the server and wait until /healthz answers 200; return the seconds it took."""
        assert self.proc is None, "already running"
        started = time.monotonic()
        args = [sys.executable, "-m", self.entry, "serve", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--workers", str(self.workers)]
        args += ["--threads", str(self.threads)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=self.db.env(**self.extra_env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for kill -9 of all of it
            )
        self.starts += 1
        while time.monotonic() - started < ready_timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited at start:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"server not ready in {ready_timeout} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        """The master's process id (to show that recovery needed no restart)."""
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL every process of the server at once (no cleanup, no graceful shutdown)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL after 20 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output, for assertion messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def submit(base: str, item: dict[str, Any], timeout: float = 30) -> requests.Response:
    """POST the send form of one planned submission, as the patient's browser would: its
    session cookie, CSRF cookie and token, and the idempotency key the send page carries."""
    return requests.post(
        f"{base}/p/q/submit/",
        data={"csrfmiddlewaretoken": item["csrf"], "idempotency_key": item["key"]},
        cookies={"sessionid": item["session"], "csrftoken": item["csrf"]},
        allow_redirects=False,
        timeout=timeout,
    )


def acknowledged_reference(response: requests.Response) -> str | None:
    """The reference of a submission acknowledgement (303 to /p/done/?ref=...), else None."""
    location = response.headers.get("Location", "")
    if response.status_code == 303 and "ref=" in location:
        return location.split("ref=", 1)[1]
    return None


def timed(method: str, url: str, **kwargs: Any) -> tuple[requests.Response, float]:
    """One request and its wall time in seconds."""
    started = time.monotonic()
    response = requests.request(method, url, allow_redirects=False, **kwargs)
    return response, time.monotonic() - started
