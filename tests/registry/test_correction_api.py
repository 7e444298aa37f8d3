"""Corrections, voids and history over the JSON API: the same for every record type, with the
pages' permissions, clinic isolation and audit."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client

from tests.registry.corrections_world import CORRECTIONS, World, build_world
from tests.registry.web import bearer
from vertebra.followup.models import FollowUpTimePoint
from vertebra.registry import corrections
from vertebra.registry.models import AuditEvent, Harvest

pytestmark = pytest.mark.django_db

API = "/api/v1"


def call(method: str, path: str, headers: dict[str, str], body: object = None) -> tuple[int, Any]:
    client = Client()
    if method == "GET":
        response = client.get(API + path, headers=headers)
    else:
        response = getattr(client, method.lower())(
            API + path, data=json.dumps(body), content_type="application/json", headers=headers
        )
    return response.status_code, response.json() if response.content else None


@pytest.fixture
def world() -> World:
    return build_world()


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


@pytest.mark.parametrize("slug", sorted(CORRECTIONS))
def test_every_type_is_corrected_voided_and_has_history(world: World, slug: str) -> None:
    record = world.records[slug]
    headers = bearer(world.clinician)
    changes = {name: _json(value) for name, value in CORRECTIONS[slug].items()}
    body = {"expected_version": record.version, "reason": "typo at entry", **changes}
    status, out = call("PATCH", f"/{slug}/{record.pk}", headers, body)
    assert status == 200, out
    assert out["version"] == record.version + 1
    if slug != "patients":
        assert all(out["values"][k] == v for k, v in changes.items())
    status, history = call("GET", f"/{slug}/{record.pk}/history", headers)
    assert status == 200
    assert history["record"]["version"] == record.version + 1
    corrected = [e for e in history["entries"] if e["action"] == "Corrected"]
    assert len(corrected) == 1 and corrected[0]["reason"] == "typo at entry"
    assert corrected[0]["changes"] and corrected[0]["version"] == record.version + 1
    kind = corrections.get_type(slug)
    blocked = kind.blockers(kind.model._default_manager.get(pk=record.pk)) if kind.blockers else []
    status, voided = call(
        "POST", f"/{slug}/{record.pk}/void", headers,
        {"expected_version": record.version + 1, "reason": "entered in error"},
    )  # fmt: skip
    if blocked:
        assert status == 422 and "void those first" in json.dumps(voided)
    else:
        assert status == 200 and voided["voided"] and voided["void_reason"] == "entered in error"
        assert AuditEvent.objects.filter(
            action="void", object_type=kind.object_type, object_id=str(record.pk)
        ).exists()


def test_stale_patch_is_409_with_the_current_version_and_the_other_change(world: World) -> None:
    harvest = world.records["harvests"]
    headers = bearer(world.clinician)
    first = {"expected_version": 1, "reason": "weighed again", "volume_ml": 58}
    assert call("PATCH", f"/harvests/{harvest.pk}", headers, first)[0] == 200
    seq = AuditEvent.objects.latest("id").id
    status, body = call("PATCH", f"/harvests/{harvest.pk}", headers, {**first, "volume_ml": 99})
    assert status == 409 and body["type"] == "urn:vertebra:problem:stale-edit"
    assert body["status"] == 409 and body["title"] == "Changed by someone else"
    assert body["current_version"] == 2 and "changed by someone else" in body["detail"]
    (change,) = body["changes"]
    assert change["reason"] == "weighed again" and change["who"] == world.clinician.user.username
    assert change["changes"] == [{"field": "Volume (mL)", "old": "60", "new": "58"}]
    assert Harvest.objects.get(pk=harvest.pk).volume_ml == 58
    assert not AuditEvent.objects.filter(id__gt=seq, action__in=["update", "void"]).exists()
    # Voiding from the stale version is refused the same way.
    status, body = call(
        "POST", f"/harvests/{harvest.pk}/void", headers, {"expected_version": 1, "reason": "x"}
    )
    assert status == 409 and body["current_version"] == 2


def test_reason_is_required_and_fields_are_checked(world: World) -> None:
    harvest = world.records["harvests"]
    headers = bearer(world.clinician)
    assert call("PATCH", f"/harvests/{harvest.pk}", headers, {"expected_version": 1, "volume_ml": 5})[0] == 422  # fmt: skip
    assert call("PATCH", f"/harvests/{harvest.pk}", headers, {"expected_version": 1, "reason": "", "volume_ml": 5})[0] == 422  # fmt: skip
    status, body = call(
        "PATCH", f"/harvests/{harvest.pk}", headers,
        {"expected_version": 1, "reason": "r", "harvested_on": "2024-03-09"},
    )  # fmt: skip
    assert status == 422 and "after the processing date" in json.dumps(body)
    status, body = call(
        "PATCH", f"/harvests/{harvest.pk}", headers,
        {"expected_version": 1, "reason": "r", "harvested_on": "2999-01-01"},
    )  # fmt: skip
    assert status == 422 and body["type"] == "urn:vertebra:problem:validation-error"
    assert body["errors"][0]["field"] == "harvested_on" and body["errors"][0]["msg"]
    assert body["errors"][0]["loc"] == ["body", "harvested_on"]
    assert Harvest.objects.get(pk=harvest.pk).version == 1


def test_permissions_and_clinic_isolation(world: World) -> None:
    other = build_world("API Far Clinic")
    headers = bearer(world.clinician)
    far = other.records["harvests"]
    for method, path, body in (
        ("PATCH", f"/harvests/{far.pk}", {"expected_version": 1, "reason": "r", "volume_ml": 1}),
        ("POST", f"/harvests/{far.pk}/void", {"expected_version": 1, "reason": "r"}),
        ("GET", f"/harvests/{far.pk}/history", None),
        ("PATCH", "/harvests/987654", {"expected_version": 1, "reason": "r", "volume_ml": 1}),
        ("GET", "/harvests/987654/history", None),
    ):
        status, out = call(method, path, headers, body)
        not_found = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "Not found."}  # fmt: skip
        assert (status, out) == (404, not_found), path
    coordinator = bearer(world.coordinator)
    harvest = world.records["harvests"]
    status, _ = call("PATCH", f"/harvests/{harvest.pk}", coordinator, {"expected_version": 1, "reason": "r", "volume_ml": 1})  # fmt: skip
    assert status == 403
    event = world.records["adverse-events"]
    status, _ = call("PATCH", f"/adverse-events/{event.pk}", coordinator, {"expected_version": 1, "reason": "r", "ctcae_grade": 3})  # fmt: skip
    assert status == 403
    status, out = call("PATCH", f"/adverse-events/{event.pk}", coordinator, {"expected_version": 1, "reason": "r", "description": "Flare"})  # fmt: skip
    assert status == 200 and out["values"]["description"] == "Flare"
    assert call("GET", f"/harvests/{harvest.pk}/history", bearer(world.clinic_admin))[0] == 200


def test_a_new_treatment_date_moves_the_follow_up_and_says_so(world: World) -> None:
    episode = world.records["episodes"]
    headers = bearer(world.coordinator)
    status, out = call(
        "PATCH", f"/episodes/{episode.pk}", headers,
        {"expected_version": 1, "reason": "typo", "start_date": "2024-02-29"},
    )  # fmt: skip
    assert status == 200 and out["values"]["start_date"] == "2024-02-29"
    assert out["notes"][0] == "Follow-up schedule recomputed from the treatment date 29 Feb 2024."
    week6 = FollowUpTimePoint.objects.get(schedule__episode=episode, key="week_6")
    assert week6.target == dt.date(2024, 4, 11)


def test_answers_are_rescored(world: World) -> None:
    response = world.records["followup-answers"]
    status, out = call(
        "PATCH", f"/followup-answers/{response.pk}", bearer(world.coordinator),
        {"expected_version": 1, "reason": "paper form", "answers": {"pain_back": 9}},
    )  # fmt: skip
    assert status == 200 and out["values"]["score"] == 9 and out["values"]["answers"] == {"pain_back": 9}  # fmt: skip
    status, out = call(
        "PATCH", f"/followup-answers/{response.pk}", bearer(world.coordinator),
        {"expected_version": 2, "reason": "paper form", "answers": {"pain_back": 12}},
    )  # fmt: skip
    assert status == 422 and out["errors"][0]["loc"] == ["body", "answers"]
    assert out["errors"][0]["field"] == "answers" and out["errors"][0]["msg"]
