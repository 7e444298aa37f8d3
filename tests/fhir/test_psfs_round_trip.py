"""PSFS answers in the FHIR export (the PSFS is asked at every time point, issue 18).

The lossless round trip itself (tests/fhir/test_import_lossless.py) runs on the same cohort,
so it covers the PSFS responses too. The activity NAMES are not exported: they live with the
episode (followup.PsfsActivities), not in the answers."""

from __future__ import annotations

from typing import Any

from tests.fhir.test_import_lossless import source  # noqa: F401  (the fixture)


def test_the_source_export_holds_psfs_answers(source: Any) -> None:  # noqa: F811
    texts = [p.read_text() for p in source.rglob("*QuestionnaireResponse*")]
    assert texts and any("psfs" in t for t in texts)
