"""The bulk loader writes the synthetic cohort as registry rows with a complete audit chain."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from vertebra.cohort.loader import load_cohort, registry_is_empty
from vertebra.core.synth import Cohort, generate_cohort
from vertebra.registry import models as m
from vertebra.registry.audit import verify_audit_chain
from vertebra.web.services.demo import ensure_demo_accounts

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def cohort() -> Cohort:
    return generate_cohort(120, 11, today=TODAY)


def test_rows_match_the_cohort_and_every_row_is_audited(cohort: Cohort) -> None:
    assert registry_is_empty()
    summary = load_cohort(cohort, now=NOW)
    assert not registry_is_empty()
    assert m.Patient.objects.count() == len(cohort.patients) == 120
    assert m.Diagnosis.objects.count() == 120
    assert m.TreatmentEpisode.objects.count() == 120
    assert m.Consent.objects.count() == 240
    cell = cohort.patients["arm"].astype(str).str.match(r"^(bmac|adipose|allogeneic)")
    assert m.TreatmentEpisode.objects.filter(arm="cell_therapy").count() == int(cell.sum())
    assert m.Injection.objects.count() == int(cell.sum())
    events = cohort.events
    assert m.AdverseEvent.objects.count() == int((events["event_type"] == "adverse_event").sum())
    pending = int(
        ((events["event_type"] == "adverse_event") & (events["adjudication"] == "pending")).sum()
    )
    assert m.AdverseEvent.objects.filter(status="pending").count() == pending
    # One create record per object, as the services write them: a schedule's time points are
    # recorded in the schedule's record, a submission's responses in the submission's.
    audited_apart = summary.counts["followuptimepoint"] + summary.counts["questionnaireresponse"]
    assert summary.audit_rows == sum(summary.counts.values()) - audited_apart
    assert m.AuditEvent.objects.count() == summary.audit_rows
    assert set(m.AuditEvent.objects.values_list("actor_username", flat=True)) == {
        "synthetic-loader"
    }
    assert verify_audit_chain() == []
    patient = m.Patient.objects.get(mrn="SYN-0000001")
    record = m.AuditEvent.objects.get(object_type="patient", object_id=str(patient.pk))
    assert record.patient_id == patient.pk and record.clinic_id == patient.clinic_id
    assert record.new_values["family_name"] == "Whitfield"


def test_loaded_pathway_respects_chain_of_custody(cohort: Cohort) -> None:
    load_cohort(cohort, now=NOW)
    for injection in m.Injection.objects.select_related(
        "episode", "processing__harvest__episode", "allogeneic_lot"
    ):
        if injection.processing is not None:
            harvest = injection.processing.harvest
            assert harvest.episode.patient_id == injection.episode.patient_id
            assert injection.processing.sterility == "pass"
            assert harvest.harvested_on <= injection.injected_on
        else:
            assert injection.allogeneic_lot is not None and injection.allogeneic_lot.released
            assert injection.allogeneic_lot.released_on <= injection.injected_on


def test_the_three_stories_are_in_the_registry(cohort: Cohort) -> None:
    load_cohort(cohort, now=NOW)
    anna = m.Patient.objects.get(given_name="Anna", family_name="Whitfield")
    assert anna.diagnoses.get().condition == "degenerative_disc_disease"
    assert anna.prior_treatments.filter(kind="steroid_injection", relief_weeks=6).exists()
    marco = m.Patient.objects.get(given_name="Marco", family_name="Lindqvist")
    assert marco.diagnoses.get().condition == "herniated_disc"
    ruth = m.Patient.objects.get(given_name="Ruth", family_name="Okonkwo")
    assert ruth.diagnoses.get().condition == "sciatica"


def test_a_second_load_adds_a_second_cohort_without_collisions(cohort: Cohort) -> None:
    load_cohort(cohort, now=NOW)
    load_cohort(generate_cohort(30, 12, today=TODAY), now=timezone.now())
    assert m.Patient.objects.count() == 150
    assert verify_audit_chain() == []


def test_demo_accounts_join_the_first_clinic_only(cohort: Cohort) -> None:
    load_cohort(cohort, now=NOW)
    logins = {login.username: login for login in ensure_demo_accounts()}
    first = m.Clinic.objects.order_by("id").first()
    assert first is not None
    clinician = m.Membership.objects.get(user__username="clinician")
    assert clinician.clinic_id == first.pk and clinician.role == "clinician"
    assert m.Membership.objects.get(user__username="researcher").clinic_id is None
    assert logins["clinician"].clinic == first.name
    assert logins["patient"].clinic.startswith("own record only (Ruth Okonkwo)")
    assert m.PatientAccount.objects.get(user__username="patient").patient.family_name == "Okonkwo"
    ensure_demo_accounts()  # idempotent
    assert m.Membership.objects.filter(user__username="clinician").count() == 1
    assert verify_audit_chain() == []


def test_follow_ups_are_scheduled_and_responses_rescore_exactly(cohort: Cohort) -> None:
    """Every stored response re-scores, with the core scorer, to its stored score and band."""
    from vertebra.core.instruments import score
    from vertebra.followup import models as f

    load_cohort(cohort, now=NOW)
    assert f.FollowUpSchedule.objects.count() == 120
    assert f.FollowUpTimePoint.objects.count() == len(cohort.timepoints)
    completed = int((cohort.timepoints["status"] == "completed").sum())
    assert f.Submission.objects.count() == completed
    assert f.FollowUpTimePoint.objects.filter(status="completed").count() == completed
    statuses = set(f.FollowUpTimePoint.objects.values_list("status", flat=True))
    assert {"completed", "missed", "pending"} <= statuses
    responses = f.QuestionnaireResponse.objects.all()
    assert {r.instrument_id for r in responses} == {
        "odi", "nrs_back", "nrs_leg", "promis_pf_4a", "promis_pi_4a", "opioid_use", "startback",
        "work_status", "psfs",
    }  # fmt: skip
    for response in responses:
        result = score(response.instrument_id, response.answers)
        assert response.score == result.score
        assert response.band == (result.band or "")
        assert response.extras == result.to_dict()["extras"]
        assert response.instrument_version == result.version


def test_loaded_audit_records_are_the_services_snapshots(cohort: Cohort) -> None:
    """For every kind of object the registry services create with ``snapshot`` (all concrete
    fields), the loader's record holds exactly the snapshot of the stored row: same keys, same
    values. A field added to a model and not to the loader fails here."""
    import json

    from vertebra.registry.audit import canonical_json, snapshot

    load_cohort(cohort, now=NOW)
    models = [
        m.Clinic, m.Membership, m.AllogeneicLot, m.Patient, m.Consent, m.Diagnosis,
        m.PriorTreatment, m.TreatmentEpisode, m.Harvest, m.Processing, m.Injection,
        m.AdverseEvent, m.ClinicalEvent,
    ]  # fmt: skip
    for model in models:
        object_type = model._meta.model_name
        records = m.AuditEvent.objects.filter(object_type=object_type, action="create")
        assert records.count() == model.objects.count() > 0, object_type
        for record in records.order_by("id")[:25]:
            instance = model.objects.get(pk=int(record.object_id))
            expected = json.loads(canonical_json(snapshot(instance)))
            assert record.new_values == expected, object_type


def test_startback_is_answered_at_baseline_with_the_generated_risk_group(cohort: Cohort) -> None:
    """Each completed baseline carries the patient's STarT Back answers; the core scorer's risk
    group equals the generator's, and no later time point asks it again."""
    from vertebra.followup import models as f

    load_cohort(cohort, now=NOW)
    stored = {
        (r.time_point.patient.mrn, r.time_point.key): r.band
        for r in f.QuestionnaireResponse.objects.filter(instrument_id="startback").select_related(
            "time_point__patient"
        )
    }
    assert {key for _, key in stored} == {"baseline"}
    tp = cohort.timepoints
    done = tp[(tp["timepoint"].astype(str) == "baseline") & (tp["status"] == "completed")]
    risk = cohort.patients.set_index("patient_id")["startback_risk"].astype(str)
    expected = {(f"SYN-{int(pid):07d}", "baseline"): risk[pid] for pid in done["patient_id"]}
    assert stored == expected and len(stored) > 50


