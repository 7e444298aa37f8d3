"""The access matrix: every /clinic/ page and every registry API route × every role ×
{own clinic's object, other clinic's object, nonexistent id}, against the checked-in
expectation in ``access_matrix.yaml``.

Requirement ids: HIPAA-164.312(a)(1), OWASP API1 (BOLA: another clinic's object answers exactly
like a missing one), T9/T10. Besides the status, every response body is searched for the other
clinic's patient (name, MRN, email, product id): none may ever appear, whatever the status.

To regenerate the expectation after a deliberate change of the permission matrix, run with
``VERTEBRA_WRITE_ACCESS_MATRIX=1`` and review the diff of the YAML like code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient, make_user
from tests.registry.web import MODEL_BACKEND
from vertebra.registry import services
from vertebra.registry.models import (
    AdverseEvent,
    ApiToken,
    Clinic,
    Harvest,
    Patient,
    PatientAccount,
    Role,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

EXPECTATION = Path(__file__).with_name("access_matrix.yaml")
ROLES = (
    "anonymous",
    "patient",
    "clinician",
    "coordinator",
    "clinic_admin",
    "researcher",
    "registry_admin",
)
TARGETS = ("own", "other", "missing")
MISSING_ID = 987_654_321


@dataclass
class Side:
    """One clinic's objects: a patient with an episode at each pathway stage and an AE."""

    clinic: Clinic
    patient: Patient
    episode_new: TreatmentEpisode  # no harvest yet
    harvest: Harvest  # harvested, not processed
    episode_ready: TreatmentEpisode  # processed product, sterility passed
    product_id: str
    adverse_event: AdverseEvent


def _side(name: str, **patient_fields: Any) -> Side:
    clinic = make_clinic(name)
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = make_patient(clinic, **patient_fields)
    start = services.start_episode
    episode_new = start(actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0)
    episode_h = start(actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0)
    harvest = services.record_harvest(
        actor=clinician, episode_id=episode_h.pk, source="adipose", harvested_on=DAY0
    )
    episode_ready = start(
        actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0
    )
    services.record_harvest(
        actor=clinician, episode_id=episode_ready.pk, source="adipose", harvested_on=DAY0
    )
    product_id = f"PROD-{name.upper().replace(' ', '-')}-SECRET"
    services.record_processing(
        actor=clinician, episode_id=episode_ready.pk, method="svf", lab="Lab",
        processed_on=DAY0, product_id=product_id, sterility="pass",
    )  # fmt: skip
    event = services.record_adverse_event(
        actor=clinician, patient_id=patient.pk, description=f"AE at {name}",
        category="pain_flare", onset=DAY0,
    )  # fmt: skip
    return Side(clinic, patient, episode_new, harvest, episode_ready, product_id, event)


@dataclass
class World:
    own: Side
    other: Side
    actors: dict[str, Any]  # role → Actor (staff), User (patient) or None (anonymous)
    secrets: tuple[str, ...]  # values of the other clinic's patient that must never leak


@pytest.fixture
def world() -> World:
    own = _side("Own Clinic")
    other = _side(
        "Other Clinic",
        given_name="Zebulon",
        family_name="Quixote-Otherclinic",
        mrn="SECRET-MRN-777",
        email="hidden.other@example.org",
    )
    patient_user = make_user()
    PatientAccount.objects.create(user=patient_user, patient=own.patient)
    actors: dict[str, Any] = {"anonymous": None, "patient": patient_user}
    for role in (Role.CLINICIAN, Role.COORDINATOR, Role.CLINIC_ADMIN):
        actors[role.value] = make_actor(role, own.clinic)
    for role in (Role.RESEARCHER, Role.REGISTRY_ADMIN):
        actors[role.value] = make_actor(role)
    secrets = (
        other.patient.family_name,
        other.patient.mrn,
        other.patient.email,
        other.product_id,
        "AE at Other Clinic",
    )
    return World(own, other, actors, secrets)


def _ids(world: World, target: str, kind: str | None) -> dict[str, Any]:
    """Path values for ``target``: the own side's object, the other's, or a missing id."""
    if target == "missing":
        return dict.fromkeys(("patient", "episode_new", "harvest", "episode_ready", "ae", "clinic"), MISSING_ID) | {"product": "NO-SUCH-PRODUCT"}  # fmt: skip
    side = world.own if target == "own" else world.other
    return {
        "patient": side.patient.pk,
        "episode_new": side.episode_new.pk,
        "harvest": side.harvest.pk,
        "episode_ready": side.episode_ready.pk,
        "ae": side.adverse_event.pk,
        "clinic": side.clinic.pk,
        "product": side.product_id,
    }


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # str.format template over the keys of _ids
    body: dict[str, Any] | None = None  # values may be format templates too

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")


