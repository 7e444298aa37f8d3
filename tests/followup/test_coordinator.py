"""The coordinator page: counts with an honest denominator, call list, tickler queue, scoping."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import PSFS_NAMES, answers_for, make_schedule, point
from tests.registry.factories import make_actor, make_clinic, make_user
from vertebra.followup.models import CallListEntry
from vertebra.followup.services import submit_responses
from vertebra.followup.worker import run_once
from vertebra.registry.models import AuditEvent, Role

pytestmark = pytest.mark.django_db


def test_staff_login_is_required(client: Client) -> None:
    response = client.get("/p/staff/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(make_user())  # signed in, but no clinic role
    assert client.get("/p/staff/").status_code == 404


def test_counts_call_list_and_tickler_queue_for_own_clinic_only(client: Client) -> None:
    today = timezone.localdate()
    clinic, other = make_clinic(), make_clinic()
    # Patient 1: baseline answered, with a red-flag tickler at... baseline has no tickler, so
    # patient 1 is a 6-week patient (treated 45 days ago) who answers "yes".
    s1 = make_schedule(start=today - dt.timedelta(days=42), today=today, clinic=clinic,
                       given_name="Ada", family_name="Lovelace")  # fmt: skip
    week_6 = point(s1, "week_6")
    run_once(timezone.now())
    week_6.refresh_from_db()
    submit_responses(
        week_6,
        answers_for(week_6, ae_tickler={"fever_or_infection_signs": 1}),
        "k" * 20,
        timezone.now(),
        psfs_names=PSFS_NAMES,
    )
    # Patient 2: baseline window closed unanswered -> missed and on the call list.
    make_schedule(start=today - dt.timedelta(days=3), today=today - dt.timedelta(days=3),
                  clinic=clinic, given_name="Grace", family_name="Hopper")  # fmt: skip
    run_once(timezone.now())
    # Patient 3, another clinic: must never appear.
    make_schedule(start=today, today=today, clinic=other, given_name="Zed", family_name="Other")
    coordinator = make_actor(Role.COORDINATOR, clinic)
    client.force_login(coordinator.user)
    response = client.get("/p/staff/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Zed" not in html and "Other" not in html
    assert "Grace Hopper" in html and "Did not answer before the window closed" in html
    assert "Reported a possible red flag" in html
    assert "Patient-reported at 6 weeks follow-up" in html and "possible red flag" in html
    # s1 baseline missed, week_6 completed; s2 baseline missed -> 1 of 3.
    assert "Completeness: <strong>33%</strong> (1 of 3)" in html
    assert AuditEvent.objects.filter(object_type="followup_dashboard").count() == 1
    entry = CallListEntry.objects.get(time_point__patient__given_name="Grace")
    done = client.post(f"/p/staff/calls/{entry.pk}/resolve/", {"resolution": "Left a message"})
    assert done.status_code == 302
    entry.refresh_from_db()
    assert entry.resolved_at is not None and entry.resolution == "Left a message"
    outsider = make_actor(Role.COORDINATOR, other)
    client.force_login(outsider.user)
    other_entry = CallListEntry.objects.exclude(pk=entry.pk).first()
    assert other_entry is not None
    assert client.post(f"/p/staff/calls/{other_entry.pk}/resolve/").status_code == 404
