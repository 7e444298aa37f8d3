"""Least privilege in /admin/: identified values masked (break glass with a reason, audited)
and no role granted to oneself (HIPAA 164.312(a)(1), (a)(2)(ii), (b); OWASP ASVS 8.2)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User

from tests.registry.factories import make_actor, make_clinic, make_user
from tests.registry.web import signed_in
from vertebra.registry import services
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.memberships import grant_membership
from vertebra.registry.models import AuditEvent, Membership, PatientAccount, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

CANARIES = {
    "mrn": "CANARY-MRN-7781",
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "email": "zephyrine.canary@example.org",
    "phone": "+1 555 0199 321",
}
BIRTH = dt.date(1961, 7, 23)


def admin_actor() -> Actor:
    actor = make_actor(Role.REGISTRY_ADMIN)
    actor.user.is_staff = True
    actor.user.save()
    return actor


@pytest.fixture
def patient_row() -> AuditEvent:
    """The audit row of a patient registered with canary identifiers."""
    clinic = make_clinic("Canary Clinic")
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = services.register_patient(
        actor=clinician, clinic_id=clinic.pk, date_of_birth=BIRTH, sex="female", **CANARIES
    )
    return AuditEvent.objects.get(object_type="patient", object_id=str(patient.pk))


def assert_no_canary(body: str) -> None:
    for value in [*CANARIES.values(), BIRTH.isoformat()]:
        assert value not in body, value


def test_the_audit_view_masks_patient_values(patient_row: AuditEvent) -> None:
    client = signed_in(admin_actor())
    listing = client.get("/admin/registry/auditevent/")
    assert listing.status_code == 200
    assert_no_canary(listing.content.decode())
    page = client.get(f"/admin/registry/auditevent/{patient_row.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert_no_canary(body)
    assert "•••• masked" in body and "given_name" in body  # what changed, not to what
    assert f"/admin/registry/auditevent/{patient_row.pk}/reveal/" in body
    assert not AuditEvent.objects.filter(action="break_glass").exists()


def test_break_glass_asks_for_a_reason_and_audits_the_look(patient_row: AuditEvent) -> None:
    actor = admin_actor()
    client = signed_in(actor)
    url = f"/admin/registry/auditevent/{patient_row.pk}/reveal/"
    ask = client.get(url)
    assert ask.status_code == 200 and 'name="reason"' in ask.content.decode()
    assert_no_canary(ask.content.decode())
    short = client.post(url, {"reason": "why"})
    assert short.status_code == 400
    assert_no_canary(short.content.decode())
    assert not AuditEvent.objects.filter(action="break_glass").exists()

    shown = client.post(url, {"reason": "Incident 2026-114: duplicate registration check"})
    body = shown.content.decode()
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    for value in CANARIES.values():
        assert value in body
    row = AuditEvent.objects.get(action="break_glass")
    assert row.actor_user_id == actor.user.pk
    assert row.patient_id == patient_row.patient_id
    assert row.object_id == str(patient_row.pk)
    assert row.reason == "Incident 2026-114: duplicate registration check"


def test_clinic_staff_cannot_break_glass(patient_row: AuditEvent) -> None:
    clinician = make_actor(Role.CLINICIAN, make_clinic())
    clinician.user.is_staff = True
    clinician.user.save()
    client = signed_in(clinician)
    url = f"/admin/registry/auditevent/{patient_row.pk}/reveal/"
    assert client.post(url, {"reason": "I am curious about this"}).status_code == 403
    assert not AuditEvent.objects.filter(action="break_glass").exists()


def test_granting_oneself_clinic_access_is_refused_and_audited() -> None:
    actor = admin_actor()
    clinic = make_clinic("Target Clinic")
    client = signed_in(actor)
    response = client.post(
        "/admin/registry/membership/add/",
        {"user": actor.user.pk, "role": "clinician", "clinic": clinic.pk, "reason": "need it"},
    )
    assert response.status_code == 200  # the form again, with the refusal
    assert "You cannot grant a role to yourself" in response.content.decode()
    assert not Membership.objects.filter(user=actor.user, role="clinician").exists()
    denied = AuditEvent.objects.filter(action="denied", actor_user_id=actor.user.pk).get()
    assert denied.new_values == {"operation": "check_grant", "action": "membership.manage"}
    assert "yourself" in denied.reason

    with pytest.raises(PermissionDeniedError):
        grant_membership(
            actor=actor, user_id=actor.user.pk, role="clinician", clinic_id=clinic.pk, reason="x"
        )
    assert not Membership.objects.filter(user=actor.user, role="clinician").exists()
    assert AuditEvent.objects.filter(action="denied", actor_user_id=actor.user.pk).count() == 2


def test_a_superuser_cannot_grant_itself_either() -> None:
    boss = User.objects.create_user("boss", password="a-long-test-password-1")
    boss.is_staff = boss.is_superuser = True
    boss.save()
    client = signed_in(boss)
    clinic = make_clinic()
    response = client.post(
        "/admin/registry/membership/add/",
        {"user": boss.pk, "role": "clinician", "clinic": clinic.pk, "reason": "need it"},
    )
    assert "You cannot grant a role to yourself" in response.content.decode()
    assert not Membership.objects.filter(user=boss).exists()


def test_another_admin_grants_with_a_reason_and_revokes() -> None:
    granter = admin_actor()
    colleague = make_user("colleague")
    clinic = make_clinic()
    client = signed_in(granter)
    response = client.post(
        "/admin/registry/membership/add/",
        {"user": colleague.pk, "role": "clinician", "clinic": clinic.pk, "reason": "new hire"},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user=colleague, role="clinician")
    row = AuditEvent.objects.get(object_type="membership", action="create")
    assert (row.actor_user_id, row.reason, row.clinic_id) == (
        granter.user.pk,
        "new hire",
        clinic.pk,
    )
    assert row.new_values["user_id"] == colleague.pk

    change = client.post(
        f"/admin/registry/membership/{membership.pk}/change/",
        {"user": granter.user.pk, "role": "clinician", "clinic": clinic.pk, "reason": "swap"},
    )
    assert change.status_code == 403, "a membership is never edited in place"
    assert Membership.objects.get(pk=membership.pk).user_id == colleague.pk

    gone = client.post(f"/admin/registry/membership/{membership.pk}/delete/", {"post": "yes"})
    assert gone.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    revoked = AuditEvent.objects.get(object_type="membership", action="delete")
    assert revoked.old_values["user_id"] == colleague.pk


def test_clinic_staff_cannot_grant() -> None:
    clinic = make_clinic()
    clinician = make_actor(Role.CLINICIAN, clinic)
    with pytest.raises(PermissionDeniedError):
        grant_membership(
            actor=clinician,
            user_id=make_user().pk,
            role="clinician",
            clinic_id=clinic.pk,
            reason="x",
        )


def test_patient_portal_logins_are_not_in_the_user_admin(patient_row: AuditEvent) -> None:
    boss = User.objects.create_user("boss2", password="a-long-test-password-1")
    boss.is_staff = boss.is_superuser = True
    boss.save()
    portal = User.objects.create_user("portal-canary", email=CANARIES["email"])
    PatientAccount.objects.create(user=portal, patient_id=patient_row.patient_id)
    client = signed_in(boss)
    listing = client.get("/admin/auth/user/")
    assert listing.status_code == 200 and "boss2" in listing.content.decode()
    assert "portal-canary" not in listing.content.decode()
    assert client.get(f"/admin/auth/user/{portal.pk}/change/").status_code == 302
    grant_form = client.get("/admin/registry/membership/add/").content.decode()
    assert "boss2" in grant_form and "portal-canary" not in grant_form
