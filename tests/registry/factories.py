"""Small factories for registry tests: rows written straight to the database (no audit),
for arranging a test; the behaviour under test always goes through the services."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from django.contrib.auth.models import User

from vertebra.registry.models import (
    AllogeneicLot,
    Arm,
    Clinic,
    Consent,
    ConsentKind,
    Membership,
    Patient,
    Role,
    Sex,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Actor

_serial = itertools.count(1)

#: A date safely in the past for every "not in the future" check.
DAY0 = dt.date(2024, 3, 1)


def make_user(username: str | None = None, *, is_active: bool = True) -> User:
    """An active staff user with an unusable password."""
    user = User(username=username or f"user{next(_serial)}", is_active=is_active)
    user.set_unusable_password()
    user.save()
    return user


def make_clinic(name: str | None = None, **fields: Any) -> Clinic:
    return Clinic.objects.create(name=name or f"Clinic {next(_serial)}", **fields)


def make_actor(
    role: str, *clinics: Clinic, user: User | None = None, request_id: str = "req-test"
) -> Actor:
    """A user holding ``role`` at each of ``clinics`` (registry-wide when none), as an Actor."""
    user = user or make_user(f"{role}{next(_serial)}")
    if clinics:
        for clinic in clinics:
            Membership.objects.create(user=user, clinic=clinic, role=role)
    else:
        Membership.objects.create(user=user, clinic=None, role=role)
    return Actor.for_user(user, role, request_id=request_id)


#: When factory patients signed their consents: before every date the tests use.
CONSENT_DAY = dt.date(2015, 1, 1)


def make_consents(patient: Patient, *kinds: str, signed_on: dt.date = CONSENT_DAY) -> None:
    """Signed, active consents of ``kinds`` (default: registry and treatment) for ``patient``."""
    recorder = User.objects.filter(username="factory-recorder").first() or make_user(
        "factory-recorder"
    )
    for kind in kinds or (ConsentKind.REGISTRY, ConsentKind.TREATMENT):
        Consent.objects.create(
            patient=patient, kind=kind, form_version="v1", signed_on=signed_on,
            recorded_by=recorder,
        )  # fmt: skip


def make_patient(clinic: Clinic, *, consented: bool = True, **fields: Any) -> Patient:
    """A patient of ``clinic``; ``consented`` (default) gives them active registry and
    treatment consents, as every patient on a treatment pathway needs."""
    n = next(_serial)
    values: dict[str, Any] = {
        "mrn": f"MRN{n:05d}",
        "given_name": f"Given{n}",
        "family_name": f"Family{n}",
        "date_of_birth": dt.date(1972, 5, 17),
        "sex": Sex.FEMALE,
        "email": f"patient{n}@example.org",
    }
    values.update(fields)
    patient = Patient.objects.create(clinic=clinic, **values)
    if consented:
        make_consents(patient)
    return patient


def make_episode(
    patient: Patient, arm: str = Arm.CELL_THERAPY, start_date: dt.date = DAY0
) -> TreatmentEpisode:
    return TreatmentEpisode.objects.create(patient=patient, arm=arm, start_date=start_date)


def make_lot(*, released_on: dt.date | None = None) -> AllogeneicLot:
    return AllogeneicLot.objects.create(
        lot_number=f"LOT-{next(_serial):05d}",
        product="Allogeneic disc progenitor cells",
        released=released_on is not None,
        released_on=released_on,
    )


ROLES = tuple(Role)
