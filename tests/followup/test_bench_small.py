"""A small run of bench/bench_portal_concurrency.py (5 clients × 3 s), so the benchmark cannot rot.

PostgreSQL: against pytest-django's live server, in-process. SQLite: the benchmark script itself
in a subprocess, serving a real database file with ``vertebra serve`` (the in-memory test
database cannot take concurrent writers; see races.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from django.db import connection

from tests.conftest import REPO_ROOT
from tests.migrated import sqlite_database

pytestmark = pytest.mark.slow


def _bench() -> ModuleType:
    path = REPO_ROOT / "bench" / "bench_portal_concurrency.py"
    spec = importlib.util.spec_from_file_location("bench_portal_concurrency", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db(transaction=True)
def test_small_concurrency_benchmark(request: pytest.FixtureRequest) -> None:
    if connection.vendor == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            env = {
                **os.environ,
                "DATABASE_URL": sqlite_database(Path(folder) / "bench.sqlite3"),
                "VERTEBRA_DATA_DIR": folder,
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
                "LOG_LEVEL": "WARNING",
            }
            done = subprocess.run(
                [sys.executable, "bench/bench_portal_concurrency.py", "--clients", "5",
                 "--seconds", "3", "--links", "60", "--workers", "2", "--threads", "2"],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "PASS" in done.stdout
        return
    request.getfixturevalue("flushable_audit")
    live_server = request.getfixturevalue("live_server")
    bench = _bench()
    links = bench.seed_links(40)
    out = bench.run_benchmark(live_server.url, links, clients=5, seconds=3)
    check = bench.verify(out, links)
    assert out.server_errors == 0 and out.other_failures == []
    assert check["acknowledged"] > 0
    assert check["lost"] == check["duplicated_time_points"] == check["wrong_time_point"] == 0
    assert check["partial"] == 0 and out.replay_mismatches == 0
    assert check["stored"] == check["distinct_acknowledged"]
