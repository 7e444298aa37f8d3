"""Target 3: kill -9 of the whole server, at random moments, during questionnaire submissions.

CI runs 200 submissions with 10 kills on each database. A bigger run by hand::

    RELIABILITY_SUBMISSIONS=1000 RELIABILITY_KILLS=20 python -m pytest tests/reliability/test_kill9.py -s

(or ``python -m tests.reliability.kill9 --submissions 1000 --kills 20``; see kill9.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.harness import ServedDatabase
from tests.reliability.kill9 import run_kill9, summary

pytestmark = pytest.mark.slow

SUBMISSIONS = int(os.environ.get("RELIABILITY_SUBMISSIONS", "200"))
KILLS = int(os.environ.get("RELIABILITY_KILLS", "10"))


def test_every_acknowledged_submission_survives_kill_9(
    served_db: ServedDatabase, tmp_path: Path
) -> None:
    run, found = run_kill9(served_db, tmp_path, submissions=SUBMISSIONS, kills=KILLS)
    print(f"\n{served_db.vendor}\n{summary(run, found)}")
    assert run.killer_error == ""
    # The server really died at least KILLS times, under load, and came back each time.
    assert len(run.kills) == KILLS
    assert len(run.restart_seconds) == KILLS
    assert run.cut_in_flight >= 1, "no kill landed on a request in flight"
    # Every patient got an acknowledgement in the end; none was refused or got a 5xx.
    assert run.refusals == [] and run.server_errors == []
    assert found["acknowledged"] == found["distinct_acknowledged"] == SUBMISSIONS
    # Every acknowledged submission is stored, byte-identical, complete, with its audit row.
    assert found["lost"] == []
    assert found["answers_differ"] == []
    assert found["partial"] == []
    assert found["missing_audit"] == [] and found["audit_differs"] == []
    assert found["stored"] == SUBMISSIONS  # one per time point: no duplicate, no stray
    assert found["unacknowledged_stored"] == 0
    assert found["completed_without_submission"] == 0
    assert found["audit_chain_problems"] == []
    integrity = found["integrity"]
    if served_db.vendor == "sqlite":
        assert integrity == {"integrity_check": ["ok"], "foreign_key_check": []}
    else:
        assert integrity["btree_indexes_checked"] > 20
        assert integrity["heap_corruption"] == []
