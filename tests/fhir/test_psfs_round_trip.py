"""The FHIR round trip with PSFS answers present (the PSFS asked at every time point).

The activity NAMES are not exported (they live with the episode, not in the answers; see the
report of issue 18): this checks that PSFS ratings export, import and re-export unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fhir.test_import_lossless import (  # noqa: F401  (fixtures and the test reused)
    clinic,
    source,
    test_round_trip_is_lossless_for_every_resource_type,
)
from vertebra.followup.services import DEFAULT_INSTRUMENTS


@pytest.fixture(autouse=True)
def _psfs_asked(settings: Any) -> None:
    settings.FOLLOWUP_INSTRUMENTS = {
        key: (*value, "psfs") for key, value in DEFAULT_INSTRUMENTS.items()
    }


def test_the_source_export_holds_psfs_answers(source: Any) -> None:  # noqa: F811
    texts = [p.read_text() for p in source.rglob("*QuestionnaireResponse*")]
    assert texts and any("psfs" in t for t in texts)
