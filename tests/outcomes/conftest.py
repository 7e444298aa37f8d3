"""A registry loaded with a small synthetic cohort, and staff actors to read it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import Cohort, generate_cohort

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def synth_cohort() -> Cohort:
    """The synthetic cohort every outcomes test loads (120 patients, 3 clinics, seed 11)."""
    return generate_cohort(120, 11, today=TODAY)


@pytest.fixture
def loaded(db: Any, synth_cohort: Cohort) -> Cohort:
    """The registry with ``synth_cohort`` loaded; returns the cohort for comparisons."""
    load_cohort(synth_cohort, now=NOW)
    return synth_cohort
