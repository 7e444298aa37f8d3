"""A registry loaded with a small synthetic cohort, and staff actors to read it; and a
migrated SQLite file with a cohort for the real command line (``db_env``)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.migrated import sqlite_database
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


LOAD = """
import datetime as dt, django
django.setup()
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
load_cohort(generate_cohort(60, 5, today=dt.date(2026, 11, 25)),
            now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))
"""


@pytest.fixture(scope="session")
def db_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment pointing the CLI at a migrated SQLite file holding 60 synthetic patients
    (shared by the command-line tests, which only read it and add audit rows)."""
    base = tmp_path_factory.mktemp("clidb")
    env = {
        "DATABASE_URL": sqlite_database(base / "registry.sqlite3"),
        "VERTEBRA_DATA_DIR": str(base),
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    return env
