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
