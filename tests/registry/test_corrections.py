"""Corrections, voids and history through the services (registry.corrections, ADR 0009): every
record type corrected with a reason, stale edits refused with nothing written, voids kept out
of analytics and follow-up, schedules recomputed when the treatment date moves."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.followup.helpers import PSFS_NAMES, answers_for
from tests.registry.corrections_world import CORRECTIONS, START, World, build_world
from tests.registry.factories import make_actor, make_clinic
from vertebra.core import plausibility
from vertebra.core.instruments import get_definition, score
from vertebra.followup import worker
from vertebra.followup.models import (
    FollowUpTimePoint,
    QuestionnaireResponse,
    Reminder,
    ReminderStatus,
    TimePointStatus,
)
from vertebra.followup.services import (
    correct_episode_with_follow_up,
    submit_responses,
    void_episode_with_follow_up,
)
from vertebra.outcomes.selectors import analysis_tables
from vertebra.registry import corrections, selectors, services
from vertebra.registry.errors import (
    ChainOfCustodyError,
    NotFound,
    PermissionDeniedError,
    RecordVoidedError,
    StaleEditError,
)
from vertebra.registry.models import AuditEvent, Patient, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> World:
    return build_world()


def _stored(slug: str, record: Any) -> Any:
    return corrections.get_type(slug).model._default_manager.get(pk=record.pk)


def _correct(actor: Actor, slug: str, record: Any, **kwargs: Any) -> Any:
    defaults = {"expected_version": _stored(slug, record).version, "reason": "typo at entry"}
    return corrections.correct_record(
        actor=actor, record_type=slug, object_id=record.pk, **{**defaults, **kwargs}
    )


def test_every_clinical_record_type_is_in_the_table() -> None:
    assert set(corrections.RECORD_TYPES) == set(CORRECTIONS)


@pytest.mark.parametrize("slug", sorted(CORRECTIONS))
def test_each_type_is_corrected_with_reason_version_and_audit(world: World, slug: str) -> None:
    record = world.records[slug]
    before = _stored(slug, record)
    changes = CORRECTIONS[slug]
    stored = _correct(world.clinician, slug, record, changes=changes, reason="typo: entered wrong")
    for name, value in changes.items():
        assert getattr(_stored(slug, record), name) == value
    assert stored.version == before.version + 1
    row = AuditEvent.objects.filter(action="update", object_id=str(record.pk)).latest("id")
    assert row.object_type == corrections.get_type(slug).object_type
    assert row.reason == "typo: entered wrong"
    assert row.old_values["version"] == before.version
    assert row.new_values["version"] == before.version + 1
    for name in changes:
        assert row.old_values[name] != row.new_values[name]
    assert row.actor_username == world.clinician.user.username


def test_a_correction_needs_a_reason_and_names_unknown_fields(world: World) -> None:
    harvest = world.records["harvests"]
    seq = AuditEvent.objects.latest("id").id
    for reason in ("", "   "):
        with pytest.raises(ValidationError, match="reason"):
            _correct(world.clinician, "harvests", harvest, changes={"volume_ml": 1}, reason=reason)
    with pytest.raises(ValidationError) as refused:
        _correct(world.clinician, "harvests", harvest, changes={"operator_id": 1})
    assert "operator_id" in refused.value.message_dict
    assert _stored("harvests", harvest).volume_ml == 60
    assert not AuditEvent.objects.filter(id__gt=seq).exists()


def test_stale_edit_is_refused_and_nothing_is_written(world: World) -> None:
    harvest = world.records["harvests"]
    _correct(world.clinician, "harvests", harvest, changes={"volume_ml": 58.0}, expected_version=1)
    seq = AuditEvent.objects.latest("id").id
    with pytest.raises(StaleEditError, match="changed by someone else"):
        _correct(
            world.clinician, "harvests", harvest, changes={"volume_ml": 99.0}, expected_version=1
        )
    stored = _stored("harvests", harvest)
    assert (stored.volume_ml, stored.version) == (58.0, 2)
    assert not AuditEvent.objects.filter(id__gt=seq, action__in=["update", "void"]).exists()
    # The conflict answer: who changed what since version 1.
    current, missed = corrections.changes_since(
        actor=world.clinician, record_type="harvests", object_id=harvest.pk, version=1
    )
    assert current.volume_ml == 58.0
    assert [(c.field, c.old, c.new) for e in missed for c in e.changes] == [
        ("Volume (mL)", "60", "58")
    ]
    assert missed[0].who == world.clinician.user.username and missed[0].reason == "typo at entry"


def test_roles_and_clinics_are_enforced(world: World) -> None:
    other = make_actor(Role.CLINICIAN, make_clinic("Elsewhere"))
    harvest = world.records["harvests"]
    with pytest.raises(NotFound):
        _correct(other, "harvests", harvest, changes={"volume_ml": 1.0})
    with pytest.raises(PermissionDeniedError):  # harvest is a clinician's act
        _correct(world.coordinator, "harvests", harvest, changes={"volume_ml": 1.0})
    with pytest.raises(PermissionDeniedError):
        _correct(world.clinic_admin, "diagnoses", world.records["diagnoses"], changes={})
    event = world.records["adverse-events"]
    with pytest.raises(PermissionDeniedError):  # grading is adjudication: clinicians only
        _correct(world.coordinator, "adverse-events", event, changes={"ctcae_grade": 3})
    _correct(world.coordinator, "adverse-events", event, changes={"description": "Back pain flare"})
    assert _stored("adverse-events", event).ctcae_grade == 1
    denied = AuditEvent.objects.filter(action="denied").values_list("actor_username", flat=True)
    assert {other.user.username, world.coordinator.user.username} <= set(denied)
    # The clinic admin corrects patient details (and nothing clinical).
    _correct(world.clinic_admin, "patients", world.patient, changes={"phone": "555-0100"})
    assert Patient.objects.get(pk=world.patient.pk).phone == "555-0100"


def test_chain_of_custody_holds_after_a_correction(world: World) -> None:
    harvest, processing = world.records["harvests"], world.records["processing"]
    injection, episode = world.records["injections"], world.records["episodes"]
    later = START + dt.timedelta(days=5)
    with pytest.raises(ChainOfCustodyError, match="after the processing date"):
        _correct(world.clinician, "harvests", harvest, changes={"harvested_on": later})
    with pytest.raises(ChainOfCustodyError, match="after the injection"):
        _correct(world.clinician, "processing", processing, changes={"processed_on": later})
    with pytest.raises(ChainOfCustodyError, match="before the processing date"):
        _correct(
            world.clinician, "injections", injection,
            changes={"injected_on": START - dt.timedelta(days=1)},
        )  # fmt: skip
    with pytest.raises(ValidationError, match="void them first"):
        _correct(world.clinician, "episodes", episode, changes={"arm": "physical_therapy"})
    with pytest.raises(ValidationError, match="future"):
        _correct(
            world.clinician, "diagnoses", world.records["diagnoses"],
            changes={"diagnosed_on": timezone.localdate() + dt.timedelta(days=3)},
        )  # fmt: skip
    assert _stored("harvests", harvest).version == 1


def test_prior_treatment_mme_follows_its_dose(world: World) -> None:
    prior = world.records["prior-treatments"]
    assert prior.mme_per_day == 30  # oxycodone 20 mg x 1.5
    _correct(world.coordinator, "prior-treatments", prior, changes={"daily_dose": 40.0})
    assert _stored("prior-treatments", prior).mme_per_day == 60
    row = AuditEvent.objects.filter(action="update", object_type="priortreatment").get()
    assert row.old_values["mme_per_day"] == 30 and row.new_values["mme_per_day"] == 60


def test_staff_entered_answers_are_rescored_with_their_instrument_version(world: World) -> None:
    response = world.records["followup-answers"]
    assert response.score == 6
    _correct(world.coordinator, "followup-answers", response, changes={"answers": {"pain_back": 2}})
    stored = QuestionnaireResponse.objects.get(pk=response.pk)
    expected = score("nrs_back", {"pain_back": 2})
    assert (stored.score, stored.band, stored.instrument_version) == (
        expected.score, expected.band or "", get_definition("nrs_back").version,
    )  # fmt: skip
    with pytest.raises(ValidationError):
        _correct(world.coordinator, "followup-answers", response, changes={"answers": {"pain_back": 11}})  # fmt: skip


def test_answers_the_patient_gave_are_not_staff_corrections(world: World) -> None:
    point = FollowUpTimePoint.objects.get(
        schedule__episode=world.records["episodes"], key="month_3"
    )
    FollowUpTimePoint.objects.filter(pk=point.pk).update(status="open")
    today = point.opens
    now = timezone.make_aware(dt.datetime.combine(today, dt.time(9)))
    submit_responses(point, answers_for(point), "k" * 20, now, psfs_names=PSFS_NAMES)
    response = QuestionnaireResponse.objects.get(time_point=point, instrument_id="nrs_back")
    with pytest.raises(ValidationError, match="patient's own report"):
        _correct(world.coordinator, "followup-answers", response, changes={"answers": {"pain_back": 5}})  # fmt: skip
    with pytest.raises(ValidationError, match="patient's own report"):
        corrections.void_record(
            actor=world.coordinator, record_type="followup-answers", object_id=response.pk,
            expected_version=1, reason="wrong",
        )  # fmt: skip


def test_void_keeps_the_record_and_says_who_when_why(world: World) -> None:
    event = world.records["clinical-events"]
    voided = corrections.void_record(
        actor=world.coordinator, record_type="clinical-events", object_id=event.pk,
        expected_version=1, reason="entered on the wrong patient",
    )  # fmt: skip
    assert voided.voided_at is not None and voided.voided_by_id == world.coordinator.user.pk
    assert voided.void_reason == "entered on the wrong patient" and voided.version == 2
    row = AuditEvent.objects.get(action="void")
    assert (row.object_type, row.object_id, row.reason) == (
        "clinicalevent", str(event.pk), "entered on the wrong patient",
    )  # fmt: skip
    with pytest.raises(RecordVoidedError):
        _correct(world.coordinator, "clinical-events", event, changes={"details": "x"})
    with pytest.raises(ValidationError, match="reason"):
        corrections.void_record(
            actor=world.coordinator, record_type="diagnoses",
            object_id=world.records["diagnoses"].pk, expected_version=1, reason=" ",
        )  # fmt: skip
    # Still on the patient's record, marked.
    record = selectors.patient_record(actor=world.coordinator, patient_id=world.patient.pk)
    assert [e.voided_at is not None for e in record.clinical_events] == [True]


def test_void_order_follows_the_pathway(world: World) -> None:
    def void(slug: str, reason: str = "entered in error") -> Any:
        record = world.records[slug]
        return corrections.void_record(
            actor=world.clinician, record_type=slug, object_id=record.pk,
            expected_version=_stored(slug, record).version, reason=reason,
        )  # fmt: skip

    with pytest.raises(ChainOfCustodyError, match="its processing"):
        void("harvests")
    with pytest.raises(ChainOfCustodyError, match="injections of its product"):
        void("processing")
    void("injections")
    void("processing")
    void("harvests")
    with pytest.raises(ChainOfCustodyError, match="voided"):
        services.record_processing(
            actor=world.clinician, episode_id=world.records["episodes"].pk, method="bmac",
            lab="Lab", processed_on=START, product_id="NEW",
        )  # fmt: skip


def test_adjudicated_adverse_event_is_voided_only_by_an_adjudicator(world: World) -> None:
    event = world.records["adverse-events"]
    with pytest.raises(PermissionDeniedError):
        corrections.void_record(
            actor=world.coordinator, record_type="adverse-events", object_id=event.pk,
            expected_version=1, reason="duplicate",
        )  # fmt: skip
    corrections.void_record(
        actor=world.clinician, record_type="adverse-events", object_id=event.pk,
        expected_version=1, reason="duplicate of another report",
    )  # fmt: skip
    assert _stored("adverse-events", event).voided_at is not None


def test_voided_records_are_left_out_of_analytics_and_queues(world: World) -> None:
    pending = services.record_adverse_event(
        actor=world.coordinator, patient_id=world.patient.pk, description="Reported twice",
        category="other", onset=START + dt.timedelta(days=3),
    )  # fmt: skip
    assert pending in selectors.pending_adverse_events(actor=world.clinician)
    tables = analysis_tables(actor=world.clinician)
    assert len(tables.events[tables.events["kind"] == "adverse_event"]) == 2
    corrections.void_record(
        actor=world.coordinator, record_type="adverse-events", object_id=pending.pk,
        expected_version=1, reason="reported twice",
    )  # fmt: skip
    assert pending not in selectors.pending_adverse_events(actor=world.clinician)
    tables = analysis_tables(actor=world.clinician)
    assert len(tables.events[tables.events["kind"] == "adverse_event"]) == 1
    # The whole episode voided: the patient leaves the cohort.
    for slug in ("injections", "processing", "harvests"):
        record = world.records[slug]
        corrections.void_record(
            actor=world.clinician, record_type=slug, object_id=record.pk,
            expected_version=_stored(slug, record).version, reason="wrong patient",
        )  # fmt: skip
    assert world.patient.pk in set(analysis_tables(actor=world.clinician).patients["patient_id"])
    void_episode_with_follow_up(
        actor=world.clinician, episode_id=world.records["episodes"].pk,
        expected_version=_stored("episodes", world.records["episodes"]).version,
        reason="wrong patient",
    )  # fmt: skip
    assert analysis_tables(actor=world.clinician).patients.empty


def test_voiding_an_episode_stops_its_follow_up() -> None:
    clinic = make_clinic("Recent Clinic")
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = Patient.objects.create(
        clinic=clinic, mrn="R1", given_name="A", family_name="B",
        date_of_birth=dt.date(1970, 1, 1), sex="female", email="a@example.org",
    )  # fmt: skip
    today = timezone.localdate()
    from vertebra.followup.services import start_episode_with_follow_up

    episode = start_episode_with_follow_up(
        actor=clinician, patient_id=patient.pk, arm="physical_therapy", start_date=today
    )
    worker.open_windows(timezone.now())
    baseline = FollowUpTimePoint.objects.get(schedule__episode=episode, key="baseline")
    assert baseline.status == TimePointStatus.OPEN
    assert Reminder.objects.filter(time_point=baseline, status="scheduled").exists()
    _, cancelled = void_episode_with_follow_up(
        actor=clinician, episode_id=episode.pk, expected_version=1, reason="duplicate episode"
    )
    assert cancelled == FollowUpTimePoint.objects.filter(schedule__episode=episode).count()
    statuses = set(
        FollowUpTimePoint.objects.filter(schedule__episode=episode).values_list("status", flat=True)
    )
    assert statuses == {TimePointStatus.CANCELLED}
    assert not Reminder.objects.filter(
        time_point__schedule__episode=episode, status=ReminderStatus.SCHEDULED
    ).exists()
    # The worker finds nothing to open, send or escalate for it.
    later = timezone.now() + dt.timedelta(days=200)
    assert worker.open_windows(later) == (0, 0)
    assert worker.due_reminders(later) == []


def test_correcting_the_treatment_date_recomputes_the_schedule(world: World) -> None:
    episode = world.records["episodes"]
    points = {p.key: p for p in FollowUpTimePoint.objects.filter(schedule__episode=episode)}
    assert points["baseline"].status == TimePointStatus.COMPLETED  # staff-entered answers
    new_start = START - dt.timedelta(days=1)  # the day before: every pathway date still follows
    result = correct_episode_with_follow_up(
        actor=world.clinician, episode_id=episode.pk, expected_version=1,
        changes={"start_date": new_start}, reason="typo: 1 Mar → 29 Feb",
    )  # fmt: skip
    assert result.episode.start_date == new_start and result.episode.version == 2
    moved = {m.key: m for m in result.moved}
    assert moved["baseline"].kept and moved["baseline"].new_opens == points["baseline"].opens
    week6 = FollowUpTimePoint.objects.get(pk=points["week_6"].pk)  # 42 days after treatment
    assert week6.opens == moved["week_6"].new_opens == points["week_6"].opens - dt.timedelta(1)
    for key in ("week_6", "month_3", "month_12"):  # months are calendar months
        assert not moved[key].kept and moved[key].new_opens < points[key].opens
        stored = FollowUpTimePoint.objects.get(pk=points[key].pk)
        assert (stored.opens, stored.closes) == (moved[key].new_opens, moved[key].new_closes)
    schedule_row = AuditEvent.objects.filter(object_type="followup_schedule", action="update").get()
    assert schedule_row.reason == "typo: 1 Mar → 29 Feb"
    # A stale second correction changes neither the episode nor the schedule.
    with pytest.raises(StaleEditError):
        correct_episode_with_follow_up(
            actor=world.coordinator, episode_id=episode.pk, expected_version=1,
            changes={"start_date": START}, reason="other editor",
        )  # fmt: skip
    assert FollowUpTimePoint.objects.get(pk=points["week_6"].pk).opens == moved["week_6"].new_opens


def test_history_reads_in_words(world: World) -> None:
    harvest = world.records["harvests"]
    _correct(world.clinician, "harvests", harvest, changes={"volume_ml": 50.0, "harvested_on": START}, reason="typo: 60 → 50 mL")  # fmt: skip
    corrections.void_record(
        actor=world.clinician, record_type="injections", object_id=world.records["injections"].pk,
        expected_version=1, reason="wrong level",
    )  # fmt: skip
    history = corrections.record_history(
        actor=world.clinic_admin, record_type="harvests", object_id=harvest.pk
    )
    created, corrected = history.entries
    assert created.action == "Recorded" and created.role == "Clinician"
    assert ("Cell source", "—", "Bone marrow (iliac crest)") in [
        (c.field, c.old, c.new) for c in created.changes
    ]
    assert ("Harvested on", "—", "1 Mar 2024") in [(c.field, c.old, c.new) for c in created.changes]
    assert corrected.action == "Corrected" and corrected.reason == "typo: 60 → 50 mL"
    assert [(c.field, c.old, c.new) for c in corrected.changes] == [("Volume (mL)", "60", "50")]
    voided = corrections.record_history(
        actor=world.coordinator, record_type="injections", object_id=world.records["injections"].pk
    )
    assert voided.entries[-1].action == "Voided" and voided.entries[-1].reason == "wrong level"
    read = AuditEvent.objects.filter(action="read", object_type="harvest").latest("id")
    assert read.new_values == {"view": "history"}


# --------------------------------------------------------------------------- property

#: The plausible range of an adipose harvest volume, from the rules' own data.
ADIPOSE_ML = plausibility.rules().harvest_volume_ml["adipose"]
FIRST_ML = float(math.ceil(ADIPOSE_ML.min))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["load", "save"]),
            # Volumes the plausibility rules accept for adipose harvests (data/plausibility.yaml).
            st.integers(math.ceil(ADIPOSE_ML.min), math.floor(ADIPOSE_ML.max)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_no_acknowledged_change_is_ever_lost(clinician: Actor, patient: Patient, steps: list[tuple[int, str, int]]) -> None:  # fmt: skip
    """Three editors load and save a harvest volume in any interleaving, each saving from the
    version they last loaded. Every save that was acknowledged (no StaleEditError) is in the
    trail, in order; the stored value is the last acknowledged one; a stale save changed
    nothing. Nothing is ever silently overwritten."""
    episode = services.start_episode(
        actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=START
    )
    harvest = services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="adipose", harvested_on=START,
        volume_ml=FIRST_ML,
    )  # fmt: skip
    loaded = {editor: 1 for editor in range(3)}  # each editor's form: the version it shows
    acknowledged: list[float] = []
    for editor, action, value in steps:
        if action == "load":
            loaded[editor] = _stored("harvests", harvest).version
            continue
        current = _stored("harvests", harvest)
        try:
            corrections.correct_record(
                actor=clinician, record_type="harvests", object_id=harvest.pk,
                expected_version=loaded[editor], changes={"volume_ml": float(value)},
                reason=f"editor {editor}",
            )  # fmt: skip
        except StaleEditError:
            assert loaded[editor] != current.version
            assert _stored("harvests", harvest).version == current.version
            continue
        assert loaded[editor] == current.version
        if float(value) != current.volume_ml:
            acknowledged.append(float(value))
        loaded[editor] = _stored("harvests", harvest).version
    stored = _stored("harvests", harvest)
    rows = AuditEvent.objects.filter(
        object_type="harvest", object_id=str(harvest.pk), action="update"
    ).order_by("id")
    assert [row.new_values["volume_ml"] for row in rows] == acknowledged
    assert stored.volume_ml == (acknowledged[-1] if acknowledged else FIRST_ML)
    assert stored.version == 1 + len(acknowledged)


def test_every_writer_moves_the_version_so_a_form_opened_before_is_stale(world: World) -> None:
    """Adjudication and sterility results are their own services; they move the version too,
    and the conflict answer names them (by trail position, as their rows carry no version)."""
    event = services.record_adverse_event(
        actor=world.coordinator, patient_id=world.patient.pk, description="Fever",
        category="infection", onset=START + dt.timedelta(days=4),
    )  # fmt: skip
    services.adjudicate_adverse_event(
        actor=world.clinician, adverse_event_id=event.pk, ctcae_grade=2, serious=False,
        relatedness="procedure", expected=False,
    )  # fmt: skip
    with pytest.raises(StaleEditError):
        _correct(world.coordinator, "adverse-events", event, expected_version=1, changes={"description": "Fever 38.5"})  # fmt: skip
    _, missed = corrections.changes_since(
        actor=world.coordinator, record_type="adverse-events", object_id=event.pk, version=1
    )
    assert [e.action for e in missed] == ["Corrected"]
    assert ("CTCAE grade", "—", "2") in [(c.field, c.old, c.new) for c in missed[0].changes]
    processing = world.records["processing"]
    services.record_sterility_result(
        actor=world.clinician, episode_id=world.records["episodes"].pk, sterility="fail",
        reason="lab called back",
    )  # fmt: skip
    with pytest.raises(StaleEditError):
        _correct(world.clinician, "processing", processing, expected_version=1, changes={"lab": "X"})  # fmt: skip


def test_a_voided_episode_is_never_reminded_even_voided_directly() -> None:
    clinic = make_clinic("Direct Void Clinic")
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = Patient.objects.create(
        clinic=clinic, mrn="D1", given_name="A", family_name="B",
        date_of_birth=dt.date(1970, 1, 1), sex="male", email="d@example.org",
    )  # fmt: skip
    from vertebra.followup.services import start_episode_with_follow_up

    episode = start_episode_with_follow_up(
        actor=clinician, patient_id=patient.pk, arm="surgery", start_date=timezone.localdate()
    )
    worker.open_windows(timezone.now())
    corrections.void_record(
        actor=clinician, record_type="episodes", object_id=episode.pk, expected_version=1,
        reason="duplicate",
    )  # fmt: skip
    assert worker.due_reminders(timezone.now() + dt.timedelta(days=1)) == []
    assert worker.close_windows(timezone.now() + dt.timedelta(days=900)) == 0


def test_the_year_25_typo_of_the_issue_is_corrected_and_its_follow_up_moves() -> None:
    """Issue 12: an episode saved as 0025-03-01 (a typo for 2025) can now be corrected; its
    follow-up schedule is rebuilt from the right date."""
    from tests.registry.factories import make_episode, make_patient
    from vertebra.followup.services import create_schedule_for_episode

    clinic = make_clinic("Typo Clinic")
    coordinator = make_actor(Role.COORDINATOR, clinic)
    episode = make_episode(make_patient(clinic), arm="medication", start_date=dt.date(25, 3, 1))
    create_schedule_for_episode(episode, coordinator, dt.date(2025, 3, 10))
    result = correct_episode_with_follow_up(
        actor=coordinator, episode_id=episode.pk, expected_version=1,
        changes={"start_date": dt.date(2025, 3, 1)}, reason="typo: 0025 → 2025",
        today=dt.date(2025, 3, 10),
    )  # fmt: skip
    assert result.episode.start_date == dt.date(2025, 3, 1)
    month3 = FollowUpTimePoint.objects.get(schedule__episode=episode, key="month_3")
    assert month3.target.year == 2025 and month3.status == TimePointStatus.PENDING
    history = corrections.record_history(
        actor=coordinator, record_type="episodes", object_id=episode.pk
    )
    corrected = next(e for e in history.entries if e.action == "Corrected")
    assert corrected.reason == "typo: 0025 → 2025"
    assert [(c.field, c.new) for c in corrected.changes] == [("Treatment date", "1 Mar 2025")]


def test_voided_records_are_not_exported(world: World) -> None:
    """FHIR and CSV exports read through interop.selectors: a voided record is not exported."""
    from vertebra.interop.selectors import read_chunk

    pid = world.patient.pk
    before = read_chunk(pid, pid)
    assert len(before.diagnoses) == 1 and len(before.clinical_events) == 1
    for slug in ("diagnoses", "clinical-events"):
        corrections.void_record(
            actor=world.coordinator, record_type=slug, object_id=world.records[slug].pk,
            expected_version=1, reason="entered on the wrong patient",
        )  # fmt: skip
    after = read_chunk(pid, pid)
    assert after.diagnoses == [] and after.clinical_events == []
    assert len(after.injections) == 1  # the rest of the record is untouched


def test_answers_history_shows_the_answer_set_and_the_rescore(world: World) -> None:
    response = world.records["followup-answers"]
    _correct(world.coordinator, "followup-answers", response, changes={"answers": {"pain_back": 2}})
    history = corrections.record_history(
        actor=world.coordinator, record_type="followup-answers", object_id=response.pk
    )
    recorded, corrected = history.entries
    assert recorded.action == "Answer set recorded"
    version = get_definition("nrs_back").version
    assert [(c.field, c.new) for c in recorded.changes] == [
        ("Back pain intensity (NRS 0-10, past 7 days)", f"score 6 (version {version})")
    ]
    assert ("Answer: Pain back", "6", "2") in [(c.field, c.old, c.new) for c in corrected.changes]
    assert ("Score", "6", "2") in [(c.field, c.old, c.new) for c in corrected.changes]


def test_a_voided_diagnosis_no_longer_matches_a_patient_search(world: World) -> None:
    search = selectors.search_patients
    found = search(actor=world.coordinator, condition="degenerative_disc_disease")
    assert [p.pk for p in found.items] == [world.patient.pk]
    corrections.void_record(
        actor=world.coordinator, record_type="diagnoses",
        object_id=world.records["diagnoses"].pk, expected_version=1, reason="wrong patient",
    )  # fmt: skip
    assert search(actor=world.coordinator, condition="degenerative_disc_disease").items == []
