"""The homes' counts, read without joins over every patient (ADR 0023), equal their definitions.

Each figure is compared with the straightforward query it replaced (the definition), on the
worklist world plus another clinic's patients, so clinic scoping is part of the check; and the
homes read a number of queries that does not grow with the patients.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Exists, OuterRef
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.registry.factories import make_patient
from tests.web.worklist_world import FAST_HASHERS, World, build_world
from vertebra.followup.models import FollowUpTimePoint, TimePointStatus
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventStatus,
    Clinic,
    Patient,
    Processing,
    Role,
    Sterility,
)
from vertebra.registry.permissions import Actor
from vertebra.web import worklist_selectors as worklists

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings: Any) -> World:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return build_world()


def _patients_due_by_definition(clinics: frozenset[int]) -> int:
    """Patients of ``clinics`` with an open time point, a pending event or pending sterility."""
    return (
        Patient.objects.filter(clinic_id__in=clinics)
        .filter(
            Exists(
                FollowUpTimePoint.objects.filter(
                    patient_id=OuterRef("pk"), status=TimePointStatus.OPEN
                )
            )
            | Exists(
                AdverseEvent.objects.filter(
                    patient_id=OuterRef("pk"), status=AdverseEventStatus.PENDING
                )
            )
            | Exists(
                Processing.objects.filter(
                    harvest__episode__patient_id=OuterRef("pk"), sterility=Sterility.PENDING
                )
            )
        )
        .count()
    )


def test_clinician_home_counts_patients_due_as_defined(world: World) -> None:
    actor = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    home = worklists.clinician_home(actor=actor, today=timezone.localdate())
    assert home.patients_due == _patients_due_by_definition(actor.clinic_ids)
    assert home.patients_due >= 5  # serious, old, mid, overdue, due, sterility patients
    assert home.patients_total == Patient.objects.filter(clinic=world.clinic).count()


def test_registry_admin_home_counts_each_clinic_as_defined(world: World) -> None:
    make_patient(world.other)
    actor = Actor.for_user(world.users["admin"], Role.REGISTRY_ADMIN)
    home = worklists.registry_admin_home(actor=actor, today=timezone.localdate())
    expected = {
        c.pk: (c.n_patients, c.n_staff)
        for c in Clinic.objects.annotate(
            n_patients=Count("patients", distinct=True),
            n_staff=Count("memberships", distinct=True),
        )
    }
    assert {row.clinic.pk: (row.patients, row.staff) for row in home.clinics} == expected
    assert [row.clinic.name for row in home.clinics] == sorted(r.clinic.name for r in home.clinics)


def test_researcher_home_counts_treated_patients_as_defined(world: World) -> None:
    actor = Actor.for_user(world.users["researcher"], Role.RESEARCHER)
    home = worklists.researcher_home(actor=actor, today=timezone.localdate())
    treated = Patient.objects.filter(episodes__isnull=False).distinct().count()
    assert treated > 0
    assert (home.patients, home.treated) == (Patient.objects.count(), treated)


@pytest.mark.parametrize(
    ("username", "role"),
    [
        ("clinician", Role.CLINICIAN),
        ("coordinator", Role.COORDINATOR),
        ("clinicadmin", Role.CLINIC_ADMIN),
        ("admin", Role.REGISTRY_ADMIN),
        ("researcher", Role.RESEARCHER),
    ],
)
def test_homes_read_as_many_queries_for_many_more_patients(
    world: World, username: str, role: Role
) -> None:
    actor = Actor.for_user(world.users[username], role)
    selector = {
        Role.CLINICIAN: worklists.clinician_home,
        Role.COORDINATOR: worklists.coordinator_home,
        Role.CLINIC_ADMIN: worklists.clinic_admin_home,
        Role.REGISTRY_ADMIN: worklists.registry_admin_home,
        Role.RESEARCHER: worklists.researcher_home,
    }[role]
    today = timezone.localdate()
    with CaptureQueriesContext(connection) as before:
        selector(actor=actor, today=today)
    for n in range(30):
        make_patient(world.clinic, family_name=f"Extra{n}")
    with CaptureQueriesContext(connection) as after:
        selector(actor=actor, today=today)
    assert len(after) == len(before)


def test_clinician_home_stops_counting_patients_due_at_the_cap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above COUNT_UP_TO the card says "more than N" (the exact figure would read every open
    time point of a network's scope, ADR 0023 §10); at or below it, the exact count."""
    actor = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    exact = _patients_due_by_definition(actor.clinic_ids)
    monkeypatch.setattr(worklists, "COUNT_UP_TO", exact)
    home = worklists.clinician_home(actor=actor, today=timezone.localdate())
    assert (home.patients_due, home.patients_due_more) == (exact, False)
    monkeypatch.setattr(worklists, "COUNT_UP_TO", exact - 2)
    home = worklists.clinician_home(actor=actor, today=timezone.localdate())
    assert (home.patients_due, home.patients_due_more) == (exact - 2, True)


def test_distinct_up_to_counts_repeats_once() -> None:
    ids = Patient.objects.none().values_list("pk", flat=True)
    assert worklists._distinct_up_to(ids, 3) == (0, False)
    # a list stands in for the query (sliced and iterated the same way)
    assert worklists._distinct_up_to([1, 1, 2, 2, 3], 3) == (3, False)  # type: ignore[arg-type]
    assert worklists._distinct_up_to([1, 2, 3, 4], 3) == (3, True)  # type: ignore[arg-type]
    many = [7] * 20 + [8]  # more rows than the window, few values: counted exactly
    assert worklists._distinct_up_to(many, 3) == (2, False)  # type: ignore[arg-type]


def _followup_by_definition(clinics: frozenset[int]) -> tuple[int, int, int, int]:
    """(due, overdue, completed, missed) counted from the time points of ``clinics``."""
    today = timezone.localdate()
    points = FollowUpTimePoint.objects.filter(patient__clinic_id__in=clinics)
    opened = points.filter(status=TimePointStatus.OPEN)
    return (
        opened.filter(target__gte=today).count(),
        opened.filter(target__lt=today).count(),
        points.filter(status=TimePointStatus.COMPLETED).count(),
        points.filter(status=TimePointStatus.MISSED).count(),
    )


@pytest.mark.parametrize("everywhere", [False, True])
def test_follow_up_counts_equal_their_definition_for_one_clinic_and_for_all(
    world: World, everywhere: bool
) -> None:
    """At one clinic the counts are filtered by clinic; at every clinic of the registry the
    counted reads skip the clinic join (``_counted_in``): both equal the definition."""
    from tests.registry.factories import make_actor

    make_patient(world.other)
    if everywhere:
        actor = make_actor(Role.CLINICIAN, *Clinic.objects.order_by("pk"))
    else:
        actor = Actor.for_user(world.users["clinician"], Role.CLINICIAN)
    clinics = actor.clinic_ids
    assert (set(Clinic.objects.values_list("pk", flat=True)) <= clinics) == everywhere
    home = worklists.clinician_home(actor=actor, today=timezone.localdate())
    f = home.followup
    due, overdue, completed, missed = _followup_by_definition(clinics)
    assert (f.due, f.overdue, f.completed, f.denominator) == (
        due,
        overdue,
        completed,
        completed + missed,
    )
    assert home.patients_due == _patients_due_by_definition(clinics)
