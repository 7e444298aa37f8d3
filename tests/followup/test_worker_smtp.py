"""The worker against a real SMTP server (aiosmtpd on loopback), driven by a simulated clock."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.followup.helpers import (
    PSFS_NAMES,
    T0,
    SmtpSink,
    answers_for,
    at,
    body_text,
    make_schedule,
    point,
)
from vertebra.followup.errors import LinkReplaced
from vertebra.followup.models import CallListEntry, Reminder, ReminderStatus, TimePointStatus
from vertebra.followup.services import open_link, submit_responses
from vertebra.followup.worker import run_once
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import AuditEvent

pytestmark = pytest.mark.django_db

EMAIL = "pat@example.org"


def _days(tp, n: int, hour: int = 9) -> dt.datetime:
    return at(tp.opens + dt.timedelta(days=n), hour)


def _token(message) -> str:
    match = re.search(r"/p/open/\?t=([A-Za-z0-9_-]+)", body_text(message))
    assert match
    return match.group(1)


def test_invitation_and_reminders_arrive_on_the_ladder_days(smtp_sink: SmtpSink) -> None:
    schedule = make_schedule(start=T0, today=T0 - dt.timedelta(days=60), email=EMAIL)
    baseline = point(schedule, "baseline")
    week_6 = point(schedule, "week_6")
    run_once(at(T0 - dt.timedelta(days=31)))  # before the baseline window: nothing
    assert smtp_sink.messages == []
    sent_on: list[dt.date] = []
    day = baseline.opens
    while day <= baseline.closes:
        before = len(smtp_sink.to(EMAIL))
        run_once(at(day, 9))
        run_once(at(day, 15))  # a second pass the same day sends nothing new
        if len(smtp_sink.to(EMAIL)) > before:
            sent_on.append(day)
        day += dt.timedelta(days=1)
    assert sent_on == [baseline.opens + dt.timedelta(days=d) for d in (0, 3, 7)]
    messages = smtp_sink.to(EMAIL)
    assert [m["Subject"] for m in messages] == [
        "Your Baseline back-pain questionnaire",
        "Reminder: your Baseline back-pain questionnaire",
        "Reminder: your Baseline back-pain questionnaire",
    ]
    assert all(m.is_multipart() for m in messages)  # text and HTML
    assert {p.get_content_type() for p in messages[0].walk()} >= {"text/plain", "text/html"}
    # Each e-mail carries its own fresh link, which opens the baseline questionnaire.
    tokens = [_token(m) for m in messages]
    assert len(set(tokens)) == 3
    # One live link per time point: each e-mail's link replaces the one before.
    assert open_link(tokens[-1], at(baseline.opens, 10)).pk == baseline.pk
    for old in tokens[:-1]:
        with pytest.raises(LinkReplaced):
            open_link(old, at(baseline.opens, 10))
    # The window closes unanswered: the patient goes on the call list, no more e-mails.
    run_once(at(baseline.closes + dt.timedelta(days=1)))
    baseline.refresh_from_db()
    assert baseline.status == TimePointStatus.MISSED
    # (Already on the call list 3 days after the last reminder; the close does not add twice.)
    entry = CallListEntry.objects.get(time_point=baseline)
    assert entry.reason == "no_response"
    assert entry.created_at.date() == baseline.opens + dt.timedelta(days=7 + 3)
    assert week_6.status == TimePointStatus.PENDING
    assert verify_audit_chain() == []
    # Tokens never reach the audit trail.
    trail = repr(list(AuditEvent.objects.values()))
    assert not any(token in trail for token in tokens)


def test_reminders_stop_the_moment_the_questionnaire_is_completed(smtp_sink: SmtpSink) -> None:
    schedule = make_schedule(start=T0, today=T0, email=EMAIL)
    week_6 = point(schedule, "week_6")
    run_once(_days(week_6, 0))
    assert len(smtp_sink.to(EMAIL)) == 1
    week_6.refresh_from_db()
    submit_responses(week_6, answers_for(week_6), "k" * 20, _days(week_6, 1), psfs_names=PSFS_NAMES)
    for n in range(1, 30):
        run_once(_days(week_6, n))
    assert len(smtp_sink.to(EMAIL)) == 1
    statuses = dict(Reminder.objects.filter(time_point=week_6).values_list("step", "status"))
    assert statuses == {"day0": "sent", "day3": "cancelled", "day7": "cancelled"}
    assert not CallListEntry.objects.filter(time_point=week_6).exists()


def test_no_answer_after_the_last_reminder_goes_on_the_call_list(
    smtp_sink: SmtpSink, settings
) -> None:
    settings.FOLLOWUP_CALL_AFTER_LAST_DAYS = 2
    schedule = make_schedule(start=T0, today=T0, email=EMAIL)
    week_6 = point(schedule, "week_6")  # window of 29 days: all three steps fit
    for n in range(0, 10):
        run_once(_days(week_6, n))
    assert len(smtp_sink.to(EMAIL)) == 3
    entry = CallListEntry.objects.get(time_point=week_6)
    assert entry.reason == "no_response"
    assert entry.created_at.date() == (week_6.opens + dt.timedelta(days=9))


def test_custom_ladder_and_steps_past_the_close_are_skipped(smtp_sink: SmtpSink, settings) -> None:
    settings.FOLLOWUP_REMINDER_LADDER = [0, 1, 100]
    schedule = make_schedule(start=T0, today=T0, email=EMAIL)
    week_6 = point(schedule, "week_6")
    for n in range(0, 40):
        run_once(_days(week_6, n))
    assert len(smtp_sink.to(EMAIL)) == 2
    assert set(Reminder.objects.filter(time_point=week_6).values_list("step", flat=True)) == {
        "day0",
        "day1",
    }


def test_smtp_down_retries_then_fails_without_duplicates(settings) -> None:
    from tests.conftest import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    schedule = make_schedule(start=T0, today=T0, email=EMAIL)
    week_6 = point(schedule, "week_6")
    report = run_once(_days(week_6, 0))
    assert report.sent == 0 and report.failed == 1
    invite = Reminder.objects.get(time_point=week_6, step="day0")
    assert invite.status == ReminderStatus.SCHEDULED and invite.attempts == 1
    assert "ConnectionRefusedError" in invite.last_error
    run_once(_days(week_6, 0, 10))
    run_once(_days(week_6, 0, 11))
    invite.refresh_from_db()
    assert invite.status == ReminderStatus.FAILED and invite.attempts == 3
