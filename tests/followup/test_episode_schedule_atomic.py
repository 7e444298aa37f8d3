"""An episode never exists without its follow-up schedule (issue 14).

Requirement ids: HIPAA-164.312(c)(1) (integrity), T5 (no half-done write). The staff page, the
API and the FHIR import all call ``start_episode_with_follow_up``: one transaction. The worker
heals an episode written any other way, and says so in the log and on the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.followup.helpers import T0, at
from tests.registry.factories import make_actor, make_clinic, make_episode, make_patient
from vertebra.followup import services as followup_services
from vertebra.followup.models import FollowUpSchedule
from vertebra.followup.services import HEALED_REASON, start_episode_with_follow_up
from vertebra.followup.worker import run_once
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.errors import NotFound
from vertebra.registry.models import Arm, AuditEvent, Role, TreatmentEpisode

pytestmark = pytest.mark.django_db


def test_episode_and_schedule_commit_together() -> None:
    clinic = make_clinic()
    patient = make_patient(clinic)
    actor = make_actor(Role.CLINICIAN, clinic)
    episode = start_episode_with_follow_up(
        actor=actor, patient_id=patient.pk, arm=Arm.CELL_THERAPY, start_date=T0, today=T0
    )
    assert FollowUpSchedule.objects.filter(episode=episode).count() == 1
    rows = list(AuditEvent.objects.order_by("id").values_list("object_type", "request_id"))
    assert rows == [("treatmentepisode", "req-test"), ("followup_schedule", "req-test")]


def test_a_failing_schedule_rolls_the_episode_back(monkeypatch: Any) -> None:
    clinic = make_clinic()
    patient = make_patient(clinic)
    actor = make_actor(Role.CLINICIAN, clinic)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("schedule store failed")

    monkeypatch.setattr(followup_services, "_create_schedule", broken)
    with pytest.raises(RuntimeError):
        start_episode_with_follow_up(
            actor=actor, patient_id=patient.pk, arm=Arm.SURGERY, start_date=T0
        )
    assert TreatmentEpisode.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_a_refused_episode_is_audited_once_naming_the_refusing_service() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    stranger = make_patient(make_clinic())
    with pytest.raises(NotFound):
        start_episode_with_follow_up(
            actor=actor, patient_id=stranger.pk, arm=Arm.SURGERY, start_date=T0
        )
    rows = list(AuditEvent.objects.values("action", "object_type", "object_id", "new_values"))
    assert rows == [
        {
            "action": "denied",
            "object_type": "patient",
            "object_id": str(stranger.pk),
            "new_values": {"operation": "start_episode", "action": ""},
        }
    ]
    assert TreatmentEpisode.objects.count() == 0


def test_the_worker_heals_an_episode_without_schedule_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    episode = make_episode(make_patient(make_clinic()), start_date=T0)  # written behind services
    with caplog.at_level("WARNING", logger="vertebra.followup.worker"):
        report = run_once(at(T0 + dt.timedelta(days=1)))
    assert report.healed == 1
    assert FollowUpSchedule.objects.filter(episode=episode).count() == 1
    assert f"episode {episode.pk} had no follow-up schedule; created it (healed)" in caplog.text
    row = AuditEvent.objects.get(object_type="followup_schedule")
    assert (row.action, row.actor_username, row.reason) == (
        "create",
        "system:followup-worker",
        HEALED_REASON,
    )
    assert row.new_values["episode_id"] == episode.pk
    assert run_once(at(T0 + dt.timedelta(days=2))).healed == 0
    assert verify_audit_chain() == []


@pytest.mark.parametrize("start", [dt.date(1, 1, 9), dt.date(9999, 12, 20)])
def test_a_start_date_no_schedule_fits_is_refused_whole(start: dt.date) -> None:
    """Found by Schemathesis: year 1 overflowed the calendar in the schedule (500, and before
    the one-transaction fix an episode without schedule). Now a field error, nothing stored."""
    from django.core.exceptions import ValidationError

    clinic = make_clinic()
    patient = make_patient(clinic)
    actor = make_actor(Role.CLINICIAN, clinic)
    with pytest.raises(ValidationError) as refused:
        start_episode_with_follow_up(
            actor=actor, patient_id=patient.pk, arm=Arm.SURGERY, start_date=start, today=T0
        )
    assert "start_date" in refused.value.message_dict
    assert TreatmentEpisode.objects.count() == 0
    assert AuditEvent.objects.count() == 0
