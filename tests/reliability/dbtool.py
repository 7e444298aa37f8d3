"""Django-side helper of the reliability tests, run as a subprocess on the served database.

    python -m tests.reliability.dbtool seed --count N --seed S --out PLAN.json
    python -m tests.reliability.dbtool verify --plan PLAN.json --acks ACKS.json
    python -m tests.reliability.dbtool pragmas

Each command prints one JSON line. ``seed`` arranges patients whose baseline questionnaire is
open, each with a browser session that has answered every page (random answers from a seeded
generator) and reached the send page, so the tests can spend their time on the submissions.
``verify`` checks the acknowledgements against the database (see :func:`verify`).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any


def _canonical(value: Any) -> str:
    """JSON text with sorted keys and no spaces: two values are identical iff these are."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _random_draft(instrument_id: str, rng: random.Random) -> dict[str, str]:
    """A complete, valid page of answers as the browser posts them (text per item)."""
    from vertebra.core.instruments import get_definition
    from vertebra.followup.forms import draft_is_complete, skippable

    definition = get_definition(instrument_id)
    draft: dict[str, str] = {}
    for item in definition.items:
        if item.type == "number" or item.optional:
            continue
        if item.id in skippable(instrument_id) and rng.random() < 0.2:
            continue  # a skippable item left blank now and then (ODI section 8)
        draft[item.id] = str(rng.choice(item.options).code)
    if instrument_id == "opioid_use" and draft.get("current_use") == "1":
        opioid = next(item for item in definition.items if item.id == "opioid")
        draft["opioid"] = str(rng.choice([o.code for o in opioid.options if o.code != "other"]))
        draft["daily_dose"] = str(rng.choice([5, 10, 20, 30, 60]))
    if instrument_id == "psfs":  # a first PSFS: the rated activity is named on the same page
        draft["name_1"] = "Walking for 30 minutes"
    assert draft_is_complete(instrument_id, draft), (instrument_id, draft)
    return draft


def seed(count: int, seed_value: int) -> dict[str, Any]:
    """``count`` patients treated today, each with a session ready to send its baseline."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from vertebra.followup.forms import parse_draft
    from vertebra.followup.models import FollowUpTimePoint
    from vertebra.followup.services import create_schedule_for_episode
    from vertebra.registry.models import Clinic, Membership, Patient, Role, TreatmentEpisode
    from vertebra.registry.permissions import Actor
    from vertebra.registry.services import issue_api_token

    rng = random.Random(seed_value)
    today = timezone.localdate()
    stamp = f"{time.time_ns()}"
    clinic = Clinic.objects.create(name=f"Reliability clinic {stamp}")
    actors = {}
    for role in (Role.COORDINATOR, Role.CLINICIAN):
        user = User.objects.create(username=f"rel-{role}-{stamp}")
        Membership.objects.create(user=user, clinic=clinic, role=role)
        actors[role] = Actor.for_user(user, role)
    _, token = issue_api_token(actor=actors[Role.CLINICIAN], name="reliability")
    items = []
    for i in range(count):
        patient = Patient.objects.create(
            clinic=clinic,
            mrn=f"R{stamp[-9:]}{i:06d}",
            given_name="Reliability",
            family_name=f"Patient {i}",
            date_of_birth=today.replace(year=today.year - 50),
            sex="unknown",
            email=f"rel{i}@example.org",
        )
        episode = TreatmentEpisode.objects.create(
            patient=patient, arm="cell_therapy", start_date=today
        )
        schedule = create_schedule_for_episode(episode, actors[Role.COORDINATOR], today)
        point = FollowUpTimePoint.objects.get(schedule=schedule, key="baseline")
        drafts = {instrument: _random_draft(instrument, rng) for instrument in point.instruments}
        key = secrets.token_urlsafe(24)
        session = SessionStore()
        session["fu"] = {"tp": str(point.public_id), "patient": point.patient_id}
        session["fu_drafts"] = {str(point.public_id): drafts}
        session["fu_keys"] = {str(point.public_id): key}
        session.create()
        items.append(
            {
                "tp": point.pk,
                "session": session.session_key,
                "csrf": get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS),
                "key": key,
                "instruments": list(point.instruments),
                "answers": {i: parse_draft(i, d) for i, d in drafts.items()},
            }
        )
    return {"clinic": clinic.pk, "token": token, "items": items}


def _integrity() -> dict[str, Any]:
    """The database's own consistency checks.

    SQLite: ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``. PostgreSQL: amcheck's
    ``bt_index_check`` (with ``heapallindexed``) on every B-tree index of the schema and
    ``verify_heapam`` on every table; both read every page.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA integrity_check")
            integrity = [row[0] for row in cursor.fetchall()]
            cursor.execute("PRAGMA foreign_key_check")
            return {"integrity_check": integrity, "foreign_key_check": cursor.fetchall()}
        cursor.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        cursor.execute(
            """SELECT count(*) FROM (
                 SELECT bt_index_check(c.oid, true) FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = c.relam
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE am.amname = 'btree' AND n.nspname = 'public'
                   AND i.indisvalid AND i.indisready) checked"""
        )
        indexes = cursor.fetchone()[0]
        cursor.execute(
            """SELECT c.relname, v.msg FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN LATERAL verify_heapam(c.oid) v
               WHERE c.relkind = 'r' AND n.nspname = 'public'"""
        )
        return {"btree_indexes_checked": indexes, "heap_corruption": cursor.fetchall()}


