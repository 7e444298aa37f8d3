"""The README's test command brings up its own PostgreSQL (scripts/test-services.sh).

On a machine where no PostgreSQL answers at the configured address, ``scripts/test.sh`` starts
a throwaway server from the installed binaries; these tests run that very code, as a real bash
subprocess, on a port where nothing listens (the machine's own server keeps running: other
work uses it), then point a real database test at the server it made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO_ROOT, free_port

SERVICES = REPO_ROOT / "scripts" / "test-services.sh"


def _bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"set -uo pipefail; source {SERVICES}; {script}"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.postgresql
@pytest.mark.slow
def test_a_stopped_postgresql_is_replaced_by_a_throwaway_server(tmp_path: Path) -> None:
    port = free_port()
    wanted = f"postgres://postgres:postgres@127.0.0.1:{port}/vertebra"
    report = tmp_path / "pytest.txt"
    # Bring the server up, run one real database test file against it, stop it again.
    script = f"""
        ensure_postgres '{wanted}' || exit 10
        echo "URL=$PG_URL"
        DATABASE_URL="$PG_URL" {sys.executable} -m pytest -q -p no:cacheprovider \\
            {REPO_ROOT}/tests/registry/test_audit.py -k "chain" > {report} 2>&1
        status=$?
        stop_throwaway_postgres
        exit $status
    """
    result = _bash(script)
    assert result.returncode == 0, result.stderr + report.read_text()
    url = next(line[4:] for line in result.stdout.splitlines() if line.startswith("URL="))
    assert f":{port}/vertebra" in url
    assert "throwaway PostgreSQL" in result.stderr
    assert " passed" in report.read_text()
    # Stopped and removed: nothing answers on the port any more.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()


@pytest.mark.postgresql
def test_a_server_that_answers_is_used_as_it_is() -> None:
    url = os.environ["DATABASE_URL"]
    result = _bash(f"ensure_postgres '{url}' && echo \"URL=$PG_URL\"")
    assert result.returncode == 0, result.stderr
    assert f"URL={url}" in result.stdout
    assert "throwaway" not in result.stderr


def test_what_cannot_be_had_is_said_in_one_line() -> None:
    # A remote address that does not answer: nothing is started, one line says what to do.
    result = _bash("ensure_postgres 'postgres://u:p@192.0.2.1:5432/x'; echo rc=$?")
    assert "rc=1" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "missing: PostgreSQL at 192.0.2.1:5432 does not answer "
        "(set VERTEBRA_TEST_DATABASE_URL to a server that does)"
    ]
