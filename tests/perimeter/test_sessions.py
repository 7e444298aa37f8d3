"""The session engine (``vertebra.perimeter.sessions``): one statement per save, and an
unchanged session written at most once per refresh interval (ADR 0021 §7)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from vertebra.perimeter.sessions import SessionStore


def _stored(key: str) -> Session:
    return Session.objects.get(session_key=key)


def _new_session() -> str:
    store = SessionStore()
    store["fu"] = {"tp": "x", "patient": 1}
    store.create()
    store.save()
    return str(store.session_key)


def test_a_changed_session_is_saved_in_one_statement(flushable_audit: None) -> None:
    key = _new_session()
    store = SessionStore(key)
    assert store["fu"] == {"tp": "x", "patient": 1}
    store["fu_drafts"] = {"x": {"odi": {"pain": "2"}}}
    with CaptureQueriesContext(connection) as captured:
        store.save()
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["UPDATE"]
    assert SessionStore(key)["fu_drafts"] == {"x": {"odi": {"pain": "2"}}}


def test_an_unchanged_session_is_not_written_within_the_interval(flushable_audit: None) -> None:
    key = _new_session()
    before = _stored(key).expire_date
    store = SessionStore(key)
    assert store["fu"] == {"tp": "x", "patient": 1}  # read, as a request does
    with CaptureQueriesContext(connection) as captured:
        store.save()
    assert captured.captured_queries == []
    assert _stored(key).expire_date == before


def test_an_unchanged_session_is_refreshed_after_the_interval(
    flushable_audit: None, settings: pytest.FixtureRequest
) -> None:
    key = _new_session()
    # stored 90 s ago: its expiry is 90 s short of a full age
    old = timezone.now() + dt.timedelta(seconds=settings.SESSION_COOKIE_AGE - 90)
    Session.objects.filter(session_key=key).update(expire_date=old)
    store = SessionStore(key)  # not read during the request: the save reads it first
    with CaptureQueriesContext(connection) as captured:
        store.save()
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT", "UPDATE"]
    refreshed = _stored(key).expire_date
    assert refreshed - old > dt.timedelta(seconds=80)
    assert store["fu"] == {"tp": "x", "patient": 1}


def test_a_session_deleted_meanwhile_is_not_recreated(flushable_audit: None) -> None:
    key = _new_session()
    store = SessionStore(key)
    store["fu_drafts"] = {}
    Session.objects.filter(session_key=key).delete()  # signed out in another tab
    with pytest.raises(UpdateError):
        store.save()
    assert not Session.objects.filter(session_key=key).exists()


@pytest.mark.django_db
def test_inside_a_transaction_the_save_is_djangos_own() -> None:
    key = _new_session()
    store = SessionStore(key)
    store["fu_keys"] = {"x": "k" * 20}
    store.save()  # the test's transaction: a savepoint around the UPDATE, as in Django
    assert SessionStore(key)["fu_keys"] == {"x": "k" * 20}


def test_a_new_session_is_one_insert(flushable_audit: None) -> None:
    store = SessionStore()
    store["fu"] = {"tp": "y", "patient": 2}
    with CaptureQueriesContext(connection) as captured:
        store.save()  # no key yet: create()
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["INSERT"]
    assert SessionStore(store.session_key)["fu"] == {"tp": "y", "patient": 2}


def test_a_taken_key_is_drawn_again(flushable_audit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = _new_session()
    drawn = iter([taken, "z" * 32])
    monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(drawn))
    store = SessionStore()
    store["fu"] = {"tp": "new", "patient": 3}
    store.create()
    assert store.session_key == "z" * 32
    assert SessionStore(taken)["fu"] == {"tp": "x", "patient": 1}  # the taken one untouched
    assert Session.objects.filter(session_key="z" * 32).exists()
