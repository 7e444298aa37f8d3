"""One clinic's patient with every correctable record, for correction tests (services, pages,
API): consent, diagnosis, prior treatment, a cell-therapy episode with its follow-up schedule,
harvest, processing (sterility passed), injection, adverse event, clinical event and a set of
follow-up answers entered by staff."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from tests.registry.factories import make_actor, make_clinic, make_patient
from vertebra.core.instruments import get_definition
from vertebra.followup.models import FollowUpTimePoint, QuestionnaireResponse
from vertebra.followup.services import (
    ImportedAnswers,
    record_imported_answers,
    start_episode_with_follow_up,
)
from vertebra.registry import services
from vertebra.registry.models import Clinic, Patient, Role
from vertebra.registry.permissions import Actor

#: The treatment date of the world's episode (well in the past: every window is closed).
START = dt.date(2024, 3, 1)


@dataclass
class World:
    clinic: Clinic
    clinician: Actor
    coordinator: Actor
    clinic_admin: Actor
    patient: Patient
    records: dict[str, Any]  # record type slug -> instance


def build_world(name: str = "Correction Clinic", **patient_fields: Any) -> World:
    """Everything recorded through the services, as a clinic would."""
    clinic = make_clinic(name)
    clinician = make_actor(Role.CLINICIAN, clinic)
    coordinator = make_actor(Role.COORDINATOR, clinic)
    clinic_admin = make_actor(Role.CLINIC_ADMIN, clinic)
    patient = make_patient(clinic, **patient_fields)
    pid = patient.pk
    consent = services.record_consent(
        actor=coordinator, patient_id=pid, kind="treatment", form_version="v1",
        signed_on=START - dt.timedelta(days=20),
    )  # fmt: skip
    diagnosis = services.record_diagnosis(
        actor=clinician, patient_id=pid, condition="degenerative_disc_disease", icd10="M51.36",
        diagnosed_on=START - dt.timedelta(days=30), level="L4-L5", pfirrmann_grade=3,
    )  # fmt: skip
    prior = services.record_prior_treatment(
        actor=coordinator, patient_id=pid, kind="medication", medication_name="oxycodone",
        daily_dose=20, started_on=START - dt.timedelta(days=400),
    )  # fmt: skip
    episode = start_episode_with_follow_up(
        actor=clinician, patient_id=pid, arm="cell_therapy", start_date=START
    )
    harvest = services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="bone_marrow_iliac_crest",
        harvested_on=START, volume_ml=60,
    )  # fmt: skip
    processing = services.record_processing(
        actor=clinician, episode_id=episode.pk, method="bmac", lab="On-site lab",
        processed_on=START, product_id=f"PROD-{pid}", sterility="pass",
    )  # fmt: skip
    injection = services.record_injection(
        actor=clinician, episode_id=episode.pk, levels=["L4-L5"], target="intradiscal",
        guidance="fluoroscopy", volume_ml=2, injected_on=START + dt.timedelta(days=1),
        product_id=f"PROD-{pid}",
    )  # fmt: skip
    adverse = services.record_adverse_event(
        actor=clinician, patient_id=pid, description="Pain flare after the injection",
        category="pain_flare", onset=START + dt.timedelta(days=2), episode_id=episode.pk,
        ctcae_grade=1, relatedness="procedure",
    )  # fmt: skip
    clinical = services.record_clinical_event(
        actor=coordinator, patient_id=pid, kind="repeat_injection",
        occurred_on=START + dt.timedelta(days=200), details="second injection",
    )  # fmt: skip
    answers = staff_entered_answers(coordinator, episode.pk)
    return World(
        clinic, clinician, coordinator, clinic_admin, patient,
        {
            "patients": patient, "consents": consent, "diagnoses": diagnosis,
            "prior-treatments": prior, "episodes": episode, "harvests": harvest,
            "processing": processing, "injections": injection, "adverse-events": adverse,
            "clinical-events": clinical, "followup-answers": answers,
        },
    )  # fmt: skip


def staff_entered_answers(actor: Actor, episode_id: int) -> QuestionnaireResponse:
    """The NRS back-pain answer (6) of the baseline, entered by staff (as the import does)."""
    point = FollowUpTimePoint.objects.get(schedule__episode_id=episode_id, key="baseline")
    when = timezone.make_aware(dt.datetime.combine(START - dt.timedelta(days=3), dt.time(10)))
    given = {
        instrument: ImportedAnswers(get_definition(instrument).version, values, when)
        for instrument, values in {"nrs_back": {"pain_back": 6}}.items()
    }
    record_imported_answers(
        actor=actor, time_point_id=point.pk, answers_by_instrument=given,
        source="paper form", now=timezone.now(),
    )  # fmt: skip
    return QuestionnaireResponse.objects.get(time_point=point, instrument_id="nrs_back")


#: For each record type: one correction a clinician may make (field -> new value), and the
#: value it reads back as.
CORRECTIONS: dict[str, dict[str, Any]] = {
    "patients": {"date_of_birth": dt.date(1972, 5, 18)},
    "consents": {"form_version": "v2"},
    "diagnoses": {"pfirrmann_grade": 4},
    "prior-treatments": {"daily_dose": 30.0},
    "episodes": {"start_date": START - dt.timedelta(days=1)},
    "harvests": {"volume_ml": 55.0},
    "processing": {"lab": "Central lab"},
    "injections": {"volume_ml": 1.5},
    "adverse-events": {"ctcae_grade": 2},
    "clinical-events": {"details": "second injection, L5-S1"},
    "followup-answers": {"answers": {"pain_back": 4}},
}