def test_psfs_names_and_ratings_are_loaded_where_asked(cohort: Cohort) -> None:
    """The PSFS is asked at every time point (the default protocol): each patient who rated an activity has their
    generated activity names stored once (audited like the portal's write), every rated PSFS
    re-scores exactly, and no rating is stored for an activity without a name."""
    from vertebra.core.instruments import score
    from vertebra.followup import models as f

    load_cohort(cohort, now=NOW)
    stored = {
        a.episode.patient.mrn: a
        for a in f.PsfsActivities.objects.select_related("episode__patient")
    }
    assert stored
    patients = cohort.patients.set_index(
        cohort.patients["patient_id"].map(lambda i: f"SYN-{int(i):07d}")
    )
    for mrn, activities in stored.items():
        expected = [
            str(patients.loc[mrn, f"psfs_activity_{j}"])
            for j in range(1, 6)
            if isinstance(patients.loc[mrn, f"psfs_activity_{j}"], str)
        ]
        assert activities.names == expected
    responses = f.QuestionnaireResponse.objects.filter(instrument_id="psfs").select_related(
        "time_point__schedule__episode__psfs_activities"
    )
    assert responses.exists()
    for response in responses:
        names = response.time_point.schedule.episode.psfs_activities.names
        rated = {int(k.split("_")[1]) for k, v in response.answers.items() if v is not None}
        assert rated and max(rated) <= len(names)
        assert response.score == score("psfs", response.answers).score
    records = m.AuditEvent.objects.filter(object_type="psfs_activities")
    assert records.count() == len(stored)
    record = records.first()
    assert record is not None
    assert (
        record.new_values["names"] == f.PsfsActivities.objects.get(pk=int(record.object_id)).names
    )
    assert verify_audit_chain() == []


