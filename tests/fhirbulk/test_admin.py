"""Django admin for system clients: registry admins add one with a checked public JWKS
(audited); a private key is refused; clinic staff cannot see clients or jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fhirbulk.conftest import public_jwks
from tests.registry.factories import make_actor, make_clinic
from tests.registry.test_admin import staff
from tests.registry.web import signed_in
from vertebra.fhirbulk.models import BackendClient, ClientKind
from vertebra.registry.models import AuditEvent, Role

pytestmark = pytest.mark.django_db


def form(jwks: Any, clinic: int | str = "") -> dict[str, str]:
    return {
        "client_id": "west-ehr",
        "name": "West EHR",
        "clinic": str(clinic),
        "jwks": json.dumps(jwks),
        "scope": "system/*.read",
        "revoked_at_0": "",
        "revoked_at_1": "",
    }


def test_a_registry_admin_adds_a_client_with_public_keys_only(rsa_key: Any) -> None:
    clinic = make_clinic("West Spine")
    http = signed_in(staff(make_actor(Role.REGISTRY_ADMIN)))
    assert http.get("/admin/fhirbulk/backendclient/add/").status_code == 200
    leaky = {"keys": [rsa_key.as_dict(private=True)]}
    page = http.post("/admin/fhirbulk/backendclient/add/", form(leaky, clinic.pk))
    assert page.status_code == 200
    assert "holds a private part: register public keys" in page.content.decode()
    assert not BackendClient.objects.exists()
    done = http.post("/admin/fhirbulk/backendclient/add/", form(public_jwks(rsa_key), clinic.pk))
    assert done.status_code == 302, done.content.decode()[:2000]
    client = BackendClient.objects.get(client_id="west-ehr")
    assert (client.kind, client.clinic_id) == (ClientKind.CLINIC, clinic.pk)
    row = AuditEvent.objects.get(object_type="backendclient", action="create")
    assert row.object_id == str(client.pk)
    assert http.get("/admin/fhirbulk/exportjob/").status_code == 200
    assert http.get("/admin/fhirbulk/exportjob/add/").status_code == 403


def test_clinic_staff_cannot_see_clients_or_jobs() -> None:
    http = signed_in(staff(make_actor(Role.CLINICIAN, make_clinic())))
    assert http.get("/admin/fhirbulk/backendclient/").status_code == 403
    assert http.get("/admin/fhirbulk/exportjob/").status_code == 403
