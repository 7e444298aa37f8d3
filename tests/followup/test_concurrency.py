"""Races with real transactions: two workers, and simultaneous submissions, on both databases.

PostgreSQL runs in-process (threads, one connection each). SQLite runs the same scenario in a
subprocess on a real database file (see races.py for why not the in-memory test database).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from tests.followup import races


def _run(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if connection.vendor == "sqlite":
        return races.run_on_sqlite_file(name)
    request.getfixturevalue("flushable_audit")
    if name == "workers":
        result = races.workers(request.getfixturevalue("smtp_sink"))
    else:
        result = races.submissions(same_key=(name == "same_key"))
    result["audit_ok"] = races.audit_ok()
    return result


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_the_same_moment_send_each_step_once(request) -> None:
    result = _run("workers", request)
    assert result["errors"] == []
    assert result["overlap"] == 0  # no reminder claimed by both workers
    assert result["sent"] == result["messages"] == result["sent_rows"] == 15
    assert result["per_patient"] == [3] * 5
    assert result["audit_ok"]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_identical_submissions_store_one(request) -> None:
    result = _run("same_key", request)
    assert result["errors"] == []
    assert len(result["submission_ids"]) == 1 and result["created"] == 1
    assert result["submissions"] == 1
    assert result["responses"] == result["instruments"]
    assert result["audit_ok"]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_different_submissions_store_one_and_refuse_the_rest(request) -> None:
    result = _run("different_keys", request)
    assert result["created"] == 1 and result["submissions"] == 1
    assert result["errors"] == ["AlreadyCompleted"] * 3, result["error_text"]
    assert result["audit_ok"]
