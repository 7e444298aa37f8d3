"""A pathway never dead-ends (issue 12): consent gates treatment, the sterility result is
recordable on the page, through the API and in the admin, every blocked step says what is
missing with a link to where it is supplied, and a withdrawn registry consent stops
invitations. Services, pages (Django test client, bodies and links) and the API."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client

from tests.followup.helpers import T0, at, make_schedule
from tests.registry.factories import (
    DAY0,
    make_actor,
    make_consents,
    make_episode,
    make_lot,
    make_patient,
)
from tests.registry.web import bearer, last_seq, signed_in, writes_since
from vertebra.followup.models import Reminder, ReminderStatus
from vertebra.followup.services import withdraw_consent_and_stop_invitations
from vertebra.followup.worker import run_once
from vertebra.registry import services
from vertebra.registry.errors import MissingStepError, NotFound
from vertebra.registry.models import (
    AuditEvent,
    Clinic,
    Consent,
    ConsentKind,
    Harvest,
    Injection,
    Patient,
    Processing,
    Role,
    Sterility,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

DAY1 = DAY0 + dt.timedelta(days=1)
API = "/api/v1"


def harvest(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Harvest:
    args: dict[str, Any] = {
        "source": "bone_marrow_iliac_crest",
        "harvested_on": DAY0,
        "volume_ml": 60.0,
    }
    return services.record_harvest(actor=actor, episode_id=episode.pk, **{**args, **kw})


def process(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Processing:
    args: dict[str, Any] = {
        "method": "bmac",
        "lab": "Northside cell lab",
        "processed_on": DAY0,
        "product_id": f"PRD-{episode.pk}",
        "tnc_per_ml": 121.0,
    }
    return services.record_processing(actor=actor, episode_id=episode.pk, **{**args, **kw})


def inject(actor: Actor, episode: TreatmentEpisode, **kw: Any) -> Injection:
    args: dict[str, Any] = {
        "levels": ["L4-L5"],
        "target": "intradiscal",
        "guidance": "fluoroscopy",
        "volume_ml": 2.0,
        "injected_on": DAY1,
        "cell_dose": 20.0,
        "product_id": f"PRD-{episode.pk}",
    }
    return services.record_injection(actor=actor, episode_id=episode.pk, **{**args, **kw})


@pytest.fixture
def unconsented(clinic: Clinic) -> Patient:
    return make_patient(clinic, consented=False)


# ------------------------------------------------------------------------ consent gates


def test_no_harvest_processing_or_injection_without_a_treatment_consent(
    clinician: Actor, unconsented: Patient
) -> None:
    episode = make_episode(unconsented)
    seq = last_seq()
    with pytest.raises(MissingStepError) as refused:
        harvest(clinician, episode)
    assert refused.value.remedy == "treatment_consent"
    assert refused.value.patient_id == unconsented.pk
    assert "A harvest cannot be recorded: no treatment consent signed on or before 1 Mar 2024" in (
        str(refused.value)
    )
    assert not Harvest.objects.exists() and writes_since(seq) == []

    # A registry consent is not a treatment consent; one signed after the harvest is too late.
    make_consents(unconsented, ConsentKind.REGISTRY)
    make_consents(unconsented, ConsentKind.TREATMENT, signed_on=DAY1)
    with pytest.raises(MissingStepError):
        harvest(clinician, episode)
    harvest(clinician, episode, harvested_on=DAY1)
    assert Harvest.objects.get().episode_id == episode.pk


def test_a_withdrawn_treatment_consent_stops_further_steps(
    clinician: Actor, coordinator: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    consent = patient.consents.get(kind=ConsentKind.TREATMENT)
    seq = last_seq()
    withdrawn = services.withdraw_consent(
        actor=coordinator, consent_id=consent.pk, withdrawn_on=DAY0, reason="patient phoned"
    )
    assert withdrawn.withdrawn_on == DAY0 and Consent.objects.filter(pk=consent.pk).exists()
    (row,) = writes_since(seq)
    assert (row.object_type, row.old_values, row.new_values, row.reason) == (
        "consent",
        {"withdrawn_on": None},
        {"withdrawn_on": "2024-03-01"},
        "patient phoned",
    )
    with pytest.raises(MissingStepError, match="treatment consent was withdrawn"):
        process(clinician, episode, processed_on=DAY1)
    with pytest.raises(ValidationError, match="already withdrawn"):
        services.withdraw_consent(actor=coordinator, consent_id=consent.pk, withdrawn_on=DAY1)


def test_withdrawal_is_scoped_and_dated_plausibly(
    coordinator: Actor, patient: Patient, other_patient: Patient
) -> None:
    foreign = other_patient.consents.first()
    assert foreign is not None
    with pytest.raises(NotFound):
        services.withdraw_consent(actor=coordinator, consent_id=foreign.pk, withdrawn_on=DAY0)
    own = patient.consents.get(kind=ConsentKind.REGISTRY)
    with pytest.raises(ValidationError) as refused:
        services.withdraw_consent(
            actor=coordinator, consent_id=own.pk, withdrawn_on=dt.date(2014, 12, 31)
        )
    assert "Withdrawal date: enter a date from 1 Jan 2015 (the signature date)" in str(
        refused.value.message_dict["withdrawn_on"]
    )


# ------------------------------------------------------------------------ sterility


def test_sterility_pending_blocks_injection_until_the_result_is_recorded(
    clinician: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    processing = process(clinician, episode)
    assert processing.sterility == Sterility.PENDING
    with pytest.raises(MissingStepError) as refused:
        inject(clinician, episode)
    assert refused.value.remedy == "sterility_result" and refused.value.episode_id == episode.pk
    seq = last_seq()
    services.record_sterility_result(actor=clinician, episode_id=episode.pk, sterility="pass")
    (row,) = writes_since(seq)
    assert (row.old_values, row.new_values) == ({"sterility": "pending"}, {"sterility": "pass"})
    assert inject(clinician, episode).processing_id == processing.pk


def test_a_failed_result_points_to_a_correction_or_a_new_episode(
    clinician: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    process(clinician, episode, sterility=Sterility.FAIL)
    with pytest.raises(MissingStepError) as refused:
        inject(clinician, episode)
    assert refused.value.remedy == "sterility_failed"
    assert "start a new treatment episode" in str(refused.value)


# ------------------------------------------------------------------------ plausibility


def test_refusals_name_the_field_and_the_allowed_range(
    clinician: Actor, coordinator: Actor, clinic: Clinic, patient: Patient
) -> None:
    episode = make_episode(patient)
    with pytest.raises(ValidationError) as volume:
        harvest(clinician, episode, volume_ml=99_999)
    assert volume.value.message_dict["volume_ml"] == [
        "Harvest volume: enter 5 to 240 mL for bone marrow (iliac crest); 99,999 mL is outside "
        "the published range."
    ]
    with pytest.raises(ValidationError) as early:
        harvest(clinician, episode, harvested_on=DAY0 - dt.timedelta(days=1))
    assert (
        "Harvest date: enter a date from 1 Mar 2024 (the episode start)"
        in (early.value.message_dict["harvested_on"][0])
    )
    with pytest.raises(ValidationError) as born:
        services.register_patient(
            actor=coordinator, clinic_id=clinic.pk, mrn="OLD-1", given_name="A",
            family_name="B", date_of_birth=dt.date(1850, 1, 1), sex="female",
        )  # fmt: skip
    assert born.value.message_dict["date_of_birth"][0].startswith(
        "Date of birth: enter a date from 1 Jan 1900"
    )
    with pytest.raises(ValidationError) as typo:
        services.start_episode(
            actor=coordinator, patient_id=patient.pk, arm="cell_therapy",
            start_date=dt.date(25, 3, 1),
        )  # fmt: skip
    assert "1 Mar 0025 is outside that range" in typo.value.message_dict["start_date"][0]
    with pytest.raises(ValidationError) as grade:
        services.record_adverse_event(
            actor=clinician, patient_id=patient.pk, description="x", category="other",
            onset=DAY1, ctcae_grade=5, relatedness="unrelated", outcome="recovered",
        )  # fmt: skip
    assert set(grade.value.message_dict) == {"outcome", "serious"}


def test_a_correction_cannot_move_a_date_past_its_neighbour(
    clinician: Actor, coordinator: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    # The birth date may not move after the first dated item of the record.
    with pytest.raises(ValidationError) as refused:
        services.update_patient(
            actor=coordinator, patient_id=patient.pk, expected_version=patient.version,
            changes={"date_of_birth": dt.date(2020, 1, 1)}, reason="typo",
        )  # fmt: skip
    assert (
        "the day before the first consent signature"
        in (refused.value.message_dict["date_of_birth"][0])
    )
    # The gate itself, as the corrections service calls it: the episode may not start after
    # its harvest.
    from vertebra.registry.validation import validate_record

    episode.start_date = DAY1
    with pytest.raises(ValidationError) as moved:
        validate_record(episode)
    assert "(the harvest date)" in moved.value.message_dict["start_date"][0]


# ------------------------------------------------------------------------ pages


def test_patient_page_says_what_is_missing_with_links(
    clinician: Actor, coordinator: Actor, unconsented: Patient
) -> None:
    episode = make_episode(unconsented)
    page = signed_in(clinician).get(f"/clinic/patients/{unconsented.pk}/").content.decode()
    assert "No consent on file." in page
    assert (
        "Waiting:</strong> A harvest cannot be recorded: no active treatment consent is on" in page
    )
    assert f'href="/clinic/patients/{unconsented.pk}/consents/new/?kind=treatment"' in page
    assert f'href="/clinic/patients/{unconsented.pk}/consents/new/?kind=registry"' in page
    # The harvest form says so before it is filled in, and refuses with the same link.
    client = signed_in(clinician)
    form = client.get(f"/clinic/episodes/{episode.pk}/harvest/").content.decode()
    assert "Record the treatment consent" in form
    posted = client.post(
        f"/clinic/episodes/{episode.pk}/harvest/",
        {"source": "bone_marrow_iliac_crest", "volume_ml": "60", "harvested_on": "2024-03-01"},
    )
    body = posted.content.decode()
    assert posted.status_code == 400 and "Nothing was saved" in body
    assert f"/clinic/patients/{unconsented.pk}/consents/new/?kind=treatment" in body
    # The consent form opens on the missing kind; recording it unblocks the harvest.
    consent_form = client.get(f"/clinic/patients/{unconsented.pk}/consents/new/?kind=treatment")
    assert 'value="treatment" selected' in consent_form.content.decode()
    client.post(
        f"/clinic/patients/{unconsented.pk}/consents/new/",
        {"kind": "treatment", "form_version": "v3", "signed_on": "2024-02-01"},
    )
    assert (
        client.post(
            f"/clinic/episodes/{episode.pk}/harvest/",
            {"source": "bone_marrow_iliac_crest", "volume_ml": "60", "harvested_on": "2024-03-01"},
        ).status_code
        == 302
    )


def test_sterility_is_recorded_from_the_patient_page(clinician: Actor, patient: Patient) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    processing = process(clinician, episode)
    client = signed_in(clinician)
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert f'action="/clinic/episodes/{episode.pk}/sterility/"' in page
    assert "its sterility result is still pending" in page
    assert f'href="/clinic/episodes/{episode.pk}/sterility/"' in page
    injection_form = client.get(f"/clinic/episodes/{episode.pk}/injections/new/").content.decode()
    assert "Record the sterility result" in injection_form
    response = client.post(f"/clinic/episodes/{episode.pk}/sterility/", {"sterility": "pass"})
    assert response.status_code == 302
    assert response["Location"].endswith(f"#processing-{processing.pk}")
    assert Processing.objects.get(pk=processing.pk).sterility == Sterility.PASS
    after = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "sterility pass" in after and "still pending" not in after
    # Changing a recorded result is a correction: a reason is required.
    refused = client.post(f"/clinic/episodes/{episode.pk}/sterility/", {"sterility": "fail"})
    assert refused.status_code == 400 and "Give a reason" in refused.content.decode()
    posted = client.post(
        f"/clinic/episodes/{episode.pk}/injections/new/",
        {"product_id": processing.product_id, "levels": ["L4-L5"], "target": "intradiscal",
         "guidance": "fluoroscopy", "volume_ml": "2", "cell_dose": "20",
         "injected_on": "2024-03-02"},
    )  # fmt: skip
    assert posted.status_code == 302
    final = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "2.0 mL, 20 million cells" in final


def test_a_coordinator_is_told_who_records_the_result_and_gets_no_refused_link(
    clinician: Actor, coordinator: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    process(clinician, episode)
    page = signed_in(coordinator).get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "A clinician records the sterility result from the lab." in page
    assert "/sterility/" not in page
    assert (
        signed_in(coordinator).get(f"/clinic/episodes/{episode.pk}/sterility/").status_code == 403
    )


def test_unreleased_lot_says_who_releases_it(clinician: Actor, patient: Patient) -> None:
    lot = make_lot()
    episode = make_episode(patient)
    response = signed_in(clinician).post(
        f"/clinic/episodes/{episode.pk}/injections/new/",
        {"allogeneic_lot": lot.pk, "levels": ["L4-L5"], "target": "intradiscal",
         "guidance": "fluoroscopy", "volume_ml": "1", "injected_on": "2024-03-02"},
    )  # fmt: skip
    body = response.content.decode()
    assert response.status_code == 400
    assert f"Lot {lot.lot_number} has not been released" in body
    assert "A registry admin releases allogeneic lots" in body
    assert "/admin/" not in body.split("<main", 1)[1]  # no link a clinician would get 403 on


def test_withdrawal_page_keeps_the_consent_and_shows_the_date(
    coordinator: Actor, patient: Patient
) -> None:
    consent = patient.consents.get(kind=ConsentKind.REGISTRY)
    client = signed_in(coordinator)
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert f'href="/clinic/consents/{consent.pk}/withdraw/"' in page
    form = client.get(f"/clinic/consents/{consent.pk}/withdraw/").content.decode()
    assert "no further follow-up invitations or reminders are sent" in form
    response = client.post(
        f"/clinic/consents/{consent.pk}/withdraw/",
        {"withdrawn_on": "2024-05-01", "reason": "letter"},
    )
    assert response.status_code == 302
    after = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "withdrawn 1 May 2024" in after
    assert Consent.objects.get(pk=consent.pk).withdrawn_on == dt.date(2024, 5, 1)


# ------------------------------------------------------------------------ follow-up


def test_a_withdrawn_registry_consent_stops_invitations_at_once() -> None:
    schedule = make_schedule()
    patient = schedule.episode.patient
    baseline = schedule.time_points.get(key="baseline")
    run_once(at(baseline.opens))
    assert len(mail.outbox) == 1  # the invitation
    queued = Reminder.objects.filter(
        time_point__patient=patient, status=ReminderStatus.SCHEDULED
    ).count()
    assert queued >= 1
    coordinator = make_actor(Role.COORDINATOR, patient.clinic)
    consent = patient.consents.get(kind=ConsentKind.REGISTRY)
    withdraw_consent_and_stop_invitations(
        actor=coordinator, consent_id=consent.pk, withdrawn_on=baseline.opens,
        today=baseline.opens,
    )  # fmt: skip
    assert not Reminder.objects.filter(
        time_point__patient=patient, status=ReminderStatus.SCHEDULED
    ).exists()
    audit = AuditEvent.objects.filter(
        object_type="followup_reminder", action="update", patient_id=patient.pk
    )
    assert audit.get().new_values["cancelled_reminders"] == queued
    for days in (3, 7, 10):
        run_once(at(baseline.opens + dt.timedelta(days=days)))
    assert len(mail.outbox) == 1


def test_no_invitation_before_a_registry_consent_and_one_after() -> None:
    schedule = make_schedule(consented=False)
    patient = schedule.episode.patient
    baseline = schedule.time_points.get(key="baseline")
    run_once(at(baseline.opens))
    assert mail.outbox == []
    make_consents(patient, ConsentKind.REGISTRY, signed_on=baseline.opens)
    run_once(at(baseline.opens, 15))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [patient.email]
    assert baseline.opens < T0


# ------------------------------------------------------------------------ API


def _call(method: str, path: str, headers: dict[str, str], body: object = None) -> Any:
    client = Client()
    if method == "GET":
        return client.get(API + path, headers=headers)
    return client.post(
        API + path, data=json.dumps(body), content_type="application/json", headers=headers
    )


def test_api_records_sterility_and_says_what_blocks_an_injection(
    clinician: Actor, coordinator: Actor, patient: Patient, other_patient: Patient
) -> None:
    episode = make_episode(patient)
    harvest(clinician, episode)
    process(clinician, episode)
    headers = bearer(clinician)
    body = {"levels": ["L4-L5"], "target": "intradiscal", "guidance": "fluoroscopy",
            "volume_ml": 2.0, "injected_on": "2024-03-02", "product_id": f"PRD-{episode.pk}",
            "cell_dose": 20.0}  # fmt: skip
    refused = _call("POST", f"/episodes/{episode.pk}/injections", headers, body)
    assert refused.status_code == 422
    assert refused["Content-Type"].startswith("application/problem+json")
    out = refused.json()
    assert out["type"] == "urn:vertebra:problem:sterility-result"
    assert out["remedy"] == "sterility_result"
    assert out["next_step"] == f"POST /api/v1/episodes/{episode.pk}/sterility"
    (problem,) = out["errors"]
    assert problem["type"] == "sterility_result" and problem["msg"] == out["detail"]
    assert f"Next: POST /api/v1/episodes/{episode.pk}/sterility." in problem["msg"]
    assert (
        _call(
            "POST", f"/episodes/{episode.pk}/sterility", bearer(coordinator), {"sterility": "pass"}
        ).status_code
        == 403
    )
    foreign = make_episode(other_patient)
    assert (
        _call(
            "POST", f"/episodes/{foreign.pk}/sterility", headers, {"sterility": "pass"}
        ).status_code
        == 404
    )
    recorded = _call("POST", f"/episodes/{episode.pk}/sterility", headers, {"sterility": "pass"})
    assert recorded.status_code == 200 and recorded.json()["sterility"] == "pass"
    created = _call("POST", f"/episodes/{episode.pk}/injections", headers, body)
    assert created.status_code == 201 and created.json()["cell_dose"] == 20.0


def test_api_consents_create_list_withdraw_and_gate(
    clinician: Actor, coordinator: Actor, unconsented: Patient
) -> None:
    episode = make_episode(unconsented)
    clin, coord = bearer(clinician), bearer(coordinator)
    blocked = _call("POST", f"/episodes/{episode.pk}/harvest", clin,
                    {"source": "adipose", "harvested_on": "2024-03-01", "volume_ml": 100})  # fmt: skip
    assert blocked.status_code == 422
    assert blocked.json()["type"] == "urn:vertebra:problem:treatment-consent"
    assert blocked.json()["errors"][0]["type"] == "treatment_consent"
    assert f"POST /api/v1/patients/{unconsented.pk}/consents" in blocked.json()["errors"][0]["msg"]
    created = _call("POST", f"/patients/{unconsented.pk}/consents", coord,
                    {"kind": "treatment", "form_version": "v3", "signed_on": "2024-02-01"})  # fmt: skip
    assert created.status_code == 201
    consent_id = created.json()["id"]
    listed = _call("GET", f"/patients/{unconsented.pk}/consents", coord).json()
    assert [(c["kind"], c["withdrawn_on"]) for c in listed] == [("treatment", None)]
    assert _call("POST", f"/episodes/{episode.pk}/harvest", clin,
                 {"source": "adipose", "harvested_on": "2024-03-01", "volume_ml": 100}
                 ).status_code == 201  # fmt: skip
    withdrawn = _call("POST", f"/consents/{consent_id}/withdraw", coord,
                      {"withdrawn_on": "2024-03-01", "reason": "phoned"})  # fmt: skip
    assert withdrawn.status_code == 200 and withdrawn.json()["withdrawn_on"] == "2024-03-01"
    again = _call("POST", f"/consents/{consent_id}/withdraw", coord, {"withdrawn_on": "2024-03-02"})
    assert again.status_code == 422
    assert again.json()["errors"][0]["loc"] == ["body", "withdrawn_on"]
    assert again.json()["errors"][0]["field"] == "withdrawn_on" and again.json()["errors"][0]["msg"]


def test_api_refusal_names_field_and_range(clinician: Actor, patient: Patient) -> None:
    episode = make_episode(patient)
    response = _call("POST", f"/episodes/{episode.pk}/harvest", bearer(clinician),
                     {"source": "bone_marrow_iliac_crest", "harvested_on": "2024-03-01",
                      "volume_ml": 99999})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["type"] == "urn:vertebra:problem:validation-error"
    (problem,) = response.json()["errors"]
    assert problem["loc"] == ["body", "volume_ml"] and problem["field"] == "volume_ml"
    assert problem["msg"].startswith("Harvest volume: enter 5 to 240 mL")


def test_openapi_states_the_dose_unit(client: Client) -> None:
    schema = client.get(f"{API}/openapi.json").content.decode()
    assert "in million cells" in schema and "million cells per mL" in schema


# ------------------------------------------------------------------------ admin


def test_admin_sterility_action_goes_through_the_audited_service(
    clinic: Clinic, patient: Patient, other_patient: Patient
) -> None:
    clinician = make_actor(Role.CLINICIAN, clinic)
    clinician.user.is_staff = True
    clinician.user.save()
    episode = make_episode(patient)
    harvest(clinician, episode)
    processing = process(clinician, episode)
    other_clinician = make_actor(Role.CLINICIAN, other_patient.clinic)
    foreign_episode = make_episode(other_patient)
    harvest(other_clinician, foreign_episode)
    foreign = process(other_clinician, foreign_episode)
    client = signed_in(clinician)
    listing = client.get("/admin/registry/processing/")
    assert listing.status_code == 200
    text = listing.content.decode()
    assert processing.product_id in text and foreign.product_id not in text
    seq = last_seq()
    response = client.post(
        "/admin/registry/processing/",
        {"action": "record_pass", "_selected_action": [processing.pk, foreign.pk]},
    )
    assert response.status_code == 302
    assert Processing.objects.get(pk=processing.pk).sterility == Sterility.PASS
    assert Processing.objects.get(pk=foreign.pk).sterility == Sterility.PENDING
    (row,) = writes_since(seq)
    assert (row.actor_user_id, row.role, row.object_id) == (
        clinician.user.pk,
        Role.CLINICIAN,
        str(processing.pk),
    )


def test_recording_a_step_twice_points_to_the_next_one(clinician: Actor, patient: Patient) -> None:
    """The issue's dead end: "already processed" with sterility pending now leads to the
    sterility result; a second harvest leads to the processing."""
    episode = make_episode(patient)
    harvest(clinician, episode)
    with pytest.raises(MissingStepError) as twice:
        harvest(clinician, episode)
    assert twice.value.remedy == "processing" and "already has a harvest" in str(twice.value)
    process(clinician, episode)
    with pytest.raises(MissingStepError) as again:
        process(clinician, episode, product_id="PRD-other")
    assert again.value.remedy == "sterility_result"
    form = signed_in(clinician).get(f"/clinic/episodes/{episode.pk}/processing/").content.decode()
    assert "already processed into product PRD-" in form
    assert f'href="/clinic/episodes/{episode.pk}/sterility/"' in form


def test_admin_lot_release_passes_the_plausibility_gate() -> None:
    admin_user = make_actor(Role.REGISTRY_ADMIN).user
    admin_user.is_staff = True
    admin_user.save()
    lot = make_lot()
    client = signed_in(admin_user)
    data = {"lot_number": lot.lot_number, "product": lot.product, "released": "on"}
    refused = client.post(
        f"/admin/registry/allogeneiclot/{lot.pk}/change/", {**data, "released_on": "0025-03-01"}
    )
    assert refused.status_code == 200
    assert "Release date: enter a date from 1 Jan 1900" in refused.content.decode()
    done = client.post(
        f"/admin/registry/allogeneiclot/{lot.pk}/change/", {**data, "released_on": "2024-03-01"}
    )
    assert done.status_code == 302
    assert lot.__class__.objects.get(pk=lot.pk).released_on == DAY0


def test_a_screening_that_needs_more_information_links_to_a_new_evaluation(
    coordinator: Actor, patient: Patient
) -> None:
    evaluation = services.record_screening(actor=coordinator, patient_id=patient.pk, facts={})
    assert evaluation.result.get("missing")
    page = signed_in(coordinator).get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "Still missing:" in page
    assert f'<a href="/clinic/patients/{patient.pk}/screenings/new/">Evaluate again' in page
