"""How many SQL statements each portal request costs, pinned (issue 17 "Submissions in
parallel": the submit's server time is mostly its round trips to the database, ADR 0021 §7).

Counted with Django's ``CaptureQueriesContext`` around the test client's request, the whole
middleware stack included (session load and save), in a transactional test so that every
statement is what production sends (BEGIN and COMMIT included). The audit sealer runs once the
response has gone out (the client's ``close()``): counted apart. A change that adds a statement
to a request fails here: make it cost nothing, or raise the figure with a reason.
"""

from __future__ import annotations

import re

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.followup.helpers import ANSWERS, make_schedule, point
from vertebra.followup.models import QuestionnaireResponse, Submission, TimePointStatus
from vertebra.followup.screens import plan
from vertebra.followup.services import issue_link
from vertebra.registry import audit
from vertebra.registry.models import AuditEvent, AuditSeal

#: Statements of the submit until its response. PostgreSQL: session load; the point with its
#: PSFS names; BEGIN; patient and point locked, with what may have changed re-read (one round
#: trip); PSFS names; submission; responses (one INSERT); point completed; links, reminders and
#: call list (one round trip); audit rows (one INSERT); COMMIT; session save (the drafts
#: dropped, one UPDATE). SQLite: BEGIN IMMEDIATE and the point read (no row locks: one writer
#: at a time), three follow-on UPDATEs, and the seal chain's head read and its INSERT in the
#: transaction.
SUBMIT = {"postgresql": 12, "sqlite": 16}
#: The sealer after the response (PostgreSQL: BEGIN, lock + head + unsealed rows in one
#: query, the seals' INSERT, COMMIT); SQLite sealed in the writer's transaction.
SEALER = {"postgresql": 4, "sqlite": 0}
#: A page POST: session load, the point, session save (the draft).
PAGE_POST = 3
#: A page GET of an unchanged session saved less than a minute ago: session load, the point.
PAGE_GET = 2
#: The review page: session load, the point, session save (the idempotency key is made).
REVIEW = 3
#: A replay of the submit (drafts gone): session load, the point, the earlier submission.
REPLAY = 3


def _count(call, *args):
    """The response, and the statements until it (those of the sealer after it apart)."""
    with CaptureQueriesContext(connection) as captured:
        sealer_from: list[int] = []
        original = audit._seal_now

        def marked() -> None:
            sealer_from.append(len(captured.captured_queries))
            original()

        audit._seal_now = marked
        try:
            response = call(*args)
        finally:
            audit._seal_now = original
    sql = [q["sql"] for q in captured.captured_queries]
    until = sealer_from[0] if sealer_from else len(sql)
    _count.sealer = sql[until:]  # type: ignore[attr-defined]
    return response, sql[:until]


def test_each_portal_request_costs_its_pinned_statements(flushable_audit: None) -> None:
    today = timezone.localdate()
    tp = point(make_schedule(start=today, today=today), "baseline")
    client = Client()
    assert client.get(f"/p/open/?t={issue_link(tp, timezone.now())}").status_code == 302
    client.get("/p/q/1/")  # the first GET after the link writes the new session once
    response, page_get = _count(client.get, "/p/q/1/")
    assert response.status_code == 200
    assert len(page_get) == PAGE_GET, page_get
    posts = []
    for screen in plan(tp.instruments):
        data = {k: str(v) for k, v in ANSWERS[screen.instrument_id].items() if k in screen.item_ids}
        response, sql = _count(client.post, f"/p/q/{screen.number}/", data)
        assert response.status_code == 302, screen
        posts.append(len(sql))
    assert set(posts) == {PAGE_POST}, posts
    response, review = _count(client.get, "/p/q/review/")
    assert len(review) == REVIEW, review
    key = re.search(r'name="idempotency_key" value="([^"]+)"', response.content.decode())
    assert key is not None
    response, submit = _count(client.post, "/p/q/submit/", {"idempotency_key": key.group(1)})
    assert response.status_code == 303
    assert len(submit) == SUBMIT[connection.vendor], "  ||  ".join(s[:60] for s in submit)
    assert len(_count.sealer) == SEALER[connection.vendor], _count.sealer  # type: ignore[attr-defined]
    assert AuditSeal.objects.count() == AuditEvent.objects.count()  # all sealed, none waits
    stored = Submission.objects.get(time_point=tp)
    assert QuestionnaireResponse.objects.filter(submission=stored).count() == len(tp.instruments)
    tp.refresh_from_db()
    assert tp.status == TimePointStatus.COMPLETED
    replayed, replay = _count(client.post, "/p/q/submit/", {"idempotency_key": key.group(1)})
    assert replayed["Location"] == response["Location"]
    assert len(replay) == REPLAY, replay
