"""A small clinic day for the role homes: one account per demo role, and something waiting
for each of them. Shared by the page tests and the browser tests.

Arrangement rows (episodes, harvest, processing, call-list entries) are written straight to the
database, as the registry factories do; adverse events are reported through the service, so
who reported them is on the audit trail exactly as in use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.utils import timezone

from tests.registry.factories import make_clinic, make_episode, make_patient
from vertebra.followup.models import CallListEntry, FollowUpTimePoint
from vertebra.followup.services import create_schedule_for_episode
from vertebra.registry import services
from vertebra.registry.models import (
    AdverseEvent,
    Clinic,
    Harvest,
    Membership,
    Patient,
    Processing,
    Role,
)
from vertebra.registry.permissions import Actor

PASSWORD = "correct horse battery staple 42"

#: A fast hasher for these accounts: password hashing is not what these tests are about, and
#: Argon2 for six accounts and every sign-in would cost seconds per test on a shared machine.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

#: username → membership role; the clinic roles belong to the first clinic.
ACCOUNTS = {
    "clinician": Role.CLINICIAN,
    "coordinator": Role.COORDINATOR,
    "clinicadmin": Role.CLINIC_ADMIN,
    "admin": Role.REGISTRY_ADMIN,
    "researcher": Role.RESEARCHER,
}


@dataclass
class World:
    clinic: Clinic
    other: Clinic
    users: dict[str, User]
    serious_patient: Patient  # a serious AE reported yesterday
    old_ae_patient: Patient  # a routine AE with an onset 30 days ago
    mid_ae_patient: Patient  # a routine AE with an onset 10 days ago
    overdue_patient: Patient  # 6-week follow-up overdue by 8 days, on the call list
    due_patient: Patient  # 6-week follow-up due in 2 days
    sterility_patient: Patient  # processing with sterility pending
    stranger: Patient  # another clinic's patient with a serious AE: never shown
    serious_event: AdverseEvent
    old_event: AdverseEvent
    mid_event: AdverseEvent


def _user(username: str, role: str, clinic: Clinic | None, **fields: object) -> User:
    user = User.objects.create_user(
        username=username, password=PASSWORD, first_name=username.title(), **fields
    )
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return user


def build_world() -> World:
    """The clinic day described in the module docstring; ``today`` is the real date."""
    today = timezone.localdate()
    clinic = make_clinic(
        "Harbour Spine Clinic",
        regulatory_status="registered_trial",
        nct_id="NCT01234567",
        irb="Harbour IRB 2024-17",
        ind_number="IND 123456",
    )
    other = make_clinic("Far Away Spine")
    users = {
        name: _user(
            name,
            role,
            None if role in (Role.REGISTRY_ADMIN, Role.RESEARCHER) else clinic,
            is_staff=role == Role.REGISTRY_ADMIN,
        )
        for name, role in ACCOUNTS.items()
    }
    coordinator = Actor.for_user(users["coordinator"], Role.COORDINATOR)

    def patient(family: str, at: Clinic = clinic) -> Patient:
        return make_patient(at, family_name=family, given_name="Pat", phone="+1 555 0100")

    def report(
        who: Actor, person: Patient, days_ago: int, serious: bool, category: str
    ) -> AdverseEvent:
        return services.record_adverse_event(
            actor=who, patient_id=person.pk, description=f"Reported for {person.family_name}",
            category=category, onset=today - dt.timedelta(days=days_ago), serious=serious,
        )  # fmt: skip

    old_ae_patient, mid_ae_patient = patient("Oldevent"), patient("Midevent")
    serious_patient = patient("Seriousevent")
    old_event = report(coordinator, old_ae_patient, 30, False, "pain_flare")
    mid_event = report(coordinator, mid_ae_patient, 10, False, "harvest_site")
    serious_event = report(coordinator, serious_patient, 1, True, "infection")

    overdue_patient, due_patient = patient("Overdue"), patient("Duesoon")
    for person, days_ago in ((overdue_patient, 50), (due_patient, 40)):
        episode = make_episode(person, start_date=today - dt.timedelta(days=days_ago))
        create_schedule_for_episode(episode, coordinator, today)
    week_6 = FollowUpTimePoint.objects.get(patient=overdue_patient, key="week_6")
    CallListEntry.objects.create(
        time_point=week_6, reason=CallListEntry.Reason.NO_RESPONSE, created_at=timezone.now()
    )

    sterility_patient = patient("Sterilitypending")
    episode = make_episode(sterility_patient, start_date=today - dt.timedelta(days=3))
    harvest = Harvest.objects.create(
        episode=episode, source="bone_marrow_iliac_crest", harvested_on=episode.start_date,
        operator=users["clinician"],
    )  # fmt: skip
    Processing.objects.create(
        harvest=harvest, method="bmac", lab="Harbour Lab", processed_on=episode.start_date,
        product_id="PROD-PENDING-1", sterility="pending",
    )  # fmt: skip

    stranger = patient("Stranger", other)
    outsider = _user("outsider", Role.COORDINATOR, other)
    report(Actor.for_user(outsider, Role.COORDINATOR), stranger, 2, True, "neurological")
    return World(
        clinic=clinic, other=other, users=users, serious_patient=serious_patient,
        old_ae_patient=old_ae_patient, mid_ae_patient=mid_ae_patient,
        overdue_patient=overdue_patient, due_patient=due_patient,
        sterility_patient=sterility_patient, stranger=stranger, serious_event=serious_event,
        old_event=old_event, mid_event=mid_event,
    )  # fmt: skip