@pytest.mark.postgresql
def test_the_load_leaves_planner_statistics_of_the_rows_it_wrote(cohort: Cohort) -> None:
    """ANALYZE at the end of the load (ADR 0023): the planner's row estimates are the loaded
    rows, not the empty tables' (pg_class.reltuples is -1 for a never-analysed table)."""
    from django.db import connection

    load_cohort(cohort, now=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN "
            "('registry_patient', 'followup_followuptimepoint')"
        )
        estimates = dict(cursor.fetchall())
    assert estimates["registry_patient"] == m.Patient.objects.count()
    assert estimates["followup_followuptimepoint"] > 0


@pytest.mark.postgresql  # VACUUM and the visibility map are PostgreSQL's
@pytest.mark.django_db(transaction=True)
def test_a_load_in_its_own_transaction_vacuums_what_it_wrote() -> None:
    """Index-only scans need the visibility map a VACUUM sets (ADR 0023 §8); its ANALYZE is
    the only one (none inside the load's own transaction) and leaves the loaded row counts."""
    from django.db import connection

    load_cohort(generate_cohort(40, 3, today=TODAY), now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relpages, relallvisible, reltuples FROM pg_class WHERE relname IN"
            " ('registry_patient', 'followup_followuptimepoint', 'followup_timepointscores')"
        )
        pages = {name: rest for name, *rest in cursor.fetchall()}
    assert len(pages) == 3
    for name, (total, visible, _) in pages.items():
        assert total > 0 and visible == total, (name, total, visible)
    assert pages["registry_patient"][2] == m.Patient.objects.count()
