"""PSFS answers and the activities the patient named, through the FHIR export and import.

Every PSFS QuestionnaireResponse carries its episode's activity names, in order, as
``psfs-activity`` extensions (valueString); the import stores them for the episode
(``followup.PsfsActivities``, with its audit record, at the first PSFS point that names them)
on the bulk and the careful path alike, and refuses names the portal would refuse. The full
content round trip (tests/fhir/test_import_lossless.py) compares the re-export, names included.
Runs on SQLite and PostgreSQL (whichever DATABASE_URL names).

Requirement ids: issue 16 (lossless round trip), issue 18 (PSFS names), ADR 0016.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from tests.fhir.test_export import read_export
from tests.fhir.test_import_lossless import (  # noqa: F401  (the fixtures)
    _Rollback,
    clinic,
    run,
    source,
)
from vertebra.core.fhir import fhir_codes
from vertebra.followup.models import PsfsActivities
from vertebra.interop.export import export_fhir
from vertebra.registry import models as m

pytestmark = pytest.mark.django_db

ACTIVITY = fhir_codes().extension_url("psfs-activity")


def _names(resource: dict[str, Any]) -> list[str]:
    return [e["valueString"] for e in resource.get("extension", []) if e["url"] == ACTIVITY]


def _episode_of(resource: dict[str, Any]) -> str:
    return next(
        e["valueReference"]["reference"]
        for e in resource["extension"]
        if e["url"].endswith("/treatment-episode")
    )


def _psfs_names_by_episode(folder: Path) -> dict[tuple[str, str], list[str]]:
    """(patient MRN, episode start) -> the names its PSFS responses carry (all the same)."""
    exported = read_export(folder)
    mrn = {
        f"Patient/{p['id']}": next(i["value"] for i in p["identifier"] if i.get("use") == "usual")
        for p in exported["Patient"]
    }
    start = {
        f"Procedure/{p['id']}": p["performedPeriod"]["start"]
        for p in exported["Procedure"]
        if p["id"].startswith("episode-")
    }
    found: dict[tuple[str, str], list[str]] = {}
    for response in exported["QuestionnaireResponse"]:
        if "/psfs|" not in response["questionnaire"]:
            assert not _names(response)
            continue
        key = (mrn[response["subject"]["reference"]], start[_episode_of(response)])
        assert found.setdefault(key, _names(response)) == _names(response)
    return found


def _stored() -> dict[tuple[str, str], tuple[list[str], str]]:
    """(MRN, episode start) -> (names, key of the time point that named them), in the database."""
    return {
        (row.episode.patient.mrn, row.episode.start_date.isoformat()): (
            row.names,
            row.time_point.key,
        )
        for row in PsfsActivities.objects.select_related("episode__patient", "time_point")
    }


def test_the_export_carries_the_named_activities(source: Path) -> None:  # noqa: F811
    names = _psfs_names_by_episode(source)
    assert names and all(1 <= len(n) <= 5 for n in names.values() if n)
    assert sum(bool(n) for n in names.values()) >= 5


@pytest.mark.parametrize("careful", [False, True], ids=["bulk", "careful"])
def test_names_come_back_on_import_and_in_the_next_export(
    source: Path,  # noqa: F811
    clinic: m.Clinic,  # noqa: F811
    tmp_path: Path,
    careful: bool,
) -> None:
    exported = {k: v for k, v in _psfs_names_by_episode(source).items() if v}
    report = run(source, clinic, careful=careful)
    assert report.n_refused == 0, {k: t.refused for k, t in report.rows() if t.refused}
    stored = _stored()
    assert {k: names for k, (names, _) in stored.items()} == exported
    # named at the episode's first PSFS point, as the portal names them
    assert {point for _, point in stored.values()} <= {"baseline", "m1", "m3", "m6", "m12", "m24"}
    records = m.AuditEvent.objects.filter(object_type="psfs_activities", actor_username="importer")
    assert sorted(tuple(r.new_values["names"]) for r in records) == sorted(
        tuple(n) for n in exported.values()
    )
    assert all(r.new_values["time_point"] == stored_point for r in records
               for (names, stored_point) in stored.values() if names == r.new_values["names"])  # fmt: skip
    again = tmp_path / "again"
    export_fhir(again, now=m.AuditEvent.objects.latest("seq").occurred_at)
    assert {k: v for k, v in _psfs_names_by_episode(again).items() if v} == exported


@pytest.mark.parametrize("careful", [False, True], ids=["bulk", "careful"])
def test_names_the_portal_would_refuse_refuse_the_patient(
    source: Path,  # noqa: F811
    clinic: m.Clinic,  # noqa: F811
    careful: bool,
) -> None:
    path = source / "QuestionnaireResponse.ndjson"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    victim = next(i for i in items if _names(i))
    episode = _episode_of(victim)
    for item in items:  # the same activity twice, on every PSFS response of the episode
        if _names(item) and _episode_of(item) == episode:
            first = next(e for e in item["extension"] if e["url"] == ACTIVITY)
            item["extension"].append(dict(first))
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    with pytest.raises(_Rollback), transaction.atomic():
        report = run(source, clinic, careful=careful)
        raise _Rollback
    assert report.patients_refused == 1
    reasons = " ".join(report.tallies["QuestionnaireResponse"].refused)
    assert "twice" in reasons or "same activity" in reasons, reasons
