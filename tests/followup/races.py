"""Race scenarios shared by the in-process (PostgreSQL) and subprocess (SQLite file) tests.

On SQLite, pytest-django's in-memory test database uses shared-cache mode, where a second
writer fails at once with "table is locked" instead of waiting: not how a real SQLite file in
WAL mode behaves. So on SQLite the same scenarios run in a subprocess against a migrated file
database (``python -m tests.followup.races NAME`` prints the result as JSON).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def race(n: int, target: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``target(i)`` in ``n`` threads released at the same moment."""
    from django.db import connections

    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results.append(target(i))
        except BaseException as exc:  # reported to the caller
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def workers(sink: Any) -> dict[str, Any]:
    """Two workers run every pass of a week-6 ladder at the same moments, for 5 patients."""
    from tests.followup.helpers import T0, at, make_schedule, point
    from vertebra.followup.models import Reminder
    from vertebra.followup.worker import run_once

    schedules = [make_schedule(start=T0, today=T0, email=f"p{i}@example.org") for i in range(5)]
    opens = point(schedules[0], "week_6").opens
    sent = 0
    overlap = 0
    errors: list[str] = []
    for day in (0, 3, 7):
        now = at(opens + dt.timedelta(days=day))
        reports, errs = race(2, lambda i, now=now: run_once(now, who=f"worker-{i}"))
        errors += [repr(e) for e in errs]
        sent += sum(r.sent for r in reports)
        if len(reports) == 2:
            overlap += len(set(reports[0].sent_ids) & set(reports[1].sent_ids))
    return {
        "errors": errors,
        "sent": sent,
        "overlap": overlap,
        "messages": len(sink.messages),
        "per_patient": [len(sink.to(f"p{i}@example.org")) for i in range(5)],
        "sent_rows": Reminder.objects.filter(status="sent", time_point__key="week_6").count(),
    }


def submissions(same_key: bool) -> dict[str, Any]:
    """Four simultaneous submissions for one time point, with one key or four."""
    from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
    from vertebra.followup.models import QuestionnaireResponse, Submission
    from vertebra.followup.services import submit_responses

    baseline = point(make_schedule(start=T0, today=T0), "baseline")
    answers = answers_for(baseline)

    def submit(i: int) -> Any:
        key = "same-key-0123456789" if same_key else f"tab-{i}-0123456789abcdef"
        return submit_responses(baseline, answers, key, at(T0), psfs_names=PSFS_NAMES)

    results, errors = race(4, submit)
    return {
        "errors": [type(e).__name__ for e in errors],
        "error_text": [str(e) for e in errors if type(e).__name__ != "AlreadyCompleted"],
        "submission_ids": sorted({r.submission.pk for r in results}),
        "created": sum(r.created for r in results),
        "submissions": Submission.objects.count(),
        "responses": QuestionnaireResponse.objects.count(),
        "instruments": len(baseline.instruments),
    }


def audit_ok() -> bool:
    from vertebra.registry.audit import verify_audit_chain

    return verify_audit_chain() == []


def _main(name: str) -> None:
    """Subprocess entry: on the migrated SQLite file of DATABASE_URL, run scenario ``name``,
    print JSON."""
    import django

    django.setup()
    if name == "workers":
        from django.conf import settings

        from tests.followup.helpers import SmtpSink

        sink = SmtpSink()
        sink.controller.start()
        for key, value in sink.settings().items():
            setattr(settings, key, value)
        try:
            result = workers(sink)
        finally:
            sink.controller.stop()
    else:
        result = submissions(same_key=(name == "same_key"))
    result["audit_ok"] = audit_ok()
    print(json.dumps(result))


def run_on_sqlite_file(name: str) -> dict[str, Any]:
    """Run scenario ``name`` in a subprocess on a new migrated SQLite file; return its JSON
    result."""
    import subprocess

    from tests.conftest import REPO_ROOT
    from tests.migrated import sqlite_database

    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "DATABASE_URL": sqlite_database(Path(folder) / "race.sqlite3"),
            "VERTEBRA_DATA_DIR": folder,
            "DJANGO_SETTINGS_MODULE": "vertebra.settings",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
            "LOG_LEVEL": "WARNING",
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.followup.races", name],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=240,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    _main(sys.argv[1])
