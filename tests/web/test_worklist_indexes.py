"""The clinician's home and the adjudication queue scope time points and adverse events by
the rows' own clinic, through the partial indexes of ``followup 0009`` and ``registry
0017`` (ADR 0023 §12), never by joining each row to its patient for the clinic.

At 1,000,000 patients the join walked every open time point / pending event of the registry
(0.1-0.3 s per statement, several per page). The test looks at the very SQL the selectors send:
no statement scopes these rows through ``registry_patient``, and on PostgreSQL the statements
can be answered from the partial indexes.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.web.worklist_world import FAST_HASHERS, World, build_world
from vertebra.registry import selectors
from vertebra.registry.models import Role
from vertebra.registry.permissions import Actor
from vertebra.web import worklist_selectors

pytestmark = pytest.mark.django_db

#: Tables whose rows carry their clinic, and the partial index each home read may use.
SCOPED = {
    '"followup_followuptimepoint"': "followup_tp_open_clinic",
    '"registry_adverseevent"': "adverse_event_pending_clinic",
}


@pytest.fixture
def world(settings: Any) -> World:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return build_world()


def _sent(world: World) -> list[str]:
    """The SQL of one clinician home and one queue read (the queue is also read by the home)."""
    clinician = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    today = timezone.localdate()
    with CaptureQueriesContext(connection) as sent:
        home = worklist_selectors.clinician_home(actor=clinician, today=today)
        selectors.adjudication_queue(actor=clinician, today=today)
    assert home.queue.total == 3 and home.followup.overdue == 1  # the world's day, as read
    return [q["sql"] for q in sent]


def test_home_and_queue_never_scope_these_rows_through_patients(world: World) -> None:
    # each part of a UNION on its own (pending sterility has no clinic of its own: it joins)
    parts = [part for sql in _sent(world) for part in sql.split(" UNION ALL ")]
    reads = [sql for sql in parts if any(f"FROM {table}" in sql for table in SCOPED)]
    assert reads
    for sql in reads:
        assert '"registry_patient"."clinic_id" IN' not in sql, sql
    scoped = [sql for sql in reads if '"clinic_id" IN' in sql]
    # the due list, the overdue count, the patients-due ids, the queue's ids and counts
    assert len(scoped) >= 6, reads


def _plan(sql: str) -> str:
    """PostgreSQL's plan for ``sql`` with whole-table plans forbidden (tiny tables: the test
    asks whether the index can answer, not whether the planner would prefer it here)."""
    with connection.cursor() as cursor:
        for plan in ("seqscan", "bitmapscan"):
            cursor.execute(f"SET LOCAL enable_{plan} = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(str(row[0]) for row in cursor.fetchall())


@pytest.mark.postgresql
def test_home_and_queue_reads_use_the_partial_indexes(world: World) -> None:
    reads = [sql for sql in _sent(world) if '"clinic_id" IN' in sql]
    used = {name for sql in reads for name in SCOPED.values() if name in _plan(sql)}
    assert used == set(SCOPED.values())
