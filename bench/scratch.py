"""Scratch PostgreSQL databases for the benchmarks: created, yielded as URLs, always dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scratch_databases(
    admin_url: str, count: int = 1, prefix: str = "vertebra_bench"
) -> Iterator[list[str]]:
    """Create ``count`` empty databases named ``<prefix>_<random>`` through ``admin_url`` (a
    role allowed to CREATE and DROP DATABASE) and yield their URLs; drop them afterwards,
    even on error."""
    import psycopg

    names = [f"{prefix}_{uuid.uuid4().hex[:8]}" for _ in range(count)]
    base = admin_url.rsplit("/", 1)[0]
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(f"CREATE DATABASE {name}")
        yield [f"{base}/{name}" for name in names]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: A migrated SQLite file that :func:`migrate` copies instead of migrating a new SQLite file
#: (set by the CI smoke tests, ``tests/test_bench_smoke.py``: a migration from nothing is ~7 s
#: of a 2-core machine, a copy ~10 ms; no benchmark times its migration).
MIGRATED_SQLITE = "VERTEBRA_BENCH_MIGRATED_SQLITE"


def copy_migrated_sqlite(database_url: str) -> bool:
    """Make ``database_url``, a new SQLite file, a copy of :data:`MIGRATED_SQLITE` when that
    is set (a benchmark's own ``migrate`` then finds nothing to do); False when it did not."""
    import os
    import sqlite3
    from contextlib import closing
    from pathlib import Path

    template = os.environ.get(MIGRATED_SQLITE)
    target = Path(database_url.removeprefix("sqlite:///"))
    if not template or not database_url.startswith("sqlite:///") or target.exists():
        return False
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return True


def migrate(database_url: str, env: dict[str, str]) -> None:
    """Apply the migrations to ``database_url`` with ``vertebra manage migrate`` in a
    subprocess of ``env``, or copy :data:`MIGRATED_SQLITE` (:func:`copy_migrated_sqlite`)."""
    import subprocess
    import sys

    if copy_migrated_sqlite(database_url):
        return
    subprocess.run(
        [sys.executable, "-m", "vertebra", "manage", "migrate", "--verbosity", "0"],
        env={**env, "DATABASE_URL": database_url}, check=True,
    )  # fmt: skip
