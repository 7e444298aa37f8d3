"""``vertebra serve`` with a test-only switch that makes the SQLite database full.

    RELIABILITY_DISK_FULL_FLAG=/path/flag python -m tests.reliability.diskfull_server serve ...

While the flag file exists, every new database connection is capped at the size the file has
now (``PRAGMA max_page_count`` = ``page_count``): any write that needs one more page fails
with SQLITE_FULL ("database or disk is full"), as on a full disk, while reads go on.
Deleting the flag frees the space for the next connection; the app opens one per request
(CONN_MAX_AGE 0 on SQLite), so no restart is needed. The hook is installed before the real
CLI runs and reaches the gunicorn workers by fork; the app itself is not changed.

A real full file system (a 20 MB tmpfs or loop device) needs mount privileges that a CI
container may not have; this needs none, and SQLite takes the same error path for both
(SQLITE_FULL: the statement fails, the transaction rolls back).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def install(flag: str) -> None:
    """Cap each new SQLite connection at the current size while ``flag`` exists."""
    from django.db.backends.signals import connection_created

    def cap(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor != "sqlite" or not os.path.exists(flag):
            return
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA page_count")
            pages = int(cursor.fetchone()[0])
            cursor.execute(f"PRAGMA max_page_count = {pages}")

    connection_created.connect(cap, weak=False, dispatch_uid="reliability-disk-full")


if __name__ == "__main__":
    install(os.environ["RELIABILITY_DISK_FULL_FLAG"])
    from vertebra.cli.main import run

    run(sys.argv[1:])
