"""Shared fixtures for the FHIR tests: the code lists, and a small loaded registry."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from vertebra.core.fhir import FhirCodes, fhir_codes

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
BASE = "https://vertebra.example.org/fhir"


@pytest.fixture(scope="session")
def codes() -> FhirCodes:
    return fhir_codes()


@pytest.fixture
def loaded(db: Any) -> None:
    """The registry with a small synthetic cohort (40 patients, 3 clinics, seed 21)."""
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort

    load_cohort(generate_cohort(40, 21, today=TODAY), now=NOW)
