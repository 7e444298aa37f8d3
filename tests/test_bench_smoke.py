"""Small runs of the benchmarks in bench/, so they cannot rot (the full runs are by hand).

Each script runs as a real subprocess with tiny sizes; the figures are not judged here, only
that the script completes and prints its table. The portal benchmark has its own small run in
tests/followup/test_bench_small.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.migrated import sqlite_database, sqlite_template

pytestmark = pytest.mark.slow
# A test not marked ``postgresql`` runs its benchmark on its own SQLite file or on no database at
# all, so it runs once, in the SQLite pass (``sqlite``): the PostgreSQL pass would repeat it.


def _bench(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``bench/<script> ARGS``; its standard output. A benchmark on a new SQLite file
    starts from a copy of the session's migrated template (``bench/scratch.migrate``)."""
    if "--sqlite" in args:
        env = {"VERTEBRA_BENCH_MIGRATED_SQLITE": sqlite_template(), **(env or {})}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.sqlite
def test_scoring_benchmark_small() -> None:
    out = _bench("bench_scoring.py", "--rows", "20000", "--scalar-rows", "2000", "--json")
    assert '"rows": 20000' in out


@pytest.mark.sqlite
def test_synth_benchmark_small() -> None:
    out = _bench("bench_synth.py", "--sizes", "2000")
    assert "2,000" in out or "2000" in out


@pytest.mark.sqlite
def test_analytics_benchmark_small(tmp_path: Path) -> None:
    out = _bench(
        "bench_analytics.py", "--sizes", "3000", "--repeat", "1", "--data-dir", str(tmp_path)
    )
    assert "DuckDB" in out or "duckdb" in out


@pytest.mark.sqlite
def test_load_benchmark_small_sqlite() -> None:
    out = _bench("bench_load.py", "--sizes", "300", "--sqlite")
    assert "SQLite" in out and "300" in out


@pytest.mark.postgresql
def test_load_benchmark_small_postgresql() -> None:
    url = os.environ["DATABASE_URL"]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    out = _bench("bench_load.py", "--sizes", "300", "--admin-url", admin)
    assert "PostgreSQL" in out and "300" in out and "plain COPY" in out


@pytest.mark.sqlite
def test_demo_benchmark_small() -> None:
    out = _bench("bench_demo.py", "--patients", "50", "--repeat", "1")
    assert "50 patients, first page after" in out


@pytest.mark.sqlite
def test_decision_benchmark_small_sqlite() -> None:
    out = _bench("bench_decision.py", "--sizes", "300", "--sqlite")
    assert "SQLite" in out and '"patients": 300' in out


@pytest.mark.sqlite
def test_audit_benchmark_small_sqlite() -> None:
    out = _bench("bench_audit.py", "--appends", "100", "--sqlite")
    assert "audit append benchmark (SQLite" in out and "HMAC" in out


@pytest.mark.postgresql
def test_audit_benchmark_small_postgresql() -> None:
    admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    out = _bench("bench_audit.py", "--appends", "100", "--admin-url", admin)
    assert "audit append benchmark (PostgreSQL" in out and "verify:" in out


@pytest.mark.sqlite
def test_fhir_bulk_benchmark_small(tmp_path: Path) -> None:
    out = _bench("bench_fhir_bulk.py", "--patients", "20", "--sqlite")
    assert "FHIR Bulk Data benchmark (SQLite, 20 patients" in out


@pytest.mark.sqlite
def test_import_benchmark_small_sqlite() -> None:
    out = _bench("bench_import.py", "--sizes", "20", "--sqlite")
    assert "import fhir benchmark (SQLite" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["20"])
    assert row[7] == "0"  # nothing refused


@pytest.mark.sqlite
def test_registry_reads_benchmark_small_sqlite() -> None:
    out = _bench("bench_registry_reads.py", "--sizes", "200", "--sqlite")
    assert "registry reads (SQLite" in out
    assert all(path in out for path in ("floor", "columnar_deid", "orm_deid"))


@pytest.mark.postgresql
def test_registry_reads_benchmark_small_postgresql() -> None:
    admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    out = _bench("bench_registry_reads.py", "--sizes", "200", "--admin-url", admin)
    assert "registry reads (PostgreSQL" in out
    assert all(path in out for path in ("floor", "columnar_deid", "orm_deid"))


@pytest.mark.sqlite
def test_snapshot_benchmark_small_sqlite() -> None:
    out = _bench("bench_snapshot.py", "--sizes", "200", "--sqlite")
    assert "analysis snapshot (SQLite" in out
    assert all(path in out for path in ("direct_deid", "refresh", "check", "page_research"))
    assert "page_cached_research" in out and "repeat" in out
    assert "published after" in out  # the refresh says when pages began to see the snapshot
    assert "incremental read of 100 patients" in out  # only the changed patients read again
    # a researcher's new filter: asked of the worker (a `snapshot watch` process), then shown
    assert re.search(r"warm: pending, ready after \d+\.\d+ s, then shown in", out)


@pytest.mark.sqlite
def test_pages_benchmark_small_sqlite() -> None:
    out = _bench("bench_pages.py", "--patients", "60", "--sqlite", "--repeat", "2")
    assert "pages at 60 patients (sqlite" in out
    pages = ("list last page", "home researcher", "fhir Patient", "trajectory (network)",
             "dashboard researcher", "directory clinic (public)")  # fmt: skip
    assert all(page in out for page in pages)


@pytest.mark.postgresql
def test_pages_benchmark_small_postgresql() -> None:
    admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    out = _bench(
        "bench_pages.py", "--patients", "60", "--repeat", "2", "--admin-url", admin,
        "--skip", "dashboard|trajectory",
    )  # fmt: skip
    assert "pages at 60 patients (postgresql" in out and "SQL floor" in out


@pytest.mark.sqlite
def test_portal_requests_benchmark_small_sqlite(tmp_path: Path) -> None:
    out = _bench(
        "bench_portal_requests.py",
        "--links",
        "2",
        env={
            "DATABASE_URL": sqlite_database(tmp_path / "portal.sqlite3"),
            "VERTEBRA_DATA_DIR": str(tmp_path),
        },
    )
    assert "2 journeys" in out
    assert all(kind in out for kind in ("submit POST", "page POST", "review GET", "done GET"))
    assert "sealer after" not in out  # SQLite seals in the writer's transaction
