"""``meta.lastUpdated`` and ``_lastUpdated``: every served and exported resource carries the
last change of its row, a correction or void moves it, and the search prefixes compare with it
in the database."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.fhir.test_export import read_export
from tests.fhirbulk.conftest import NOW, load_registry
from tests.registry.factories import make_actor
from vertebra.core.fhir.rest import date_range
from vertebra.registry import services
from vertebra.registry.corrections import correct_record
from vertebra.registry.models import Clinic, Diagnosis, Role

#: What the bulk loader stamps on every row it writes (its ``now``), as FHIR writes it.
LOADED = "2026-11-25T09:00:00.000Z"


@pytest.fixture
def reader(db: Any) -> dict[str, Any]:
    """A 6-patient registry and a clinician of its first clinic (actor and API token)."""
    clinics = load_registry(6)
    actor = make_actor(Role.CLINICIAN, Clinic.objects.get(pk=clinics[0]))
    token = services.issue_api_token(actor=actor)[1]
    return {"clinic": clinics[0], "actor": actor, "auth": {"HTTP_AUTHORIZATION": f"Bearer {token}"}}


def search(client: Any, reader: dict[str, Any], query: str) -> dict[str, Any]:
    answer = client.get(f"/fhir/{query}", **reader["auth"])
    assert answer.status_code == 200, answer.content[:300]
    return json.loads(answer.content)  # type: ignore[no-any-return]


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_fractional_instants_cover_their_precision() -> None:
    """A millisecond value covers that millisecond, so ``gt`` the value a client saw skips it."""
    found = date_range("gt2026-11-25T09:00:00.123Z")
    assert found.start == dt.datetime(2026, 11, 25, 9, 0, 0, 123000, tzinfo=dt.UTC)
    assert found.end - found.start == dt.timedelta(milliseconds=1)
    assert date_range("2026-11-25T09:00:00Z").end - found.start < dt.timedelta(seconds=1)
    assert date_range("2026-11-25T09:00:00.5+01:00").start.hour == 8


def test_a_correction_moves_last_updated_and_the_search_follows(
    client: Any, reader: dict[str, Any]
) -> None:
    conditions = search(client, reader, "Condition?_count=100")
    assert conditions["total"] > 0
    assert {e["resource"]["meta"]["lastUpdated"] for e in conditions["entry"]} == {LOADED}
    row = Diagnosis.objects.filter(patient__clinic_id=reader["clinic"]).order_by("pk").first()
    assert row is not None
    before = dt.datetime.now(dt.UTC)
    correct_record(
        actor=reader["actor"], record_type="diagnoses", object_id=row.pk,
        expected_version=row.version, changes={"level": "L3-L4" if row.level != "L3-L4" else "L4-L5"},
        reason="imaging re-read",
    )  # fmt: skip
    served = search(client, reader, f"Condition/diagnosis-{row.pk}")
    stamp = served["meta"]["lastUpdated"]
    assert dt.datetime.fromisoformat(stamp) >= before.replace(
        microsecond=before.microsecond // 1000 * 1000
    )
    loaded = quote(LOADED)
    assert ids(search(client, reader, f"Condition?_lastUpdated=gt{loaded}")) == {served["id"]}
    assert ids(search(client, reader, f"Condition?_lastUpdated=eq{quote(stamp)}")) == {served["id"]}
    unchanged = ids(search(client, reader, f"Condition?_lastUpdated=le{loaded}&_count=100"))
    assert unchanged == ids(conditions) - {served["id"]}
    assert ids(search(client, reader, f"Condition?_lastUpdated=ne{loaded}")) == {served["id"]}
    assert ids(search(client, reader, f"Condition?_lastUpdated=lt{loaded}")) == set()
    everything = search(client, reader, "Condition?_lastUpdated=ge2026&_count=100")
    assert everything["total"] == conditions["total"]
    # Year precision: 2026 covers both; the day before the load nothing.
    assert search(client, reader, "Condition?_lastUpdated=2026-11-24")["total"] == 0


def test_a_bad_last_updated_value_is_a_400(client: Any, reader: dict[str, Any]) -> None:
    answer = client.get("/fhir/Patient?_lastUpdated=yesterday", **reader["auth"])
    assert answer.status_code == 400
    assert json.loads(answer.content)["resourceType"] == "OperationOutcome"


def test_every_exported_resource_carries_last_updated(db: Any, tmp_path: Path) -> None:
    from vertebra.interop.export import export_fhir

    load_registry(6)
    export_fhir(tmp_path, now=NOW)
    exported = read_export(tmp_path)
    for kind, items in exported.items():
        for item in items:
            if kind == "Questionnaire":  # shipped definitions, not registry rows
                continue
            assert item["meta"]["lastUpdated"] == LOADED, (kind, item["id"])
