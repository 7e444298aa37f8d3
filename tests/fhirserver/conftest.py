"""A small loaded registry (40 patients, 3 clinics) and people with API tokens, for the FHIR
server tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from tests.registry.factories import make_actor
from vertebra.registry import services
from vertebra.registry.models import Clinic, Role

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@dataclass
class World:
    """The clinics (ids, by size) and one API token per (role, clinic) of the tests."""

    clinics: list[int]
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        """Test-client headers for ``who`` (a key of :attr:`tokens`)."""
        return {"HTTP_AUTHORIZATION": f"Bearer {self.tokens[who]}"}


def _load() -> None:
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort

    load_cohort(generate_cohort(40, 21, today=TODAY), now=NOW)


def make_world() -> World:
    """Load the cohort and issue tokens: clinician, coordinator and clinic admin at the first
    clinic, a clinician at the second, a researcher and a registry admin."""
    _load()
    clinics = list(Clinic.objects.order_by("pk").values_list("pk", flat=True))
    first, second = Clinic.objects.get(pk=clinics[0]), Clinic.objects.get(pk=clinics[1])
    people = {
        "clinician": make_actor(Role.CLINICIAN, first),
        "coordinator": make_actor(Role.COORDINATOR, first),
        "clinic_admin": make_actor(Role.CLINIC_ADMIN, first),
        "clinician2": make_actor(Role.CLINICIAN, second),
        "researcher": make_actor(Role.RESEARCHER, first),
        "registry_admin": make_actor(Role.REGISTRY_ADMIN),
    }
    tokens = {who: services.issue_api_token(actor=actor)[1] for who, actor in people.items()}
    return World(clinics=clinics, tokens=tokens)


@pytest.fixture
def world(db: Any) -> World:
    return make_world()
