"""Fixtures for registry tests: two clinics and an actor of each role at the first."""

from __future__ import annotations

import pytest

from tests.registry.factories import make_actor, make_clinic, make_patient
from vertebra.registry.models import Clinic, Patient, Role
from vertebra.registry.permissions import Actor


@pytest.fixture
def clinic() -> Clinic:
    return make_clinic("Northside Spine")


@pytest.fixture
def other_clinic() -> Clinic:
    return make_clinic("Southside Spine")


@pytest.fixture
def clinician(clinic: Clinic) -> Actor:
    return make_actor(Role.CLINICIAN, clinic)


@pytest.fixture
def coordinator(clinic: Clinic) -> Actor:
    return make_actor(Role.COORDINATOR, clinic)


@pytest.fixture
def registry_admin() -> Actor:
    return make_actor(Role.REGISTRY_ADMIN)


@pytest.fixture
def patient(clinic: Clinic) -> Patient:
    return make_patient(clinic)


@pytest.fixture
def other_patient(other_clinic: Clinic) -> Patient:
    return make_patient(other_clinic)
