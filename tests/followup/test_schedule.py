"""Schedules: created from the episode's date, statuses on `today`, rescheduling keeps answers."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.followup.helpers import ANSWERS, PSFS_NAMES, T0, answers_for, at, make_schedule, point
from tests.registry.factories import make_actor, make_clinic, make_episode, make_patient
from vertebra.followup.models import FollowUpTimePoint, Reminder, TimePointStatus
from vertebra.followup.services import (
    backfill_schedules,
    create_schedule_for_episode,
    reschedule,
    submit_responses,
)
from vertebra.followup.worker import open_windows
from vertebra.registry.errors import NotFound
from vertebra.registry.models import AuditEvent, Role

pytestmark = pytest.mark.django_db


def test_schedule_has_the_protocol_time_points_with_windows() -> None:
    schedule = make_schedule(start=T0, today=T0)
    points = list(schedule.time_points.order_by("opens"))
    assert [p.key for p in points] == [
        "baseline", "week_6", "month_3", "month_6", "month_12", "month_24",
    ]  # fmt: skip
    baseline, week_6 = points[0], points[1]
    assert (baseline.opens, baseline.closes) == (T0 - dt.timedelta(days=30), T0)
    assert week_6.target == T0 + dt.timedelta(weeks=6)
    assert baseline.status == TimePointStatus.OPEN
    assert all(p.status == TimePointStatus.PENDING for p in points[1:])
    assert "ae_tickler" not in baseline.instruments
    assert "ae_tickler" in week_6.instruments and "odi" in week_6.instruments
    assert (schedule.protocol_id, schedule.protocol_version) == ("default", "1.0")
    audit = AuditEvent.objects.get(object_type="followup_schedule")
    assert audit.action == "create" and audit.patient_id == schedule.episode.patient_id


def test_creating_twice_returns_the_same_schedule() -> None:
    schedule = make_schedule()
    actor = make_actor(Role.COORDINATOR, schedule.episode.patient.clinic)
    again = create_schedule_for_episode(schedule.episode, actor, T0)
    assert again.pk == schedule.pk
    assert FollowUpTimePoint.objects.filter(schedule=schedule).count() == 6


def test_staff_of_another_clinic_cannot_schedule() -> None:
    episode = make_episode(make_patient(make_clinic()))
    outsider = make_actor(Role.COORDINATOR, make_clinic())
    with pytest.raises(NotFound):
        create_schedule_for_episode(episode, outsider, T0)


def test_backfill_marks_closed_windows_missed_and_is_idempotent() -> None:
    make_episode(make_patient(make_clinic()), start_date=T0)
    today = T0 + dt.timedelta(days=200)
    assert len(backfill_schedules(today)) == 1
    assert backfill_schedules(today) == []
    statuses = dict(FollowUpTimePoint.objects.values_list("key", "status"))
    assert statuses["baseline"] == statuses["month_3"] == TimePointStatus.MISSED
    assert statuses["month_6"] == TimePointStatus.OPEN
    assert statuses["month_12"] == TimePointStatus.PENDING


def test_reschedule_moves_open_points_and_keeps_completed_ones() -> None:
    schedule = make_schedule(start=T0, today=T0)
    baseline = point(schedule, "baseline")
    submit_responses(baseline, answers_for(baseline), "k" * 20, at(T0), psfs_names=PSFS_NAMES)
    week_6 = point(schedule, "week_6")
    today = week_6.opens
    open_windows(at(today))
    assert Reminder.objects.filter(time_point=week_6).exists()
    old_opens = week_6.opens
    actor = make_actor(Role.COORDINATOR, schedule.episode.patient.clinic)
    new_date = T0 + dt.timedelta(days=10)
    reschedule(schedule.episode, new_date, actor, "injection was postponed", today)
    baseline.refresh_from_db()
    week_6.refresh_from_db()
    assert baseline.status == TimePointStatus.COMPLETED and baseline.closes == T0
    assert week_6.opens == old_opens + dt.timedelta(days=10)
    assert week_6.status == TimePointStatus.PENDING  # not open any more on `today`
    assert not Reminder.objects.filter(time_point=week_6, status="scheduled").exists()
    audit = AuditEvent.objects.filter(object_type="followup_schedule", action="update").get()
    assert audit.reason == "injection was postponed"


def test_reschedule_needs_a_reason() -> None:
    schedule = make_schedule()
    actor = make_actor(Role.COORDINATOR, schedule.episode.patient.clinic)
    with pytest.raises(ValueError, match="reason"):
        reschedule(schedule.episode, T0, actor, "  ", T0)


def test_answers_fixture_covers_every_instrument() -> None:
    schedule = make_schedule()
    assert set(point(schedule, "week_6").instruments) <= set(ANSWERS)


def test_opening_a_window_is_audited_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's opening of a window changes patient data: one audit row per time point
    (pending -> open, the patient named, so the analysis snapshot re-reads that patient), in
    batches; a second pass opens nothing and writes nothing."""
    from vertebra.followup import worker

    monkeypatch.setattr(worker, "OPEN_BATCH", 1)  # several transactions, one window each
    first = make_schedule(start=T0, today=T0)
    second = make_schedule(start=T0, today=T0)
    today = point(first, "week_6").opens
    assert open_windows(at(today))[0] == 2
    rows = AuditEvent.objects.filter(object_type="followup_time_point", reason="window opened")
    assert sorted(rows.values_list("patient_id", flat=True)) == sorted(
        [first.episode.patient_id, second.episode.patient_id]
    )
    for row in rows:
        assert (row.action, row.old_values, row.new_values) == (
            "update", {"status": "pending"}, {"status": "open"},
        )  # fmt: skip
        assert row.clinic_id == FollowUpTimePoint.objects.get(pk=int(row.object_id)).clinic_id
    assert point(first, "week_6").status == TimePointStatus.OPEN
    assert point(second, "month_3").status == TimePointStatus.PENDING  # not due yet
    assert open_windows(at(today))[0] == 0
    assert rows.count() == 2
