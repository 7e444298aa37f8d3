"""Another clinic's objects are never revealed by a refusal (issue 14 "existence of other
clinics' objects never revealed"; OWASP API3 / ASVS 4.0.3 4.2.1)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.registry.factories import DAY0, make_actor, make_clinic, make_episode, make_patient
from tests.registry.web import bearer
from vertebra.registry.models import Processing, Role
from vertebra.registry.services import PRODUCT_ID_UNAVAILABLE

pytestmark = pytest.mark.django_db


def _process(client: Client, headers: dict[str, str], patient, product_id: str):
    episode = make_episode(patient)
    harvest = client.post(
        f"/api/v1/episodes/{episode.pk}/harvest",
        json.dumps({"source": "bone_marrow_iliac_crest", "harvested_on": str(DAY0)}),
        "application/json",
        headers=headers,
    )
    assert harvest.status_code == 201, harvest.content
    return client.post(
        f"/api/v1/harvests/{harvest.json()['id']}/processing",
        json.dumps(
            {"method": "bmac", "lab": "Lab", "processed_on": str(DAY0),
             "product_id": product_id, "sterility": "pass"}
        ),
        "application/json",
        headers=headers,
    )  # fmt: skip


def test_a_product_id_taken_elsewhere_gets_the_same_neutral_answer(client: Client) -> None:
    north, south = make_clinic("North"), make_clinic("South")
    north_headers = bearer(make_actor(Role.CLINICIAN, north))
    south_headers = bearer(make_actor(Role.CLINICIAN, south))
    assert _process(client, north_headers, make_patient(north), "PX-NORTH-1").status_code == 201
    answers = [
        _process(client, south_headers, make_patient(south), "PX-NORTH-1"),  # another clinic's
        _process(client, north_headers, make_patient(north), "PX-NORTH-1"),  # own clinic's
    ]
    bodies = []
    for response in answers:
        assert response.status_code == 422
        body = response.json()
        assert body["errors"][0]["field"] == "product_id"
        assert body["errors"][0]["msg"] == PRODUCT_ID_UNAVAILABLE
        text = response.content.decode()
        assert "already exists" not in text and "North" not in text
        bodies.append(body)
    assert bodies[0] == bodies[1]  # nothing tells whose product it is
    assert Processing.objects.count() == 1