P = "/clinic/patients/{patient}"
A = "/api/v1"
ROUTES = (
    Route("page patient list", "GET", "/clinic/"),
    Route("page register patient", "GET", "/clinic/patients/new/"),
    Route("page patient", "GET", P + "/"),
    Route("page edit patient", "GET", P + "/edit/"),
    Route("page consent", "GET", P + "/consents/new/"),
    Route("page diagnosis", "GET", P + "/diagnoses/new/"),
    Route("page prior treatment", "GET", P + "/prior-treatments/new/"),
    Route("page screening", "GET", P + "/screenings/new/"),
    Route("page episode", "GET", P + "/episodes/new/"),
    Route("page adverse event", "GET", P + "/adverse-events/new/"),
    Route("page clinical event", "GET", P + "/clinical-events/new/"),
    Route("page harvest", "GET", "/clinic/episodes/{episode_new}/harvest/"),
    Route("page processing", "GET", "/clinic/episodes/{harvest_episode}/processing/"),
    Route("page injection", "GET", "/clinic/episodes/{episode_ready}/injections/new/"),
    Route("page correct patient", "GET", "/clinic/records/patients/{patient}/correct/"),
    Route("page void patient", "GET", "/clinic/records/patients/{patient}/void/"),
    Route("page patient history", "GET", "/clinic/records/patients/{patient}/history/"),
    Route("page correct episode", "GET", "/clinic/records/episodes/{episode_new}/correct/"),
    Route("page correct harvest", "GET", "/clinic/records/harvests/{harvest}/correct/"),
    Route("page void harvest", "GET", "/clinic/records/harvests/{harvest}/void/"),
    Route("page harvest history", "GET", "/clinic/records/harvests/{harvest}/history/"),
    Route("page correct adverse event", "GET", "/clinic/records/adverse-events/{ae}/correct/"),
    Route("page void adverse event", "GET", "/clinic/records/adverse-events/{ae}/void/"),
    Route("page adverse event history", "GET", "/clinic/records/adverse-events/{ae}/history/"),
    Route("page adjudication queue", "GET", "/clinic/adverse-events/"),
    Route("page adjudicate", "GET", "/clinic/adverse-events/{ae}/adjudicate/"),
    Route("page clinic directory entry", "GET", "/clinic/directory/{clinic}/"),
    Route("page publish in directory", "POST", "/clinic/directory/{clinic}/publish/"),
    Route("api list patients", "GET", A + "/patients"),
    Route(
        "api register patient",
        "POST",
        A + "/patients",
        {
            "clinic_id": "{clinic}",
            "mrn": "{mrn}",
            "given_name": "N",
            "family_name": "N",
            "date_of_birth": "1970-01-01",
            "sex": "other",
        },
    ),
    Route("api get patient", "GET", A + "/patients/{patient}"),
    Route(
        "api edit patient",
        "PATCH",
        A + "/patients/{patient}",
        {"expected_version": "{version}", "reason": "matrix", "given_name": "Changed"},
    ),
    Route("api list diagnoses", "GET", A + "/patients/{patient}/diagnoses"),
    Route(
        "api record diagnosis",
        "POST",
        A + "/patients/{patient}/diagnoses",
        {"condition": "sciatica", "icd10": "M54.31", "diagnosed_on": "2024-03-01"},
    ),
    Route("api list episodes", "GET", A + "/patients/{patient}/episodes"),
    Route(
        "api start episode",
        "POST",
        A + "/patients/{patient}/episodes",
        {"arm": "cell_therapy", "start_date": "2024-03-01"},
    ),
    Route(
        "api record harvest",
        "POST",
        A + "/episodes/{episode_new}/harvest",
        {"source": "bone_marrow_iliac_crest", "harvested_on": "2024-03-01"},
    ),
    Route(
        "api record processing",
        "POST",
        A + "/harvests/{harvest}/processing",
        {"method": "bmac", "lab": "Lab", "processed_on": "2024-03-01", "product_id": "NEW-PROD"},
    ),
    Route(
        "api record injection",
        "POST",
        A + "/episodes/{episode_ready}/injections",
        {
            "levels": ["L4-L5"],
            "target": "intradiscal",
            "guidance": "fluoroscopy",
            "volume_ml": 2,
            "injected_on": "2024-03-02",
            "product_id": "{product}",
        },
    ),
    Route(
        "api correct harvest",
        "PATCH",
        A + "/harvests/{harvest}",
        {"expected_version": "{v_harvest}", "reason": "matrix", "volume_ml": 70},
    ),
    Route(
        "api correct episode",
        "PATCH",
        A + "/episodes/{episode_new}",
        {"expected_version": "{v_episode_new}", "reason": "matrix", "start_date": "2024-03-01"},
    ),
    Route(
        "api correct adverse event",
        "PATCH",
        A + "/adverse-events/{ae}",
        {"expected_version": "{v_ae}", "reason": "matrix", "description": "Matrix correction"},
    ),
    # A stale version: every role allowed to void meets 409 and nothing is voided, so each
    # role meets the same object.
    Route(
        "api void adverse event (stale)",
        "POST",
        A + "/adverse-events/{ae}/void",
        {"expected_version": 999999, "reason": "matrix"},
    ),
    Route("api harvest history", "GET", A + "/harvests/{harvest}/history"),
    Route("api patient history", "GET", A + "/patients/{patient}/history"),
    Route("api list adverse events", "GET", A + "/patients/{patient}/adverse-events"),
    Route(
        "api report adverse event",
        "POST",
        A + "/patients/{patient}/adverse-events",
        {"description": "Matrix AE", "category": "other", "onset": "2024-03-01"},
    ),
    Route(
        "api record screening",
        "POST",
        A + "/patients/{patient}/screenings",
        {"facts": {"red_flags": [], "age": 52}},
    ),
    Route("api adjudication queue", "GET", A + "/adverse-events"),
    Route(
        "api adjudicate adverse event",
        "POST",
        A + "/adverse-events/{ae}/adjudicate",
        {"ctcae_grade": 1, "serious": False, "relatedness": "procedure", "expected": True},
    ),
)


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """Format a template value; a whole-template placeholder keeps its type (ids stay ints)."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


def _client(world: World, role: str, api: bool) -> tuple[Client, dict[str, str]]:
    """A client for ``role``: a session for pages, a bearer token for the API."""
    client, headers = Client(), {}
    who = world.actors[role]
    if who is None:
        return client, headers
    if not api:
        client.force_login(getattr(who, "user", who), backend=MODEL_BACKEND)
    elif isinstance(who, Actor):
        _, raw = services.issue_api_token(actor=who)
        headers["Authorization"] = f"Bearer {raw}"
    else:
        # A patient cannot be issued a token; a forged row naming a staff role they do not hold
        # must not authenticate either.
        raw = services.TOKEN_PREFIX + "patient-forged-token"
        ApiToken.objects.create(
            user=who, role=Role.CLINICIAN, token_hash=services.hash_token(raw),
            prefix=raw[:12], expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        )  # fmt: skip
        headers["Authorization"] = f"Bearer {raw}"
    return client, headers


def _request(client: Client, route: Route, ids: dict[str, Any], headers: dict[str, str]) -> Any:
    path = route.path.format(**ids)
    if route.method == "GET":
        return client.get(path, headers=headers)
    body = {key: _fill(value, ids) for key, value in (route.body or {}).items()}
    send = getattr(client, route.method.lower())
    return send(path, data=json.dumps(body), content_type="application/json", headers=headers)


def _observe(world: World, route: Route) -> dict[str, list[int]]:
    """Run ``route`` for every role and target; check no response leaks the other patient."""
    observed: dict[str, list[int]] = {}
    for role in ROLES:
        client, headers = _client(world, role, route.is_api)
        statuses = []
        for target in TARGETS:
            ids = _ids(world, target, None)
            side = world.own if target == "own" else world.other
            ids["harvest_episode"] = side.harvest.episode_id if target != "missing" else MISSING_ID
            # Earlier roles' writes must not change what this one meets: a fresh MRN, and the
            # patient's current version (each role edits from what it would have read).
            ids["mrn"] = f"API-{role}"
            ids["version"] = (
                Patient.objects.get(pk=side.patient.pk).version if target != "missing" else 1
            )
            for key, model, obj in (
                ("v_harvest", Harvest, side.harvest),
                ("v_episode_new", TreatmentEpisode, side.episode_new),
                ("v_ae", AdverseEvent, side.adverse_event),
            ):
                ids[key] = model.objects.get(pk=obj.pk).version if target != "missing" else 1
            response = _request(client, route, ids, headers)
            body = response.content.decode()
            for secret in world.secrets:
                assert secret not in body, f"{route.name} as {role} on {target} leaked {secret!r}"
            if target != "own" and response.status_code == 404 and route.is_api:
                assert json.loads(body) == {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "Not found.",
                }
            statuses.append(response.status_code)
        observed[role] = statuses
    return observed


def _expected() -> dict[str, dict[str, list[int]]]:
    return yaml.safe_load(EXPECTATION.read_text(encoding="utf-8")) if EXPECTATION.exists() else {}


def test_every_route_is_in_the_expectation_and_back() -> None:
    assert set(_expected()) == {route.name for route in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.name)
def test_access_matrix(world: World, route: Route) -> None:
    observed = _observe(world, route)
    if os.environ.get("VERTEBRA_WRITE_ACCESS_MATRIX"):
        _write(route.name, observed)  # then checked like any other run
    assert observed == _expected()[route.name]


def _write(name: str, observed: dict[str, list[int]]) -> None:
    """Update one route's entry of the expectation file (regeneration mode only)."""
    table = _expected()
    table[name] = observed
    order = [route.name for route in ROUTES]
    lines = [
        "# Access matrix: route → role → HTTP status for",
        "# [own clinic's object, other clinic's object, nonexistent id].",
        "# Checked in; regenerate with VERTEBRA_WRITE_ACCESS_MATRIX=1 and review the diff.",
        "# Pages: 302 = sign-in redirect. API: 401 = no valid token.",
        "# Other clinic's objects must answer exactly like nonexistent ones.",
    ]
    for key in sorted(table, key=lambda k: order.index(k) if k in order else len(order)):
        lines.append(f"{key}:")
        for role in ROLES:
            if role in table[key]:
                lines.append(f"  {role}: {json.dumps(table[key][role])}")
    EXPECTATION.write_text("\n".join(lines) + "\n", encoding="utf-8")
