"""The clinic denormalised onto follow-up time points and adverse events (ADR 0023 §12) is set
by every path that creates them, and always equals the patient's clinic: the cohort loader
(COPY on PostgreSQL), the FHIR importer's bulk and careful paths, and the services (schedules,
reported events, events escalated from a patient's questionnaire, in tests/followup). Runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.db import connection

from tests.fhir.test_import_lossless import clinic, source  # noqa: F401 (fixtures)
from tests.registry.factories import make_actor, make_clinic, make_episode, make_patient
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.followup.services import create_schedule_for_episode
from vertebra.interop.importer import import_fhir_folder
from vertebra.registry import models as m
from vertebra.registry import services

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)

#: The tables that carry the row's clinic beside the patient's.
TABLES = ("followup_followuptimepoint", "registry_adverseevent")


def rows_and_wrong() -> dict[str, tuple[int, int, int]]:
    """table -> (rows, rows whose clinic is missing or not their patient's, distinct clinics)."""
    found = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                f"SELECT COUNT(*), "
                f"SUM(CASE WHEN t.clinic_id IS NULL OR t.clinic_id <> p.clinic_id "
                f"THEN 1 ELSE 0 END), COUNT(DISTINCT t.clinic_id) "
                f"FROM {table} t JOIN registry_patient p ON p.id = t.patient_id"
            )
            total, wrong, clinics = cursor.fetchone()
            found[table] = (int(total), int(wrong or 0), int(clinics))
    return found


def test_the_loader_sets_each_rows_clinic() -> None:
    load_cohort(generate_cohort(40, 7, today=TODAY), now=NOW)
    found = rows_and_wrong()
    for table, (total, wrong, clinics) in found.items():
        assert total > 0 and clinics > 1, table  # several clinics: a mix-up would show
        assert wrong == 0, table
    assert m.AdverseEvent.objects.filter(status="pending").exists()


@pytest.mark.parametrize("careful", [False, True], ids=["bulk", "careful"])
def test_the_fhir_importer_sets_each_rows_clinic(
    source: Path,  # noqa: F811
    clinic: m.Clinic,  # noqa: F811
    careful: bool,
) -> None:
    # Clinics that exist but are not the receiving one: a row given any clinic but its
    # patient's would be counted as wrong below.
    for name in ("Earlier clinic A", "Earlier clinic B"):
        make_clinic(name)
    report = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW, careful=careful
    )
    assert report.patients_imported == 40
    if not careful:
        assert report.patients_careful == 0  # every patient went the bulk path
    for table, (total, wrong, _) in rows_and_wrong().items():
        assert total > 0 and wrong == 0, table


def test_the_services_set_each_rows_clinic() -> None:
    first, second = make_clinic("First"), make_clinic("Second")
    for at in (first, second):
        patient = make_patient(at)
        actor = make_actor("coordinator", at)
        episode = make_episode(patient, start_date=TODAY - dt.timedelta(days=50))
        create_schedule_for_episode(episode, actor, TODAY)
        services.record_adverse_event(
            actor=actor, patient_id=patient.pk, description="Flare", category="pain_flare",
            onset=TODAY - dt.timedelta(days=3),
        )  # fmt: skip
    for table, (total, wrong, clinics) in rows_and_wrong().items():
        assert total > 0 and clinics == 2 and wrong == 0, table
