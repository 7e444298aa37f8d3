"""Submission: scored and versioned, exactly once, cancels reminders, escalates ticklers."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from vertebra.followup.errors import (
    AlreadyCompleted,
    BadIdempotencyKey,
    SubmissionInvalid,
    WindowNotOpen,
)
from vertebra.followup.models import (
    CallListEntry,
    QuestionnaireResponse,
    Reminder,
    ReminderStatus,
    Submission,
    TicklerEscalation,
    TimePointStatus,
)
from vertebra.followup.services import issue_link, submit_responses
from vertebra.followup.worker import open_windows
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import AdverseEvent, AuditEvent

pytestmark = pytest.mark.django_db

KEY = "key-0123456789abcdef"


@pytest.fixture
def week_6():
    schedule = make_schedule(start=T0, today=T0)
    tp = point(schedule, "week_6")
    open_windows(at(tp.opens))
    tp.refresh_from_db()
    return tp


def test_responses_are_scored_with_instrument_version(week_6) -> None:
    result = submit_responses(
        week_6, answers_for(week_6), KEY, at(week_6.opens), psfs_names=PSFS_NAMES
    )
    assert result.created
    odi = QuestionnaireResponse.objects.get(time_point=week_6, instrument_id="odi")
    assert (odi.instrument_version, odi.score, odi.band) == ("2.1a", 40.0, "moderate")
    nrs = QuestionnaireResponse.objects.get(time_point=week_6, instrument_id="nrs_back")
    assert nrs.score == 6 and nrs.answers == {"pain_back": 6}
    assert QuestionnaireResponse.objects.filter(time_point=week_6).count() == 11
    week_6.refresh_from_db()
    assert week_6.status == TimePointStatus.COMPLETED and week_6.completed_at is not None
    assert verify_audit_chain() == []
    row = AuditEvent.objects.get(object_type="followup_submission")
    assert row.actor_username == f"patient:{week_6.patient_id}" and row.actor_user_id is None


def test_same_key_returns_the_same_submission(week_6) -> None:
    first = submit_responses(
        week_6, answers_for(week_6), KEY, at(week_6.opens), psfs_names=PSFS_NAMES
    )
    again = submit_responses(week_6, {}, KEY, at(week_6.opens, 10), psfs_names=PSFS_NAMES)
    assert not again.created
    assert again.submission.pk == first.submission.pk
    assert again.submission.reference == first.submission.reference
    assert Submission.objects.count() == 1
    assert QuestionnaireResponse.objects.count() == 11


def test_a_different_submission_for_a_completed_point_is_refused(week_6) -> None:
    submit_responses(week_6, answers_for(week_6), KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    with pytest.raises(AlreadyCompleted, match="already answered"):
        submit_responses(
            week_6,
            answers_for(week_6),
            "another-key-0123456789",
            at(week_6.opens),
            psfs_names=PSFS_NAMES,
        )
    assert Submission.objects.count() == 1


def test_completion_cancels_pending_reminders_in_the_same_transaction(week_6) -> None:
    assert Reminder.objects.filter(time_point=week_6, status=ReminderStatus.SCHEDULED).count() == 3
    issue_link(week_6, at(week_6.opens))
    submit_responses(week_6, answers_for(week_6), KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    assert not Reminder.objects.filter(time_point=week_6, status=ReminderStatus.SCHEDULED).exists()
    assert week_6.links.filter(used_at__isnull=True).count() == 0


def test_invalid_or_missing_answers_store_nothing(week_6) -> None:
    bad = answers_for(week_6, nrs_back={"pain_back": 11})
    with pytest.raises(SubmissionInvalid) as info:
        submit_responses(week_6, bad, KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    assert "nrs_back" in info.value.errors
    partial = answers_for(week_6)
    del partial["odi"]
    with pytest.raises(SubmissionInvalid) as info:
        submit_responses(week_6, partial, KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    assert "odi" in info.value.errors
    assert Submission.objects.count() == 0


def test_bad_key_and_closed_window_are_refused(week_6) -> None:
    with pytest.raises(BadIdempotencyKey):
        submit_responses(
            week_6, answers_for(week_6), "short", at(week_6.opens), psfs_names=PSFS_NAMES
        )
    late = at(week_6.closes + dt.timedelta(days=1))
    with pytest.raises(WindowNotOpen):
        submit_responses(week_6, answers_for(week_6), KEY, late, psfs_names=PSFS_NAMES)
    assert Submission.objects.count() == 0


def test_tickler_yes_creates_pending_adverse_events_and_urgent_call(week_6) -> None:
    answers = answers_for(
        week_6, ae_tickler={"new_harvest_site_pain": 1, "new_leg_weakness_or_numbness": 1}
    )
    submit_responses(week_6, answers, KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    events = AdverseEvent.objects.filter(patient=week_6.patient).order_by("pk")
    assert [e.status for e in events] == ["pending", "pending"]
    assert [e.category for e in events] == ["harvest_site", "neurological"]
    assert all(e.ctcae_grade is None and e.relatedness == "" for e in events)
    # the events carry their patient's clinic, as the time point does (ADR 0023 §12)
    assert {e.clinic_id for e in events} == {week_6.clinic_id} == {week_6.patient.clinic_id}
    assert TicklerEscalation.objects.filter(urgent=True).count() == 1
    call = CallListEntry.objects.get(time_point=week_6)
    assert call.reason == CallListEntry.Reason.URGENT_TICKLER and call.resolved_at is None
    assert AuditEvent.objects.filter(object_type="adverseevent", action="create").count() == 2


def test_tickler_all_no_creates_nothing(week_6) -> None:
    submit_responses(week_6, answers_for(week_6), KEY, at(week_6.opens), psfs_names=PSFS_NAMES)
    assert not AdverseEvent.objects.exists()
    assert not CallListEntry.objects.exists()
