"""Shared helpers for follow-up tests: arranging schedules, an SMTP sink, audit-trigger care."""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import free_port
from tests.registry.factories import make_actor, make_clinic, make_episode, make_patient
from vertebra.core.instruments import get_definition
from vertebra.followup.models import FollowUpSchedule, FollowUpTimePoint
from vertebra.followup.services import create_schedule_for_episode
from vertebra.registry.models import Role

_triggers = importlib.import_module("vertebra.registry.migrations.0002_audit_append_only")

#: Treatment date used by most tests; the baseline window is the 30 days up to it.
T0 = dt.date(2025, 1, 15)


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    """An aware datetime on ``day`` at ``hour`` in the project time zone."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def make_schedule(
    *, start: dt.date = T0, today: dt.date | None = None, clinic: Any = None, **patient: Any
) -> FollowUpSchedule:
    """A patient with an episode starting ``start`` and its schedule, created on ``today``."""
    clinic = clinic or make_clinic()
    person = make_patient(clinic, **patient)
    episode = make_episode(person, start_date=start)
    actor = make_actor(Role.COORDINATOR, clinic)
    return create_schedule_for_episode(episode, actor, today or start)


def point(schedule: FollowUpSchedule, key: str) -> FollowUpTimePoint:
    return FollowUpTimePoint.objects.get(schedule=schedule, key=key)


#: A complete, valid answer set for every instrument (typed answers, as the service takes them).
ANSWERS: dict[str, dict[str, Any]] = {
    "nrs_back": {"pain_back": 6},
    "nrs_leg": {"pain_leg": 3},
    "odi": {
        k: 2
        for k in (
            "pain_intensity",
            "personal_care",
            "lifting",
            "walking",
            "sitting",
            "standing",
            "sleeping",
            "sex_life",
            "social_life",
            "travelling",
        )
    },
    "promis_pf_4a": {f"pf4a_{i}": 3 for i in range(1, 5)},
    "promis_pi_4a": {f"pi4a_{i}": 2 for i in range(1, 5)},
    "startback": dict.fromkeys(get_definition("startback").item_ids, 0),
    "opioid_use": {"current_use": 0},
    "work_status": {"status": 1},
    # The PSFS screen's posts: at a first PSFS the names go with the ratings; answers_for()
    # leaves the names out (the service takes them as psfs_names=PSFS_NAMES).
    "psfs": {
        "name_1": "Walking for 30 minutes",
        "activity_1": 4,
        "name_2": "Lifting a bag",
        "activity_2": 6,
    },
    "global_rating_of_change": {"change": 2},
    "satisfaction": {"satisfaction": 4},
    "ae_tickler": {
        k: 0
        for k in (
            "new_harvest_site_pain",
            "fever_or_infection_signs",
            "new_leg_weakness_or_numbness",
            "new_bladder_or_bowel_problem",
            "hospital_or_er_visit",
            "other_new_problem",
        )
    },
}


#: The PSFS activities named in ANSWERS["psfs"], as the service takes them.
PSFS_NAMES = ("Walking for 30 minutes", "Lifting a bag")


def answers_for(tp: FollowUpTimePoint, **override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Valid answers for every instrument of ``tp``, with per-instrument overrides (the PSFS
    ratings without the activity names: pass ``psfs_names=PSFS_NAMES`` to the service)."""
    out = {
        i: {k: v for k, v in ANSWERS[i].items() if not k.startswith("name_")}
        for i in tp.instruments
    }
    for instrument, values in override.items():
        out[instrument] = {**out[instrument], **values}
    return out


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"

    def settings(self) -> dict[str, Any]:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "EMAIL_TIMEOUT": 10,
        }

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp_sink(settings: Any) -> Iterator[SmtpSink]:
    """Start an SMTP sink and point Django's SMTP backend at it for one test."""
    sink = SmtpSink()
    sink.controller.start()
    for name, value in sink.settings().items():
        setattr(settings, name, value)
    try:
        yield sink
    finally:
        sink.controller.stop()


def body_text(message: Message) -> str:
    """The text/plain part of an e-mail."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/plain part")


# --- transactional tests on SQLite --------------------------------------------------------------
# Django flushes the database after a transactional test with DELETE, which the append-only audit
# triggers refuse on SQLite. These two fixtures drop the SQLite triggers just before the flush and
# put them back once the module is done (PostgreSQL flushes with TRUNCATE: tests/conftest.py
# disables the truncate guard around that flush).


def _run(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


@pytest.fixture(scope="module")
def audit_triggers_restored(django_db_blocker: Any) -> Iterator[None]:
    """Re-create the SQLite audit triggers after the module's flushes."""
    yield
    if connection.vendor == "sqlite":
        with django_db_blocker.unblock():
            _run(_triggers.SQLITE_DROP + _triggers.SQLITE_CREATE)


@pytest.fixture
def flushable_audit(audit_triggers_restored: None, transactional_db: None) -> Iterator[None]:
    """Use in transactional tests: lets Django's flush empty the audit table on SQLite."""
    if connection.vendor == "sqlite":
        _run(_triggers.SQLITE_DROP + _triggers.SQLITE_CREATE)
    yield
    if connection.vendor == "sqlite":
        _run(_triggers.SQLITE_DROP)
