"""Target 3's configuration assertion: an acknowledged commit survives a power loss, not only a
crash of the app; and target 4's bounded waits. Checked on a connection the app really opens
(``dbtool pragmas``, same settings as the server), and on the settings builder itself."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.reliability.harness import ServedDatabase, run_dbtool
from vertebra.config import DEFAULT_DATABASE_TIMEOUT, database_from_url


@pytest.mark.sqlite
def test_sqlite_connections_are_wal_synchronous_full_with_a_3_s_busy_wait(
    served_db: ServedDatabase,
) -> None:
    assert run_dbtool(served_db, "pragmas") == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL: the WAL is synced at every commit
        "foreign_keys": 1,
        "busy_timeout": 3000,
    }


@pytest.mark.postgresql
def test_postgres_server_syncs_every_commit_and_app_waits_at_most_3_s(
    served_db: ServedDatabase,
) -> None:
    assert run_dbtool(served_db, "pragmas") == {
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "lock_timeout": "3s",
        "connect_timeout": "3",
    }


def test_settings_builder_bounds_every_wait_and_keeps_url_options() -> None:
    assert DEFAULT_DATABASE_TIMEOUT == 3
    sqlite = database_from_url("sqlite:////tmp/x.sqlite3", timeout=4).settings["OPTIONS"]
    assert sqlite["timeout"] == 4
    assert "PRAGMA synchronous=FULL;" in sqlite["init_command"]
    postgres = database_from_url("postgres://u:p@h:5432/db", timeout=4).settings
    assert postgres["OPTIONS"] == {"connect_timeout": 4, "options": "-c lock_timeout=4000"}
    assert postgres["CONN_HEALTH_CHECKS"] is True
    # libpq treats a connect timeout below 2 s as 2 s; say so rather than pretend.
    assert (
        database_from_url("postgres://u:p@h/db", timeout=1).settings["OPTIONS"]["connect_timeout"]
        == 2
    )
    # An option given in the URL wins over the default.
    tuned = database_from_url("postgres://u:p@h/db?connect_timeout=10", timeout=3)
    assert tuned.settings["OPTIONS"]["connect_timeout"] == 10


def test_database_timeout_out_of_range_stops_start_up_naming_the_variable() -> None:
    result = run_cli("manage", "check", env={"DATABASE_TIMEOUT": "0"})
    assert result.returncode == 2
    assert "DATABASE_TIMEOUT=0 is out of range; use 1 to 60 seconds" in result.stderr
    assert "Traceback" not in result.stderr