def verify(plan: dict[str, Any], acks: list[dict[str, Any]]) -> dict[str, Any]:
    """Check every acknowledgement against the database, and the database itself.

    An ack is ``{"tp", "ref", "aborted_at": [unix times of requests cut in flight]}``. Found:

    * ``lost``: acknowledged references with no stored submission for that time point and key;
    * ``answers_differ``: stored answers not identical (canonical JSON) to what was sent;
    * ``partial``: stored submissions (any, not only acknowledged) whose response count is not
      their time point's instrument count;
    * ``missing_audit`` / ``audit_differs``: acknowledged submissions without their audit row,
      or whose audit row records other answers or another reference;
    * ``unacknowledged_stored``: planned time points stored but never acknowledged;
    * ``committed_but_unanswered``: acknowledged submissions stored by a request that was cut
      before it could answer (its row is older than the cut), answered later by a replay;
    * the audit chain (``verify_audit_chain``) and the database checks of :func:`_integrity`.
    """
    from django.db.models import Count

    from vertebra.followup.models import FollowUpTimePoint, Submission
    from vertebra.registry.audit import verify_audit_chain
    from vertebra.registry.models import AuditEvent

    items = {item["tp"]: item for item in plan["items"]}
    stored = {
        s.time_point_id: s
        for s in Submission.objects.filter(time_point_id__in=items).prefetch_related("responses")
    }
    audits = {
        row.object_id: row.new_values
        for row in AuditEvent.objects.filter(
            object_type="followup_submission", object_id__in=[str(s.pk) for s in stored.values()]
        )
    }
    found: dict[str, Any] = {
        "acknowledged": len(acks),
        "distinct_acknowledged": len({a["tp"] for a in acks}),
        "lost": [],
        "answers_differ": [],
        "missing_audit": [],
        "audit_differs": [],
        "committed_but_unanswered": 0,
    }
    for ack in acks:
        item, submission = items[ack["tp"]], stored.get(ack["tp"])
        if (
            submission is None
            or submission.reference != ack["ref"]
            or submission.idempotency_key != item["key"]
        ):
            found["lost"].append(ack["ref"])
            continue
        answers = {r.instrument_id: r.answers for r in submission.responses.all()}
        if _canonical(answers) != _canonical(item["answers"]):
            found["answers_differ"].append(ack["ref"])
        audit = audits.get(str(submission.pk))
        if audit is None:
            found["missing_audit"].append(ack["ref"])
        elif audit.get("reference") != ack["ref"] or _canonical(
            {i: r["answers"] for i, r in audit["responses"].items()}
        ) != _canonical(item["answers"]):
            found["audit_differs"].append(ack["ref"])
        if any(submission.submitted_at.timestamp() < cut for cut in ack.get("aborted_at", [])):
            found["committed_but_unanswered"] += 1
    acked = {a["tp"] for a in acks}
    found["unacknowledged_stored"] = len(set(stored) - acked)
    found["stored"] = len(stored)
    instruments = dict(FollowUpTimePoint.objects.values_list("pk", "instruments"))
    found["partial"] = [
        s.reference
        for s in Submission.objects.annotate(n=Count("responses"))
        if s.n != len(instruments[s.time_point_id])
    ]
    found["completed_without_submission"] = (
        FollowUpTimePoint.objects.filter(status="completed", submission__isnull=True)
        .values("pk")
        .count()
    )
    found["audit_chain_problems"] = [p.message for p in verify_audit_chain()]
    found["integrity"] = _integrity()
    return found


def pragmas() -> dict[str, Any]:
    """The settings of a connection the app opens (SQLite pragmas, PostgreSQL settings)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            values = {}
            for name in names:
                cursor.execute(f"PRAGMA {name}")
                values[name] = cursor.fetchone()[0]
            return values
        values = {}
        for name in ("fsync", "synchronous_commit", "full_page_writes", "lock_timeout"):
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
        values["connect_timeout"] = connection.connection.info.get_parameters().get(
            "connect_timeout"
        )
        return values


def main(argv: list[str]) -> None:
    """Parse the command line, set Django up on DATABASE_URL, run one command."""
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.dbtool")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pragmas")
    seeding = sub.add_parser("seed")
    seeding.add_argument("--count", type=int, required=True)
    seeding.add_argument("--seed", type=int, default=1)
    seeding.add_argument("--out", type=Path, required=True)
    checking = sub.add_parser("verify")
    checking.add_argument("--plan", type=Path, required=True)
    checking.add_argument("--acks", type=Path, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    result: Any
    if args.command == "seed":
        plan = seed(args.count, args.seed)
        args.out.write_text(json.dumps(plan), encoding="utf-8")
        result = {"items": len(plan["items"])}
    elif args.command == "verify":
        plan = json.loads(args.plan.read_text(encoding="utf-8"))
        result = verify(plan, json.loads(args.acks.read_text(encoding="utf-8")))
    else:
        result = pragmas()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
