"""Admin: reference data for registry admins only; the audit trail read-only."""

from __future__ import annotations

import pytest

from tests.registry.factories import make_actor, make_clinic
from tests.registry.web import signed_in
from vertebra.registry.models import AuditEvent, Clinic, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db


def staff(actor: Actor) -> Actor:
    actor.user.is_staff = True
    actor.user.save()
    return actor


def test_registry_admin_manages_reference_data_and_changes_are_audited() -> None:
    admin_actor = staff(make_actor(Role.REGISTRY_ADMIN))
    client = signed_in(admin_actor)
    assert client.get("/admin/registry/clinic/").status_code == 200
    response = client.post(
        "/admin/registry/clinic/add/", {"name": "New Clinic", "regulatory_status": "none"}
    )
    assert response.status_code == 302
    clinic = Clinic.objects.get(name="New Clinic")
    row = AuditEvent.objects.get(object_type="clinic", action="create")
    assert (row.object_id, row.actor_user_id) == (str(clinic.pk), admin_actor.user.pk)


def test_clinic_staff_cannot_use_the_registry_admin() -> None:
    clinician = staff(make_actor(Role.CLINICIAN, make_clinic()))
    client = signed_in(clinician)
    assert client.get("/admin/registry/clinic/").status_code == 403
    assert client.get("/admin/registry/auditevent/").status_code == 403


def test_audit_trail_is_read_only_in_admin() -> None:
    admin_actor = staff(make_actor(Role.REGISTRY_ADMIN))
    client = signed_in(admin_actor)
    client.post("/admin/registry/clinic/add/", {"name": "C", "regulatory_status": "none"})
    event = AuditEvent.objects.first()
    assert event is not None
    assert client.get("/admin/registry/auditevent/").status_code == 200
    assert client.get("/admin/registry/auditevent/add/").status_code == 403
    assert client.get(f"/admin/registry/auditevent/{event.pk}/delete/").status_code == 403
    page = client.get(f"/admin/registry/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and 'type="submit" value="Save"' not in page.content.decode()
