"""Demo accounts and the demo cohort: one account per role, a synthetic registry to explore.

For the local demo only: the accounts share one printed password and the demo binds to
127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

from vertebra.registry.audit import record_audit, snapshot
from vertebra.registry.models import Clinic, Membership, Patient, PatientAccount
from vertebra.registry.permissions import Actor

#: The one password of every demo account. The demo binds to 127.0.0.1 only.
DEMO_PASSWORD = "vertebra-demo-2026"

#: (role label, username, membership role, Django admin?) — clinic roles join the first clinic.
ROLES: tuple[tuple[str, str, str, bool], ...] = (
    ("registry admin", "admin", "registry_admin", True),
    ("clinic admin", "clinicadmin", "clinic_admin", False),
    ("clinician", "clinician", "clinician", False),
    ("coordinator", "coordinator", "coordinator", False),
    ("researcher", "researcher", "researcher", False),
)
REGISTRY_WIDE = {"registry_admin", "researcher"}
#: The demo does not enforce MFA (settings.MFA_REQUIRED_ROLES is empty when VERTEBRA_ENV is
#: ``demo``), so these printed logins work in any browser or screenshot tool; outside the demo
#: these two roles must set up an authenticator at their first sign-in (docs/security/mfa.md).
REGISTRY_WIDE_SCOPE = {
    "registry_admin": "reference data and audit, all clinics; MFA optional in the demo",
    "researcher": "de-identified data, all clinics; MFA optional in the demo",
}


@dataclass(frozen=True)
class DemoLogin:
    """A printed demo credential."""

    role: str
    username: str
    password: str
    clinic: str


@transaction.atomic
def ensure_demo_accounts() -> list[DemoLogin]:
    """Create one account per role if missing, give it its membership, return the logins.

    Clinic roles join the first clinic (by id) when one exists, so the demo also shows clinic
    isolation: the other clinics' patients are invisible to these accounts. Existing accounts
    are left as they are, so a second ``vertebra demo`` does no password hashing.
    """
    first_clinic = Clinic.objects.order_by("id").first()
    logins = []
    for label, username, role, is_admin in ROLES:
        group, _ = Group.objects.get_or_create(name=label)
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, is_staff=is_admin, is_superuser=is_admin)
            user.set_password(DEMO_PASSWORD)
            user.save()
            user.groups.add(group)
        clinic = None if role in REGISTRY_WIDE else first_clinic
        if role in REGISTRY_WIDE or clinic is not None:
            _ensure_membership(user, role, clinic)
        logins.append(
            DemoLogin(
                role=label,
                username=username,
                password=DEMO_PASSWORD,
                clinic=clinic.name if clinic else REGISTRY_WIDE_SCOPE.get(role, "no clinic yet"),
            )
        )
    patient_login = _ensure_patient_account()
    if patient_login is not None:
        logins.append(patient_login)
    return logins


#: The demo patient: the retired teacher of the three stories, whose 6-month questionnaire
#: is overdue, so the portal has something to answer.
DEMO_PATIENT_MRN = "SYN-0000003"


def _ensure_patient_account() -> DemoLogin | None:
    """A portal login for the demo patient (sign in at /p/signin/), if the cohort has them."""
    patient = Patient.objects.filter(mrn=DEMO_PATIENT_MRN).order_by("id").first()
    if patient is None:
        return None
    user = User.objects.filter(username="patient").first()
    if user is None:
        user = User(username="patient", email=patient.email)
        user.set_password(DEMO_PASSWORD)
        user.save()
    if not PatientAccount.objects.filter(user=user).exists():
        account = PatientAccount.objects.create(user=user, patient=patient)
        _audit_setup(account, clinic_id=patient.clinic_id, patient_id=patient.pk)
    return DemoLogin(
        role="patient (portal: /p/signin/)",
        username="patient",
        password=DEMO_PASSWORD,
        clinic=f"own record only ({patient.given_name} {patient.family_name})",
    )


def _ensure_membership(user: User, role: str, clinic: Clinic | None) -> None:
    """Grant ``role`` (at ``clinic``) once, with an audit record of the grant."""
    if Membership.objects.filter(user=user, role=role, clinic=clinic).exists():
        return
    membership = Membership.objects.create(user=user, role=role, clinic=clinic)
    _audit_setup(membership, clinic_id=clinic.pk if clinic else None, patient_id=None)


def _audit_setup(
    instance: Membership | PatientAccount, *, clinic_id: int | None, patient_id: int | None
) -> None:
    """Record a demo-setup grant in the audit trail, attributed to the inactive system account."""
    system = User.objects.get_or_create(username="demo-setup", defaults={"is_active": False})[0]
    record_audit(
        actor=Actor(user=system, role="system", clinic_ids=frozenset(), request_id="demo-setup"),
        action="create",
        object_type=instance._meta.model_name or type(instance).__name__.lower(),
        object_id=instance.pk,
        clinic_id=clinic_id,
        patient_id=patient_id,
        new_values=snapshot(instance),
        reason="demo account setup",
    )


def load_demo_cohort(*, patients: int, seed: int, today: dt.date, now: dt.datetime) -> int:
    """Load a synthetic cohort into an empty registry; return the number of patients loaded.

    ``patients=0`` gives an empty registry that still has the demo's clinics (and their lots),
    so the demo accounts have a clinic to work in. A registry that already has patients (or,
    for ``patients=0``, clinics) is left as it is.
    """
    from vertebra.cohort.loader import load_cohort, registry_is_empty
    from vertebra.core.synth import generate_cohort

    if not registry_is_empty():
        return 0
    if patients == 0:
        if Clinic.objects.exists():
            return 0
        # The clinics of the same seed's cohort, without its patient.
        cohort = generate_cohort(1, seed, today=today)
        cohort = dataclasses.replace(
            cohort,
            patients=cohort.patients.iloc[0:0],
            timepoints=cohort.timepoints.iloc[0:0],
            events=cohort.events.iloc[0:0],
        )
        load_cohort(cohort, now=now)
        _publish_directory(now)
        return 0
    cohort = generate_cohort(patients, seed, today=today)
    load_cohort(cohort, now=now)
    _publish_directory(now)
    return patients


def _publish_directory(now: dt.datetime) -> None:
    """The demo's clinics publish in the public directory (synthetic answers), so the demo
    shows a living /clinics/ (docs/clinic-directory.md)."""
    from vertebra.directory.services import publish_demo_directory

    publish_demo_directory(now=now)


def seal_audit_trail() -> None:
    """Make sure the audit MAC key file exists (0600, in the data folder) and write a signed
    checkpoint of the trail's head, so the demo's trail is verifiable from the first minute
    (``vertebra audit verify``) and rows of an older demo database get vouched for (ADR 0008).
    """
    from vertebra.registry.audit import system_actor, write_checkpoint
    from vertebra.registry.auditseal import ensure_key_file

    ensure_key_file()
    write_checkpoint(actor=system_actor("demo-setup"))
