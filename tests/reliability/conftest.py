"""Fixtures of the reliability tests: one database of their own per pass (see harness.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import (
    ServedDatabase,
    create_database,
    drop_database,
    vendor_from_env,
)


@pytest.fixture(scope="session")
def served_db() -> Iterator[ServedDatabase]:
    """A migrated database (SQLite file, or a PostgreSQL database on the test server) that the
    reliability tests' servers use; each test seeds its own patients in it."""
    with tempfile.TemporaryDirectory(prefix="vertebra-reliability-") as folder:
        db = create_database(vendor_from_env(), Path(folder))
        try:
            yield db
        finally:
            drop_database(db)
