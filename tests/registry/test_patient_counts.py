"""The trigger-kept patients per clinic (``registry 0016``, ADR 0023 §10) equal a live
``COUNT(*) GROUP BY clinic`` after the bulk loader (COPY on PostgreSQL), registrations through
the service, a clinic change and the worker's folding; the patient list's total uses
them when nothing filters the list."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count

from tests.registry.factories import make_clinic, make_patient
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry.counts import compact_patient_counts, patient_counts, patients_in
from vertebra.registry.models import Clinic, Patient, PatientCount

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def live() -> dict[int, int]:
    rows = Patient.objects.values_list("clinic_id").order_by().annotate(n=Count("id"))
    return dict(rows)  # type: ignore[arg-type]


def kept() -> dict[int, int]:
    found = patient_counts(Clinic.objects.values_list("pk", flat=True))
    return {clinic: n for clinic, n in found.items() if n}


def test_counts_follow_every_write(db: Any) -> None:
    load_cohort(generate_cohort(25, 3, today=TODAY), now=NOW)
    assert kept() == live() and sum(live().values()) == 25
    clinic = make_clinic()
    moved = make_patient(clinic)
    make_patient(clinic)
    assert kept() == live() and kept()[clinic.pk] == 2
    other = Clinic.objects.exclude(pk=clinic.pk).order_by("pk").first()
    assert other is not None
    Patient.objects.filter(pk=moved.pk).update(clinic=other)  # a clinic change, counted
    assert kept() == live()
    assert patients_in([clinic.pk, other.pk]) == live()[clinic.pk] + live()[other.pk]
    before = PatientCount.objects.count()
    assert compact_patient_counts() == before
    assert PatientCount.objects.count() == len(live()) and kept() == live()
    make_patient(clinic)
    assert kept() == live()
