"""The export from a loaded registry: every line valid R4, counts match the database, every
reference resolves, the export is audited, and reading costs a fixed number of queries."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.fhir.conftest import NOW
from tests.fhir.expected import expected_counts
from vertebra.core.fhir import RESOURCE_TYPES, validate_resource
from vertebra.interop.export import AUDIT_OBJECT_TYPE, export_fhir
from vertebra.interop.selectors import read_chunk, scope_of
from vertebra.registry import models as m
from vertebra.registry.audit import verify_audit_chain

pytestmark = pytest.mark.django_db


def clinic_ids() -> list[int]:
    """The loaded clinics' ids (PostgreSQL sequences do not restart between tests)."""
    return list(m.Clinic.objects.order_by("pk").values_list("pk", flat=True))


def read_export(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every resource of an export folder, by file; each line must be one JSON object."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*.ndjson")):
        lines = path.read_text(encoding="utf-8").splitlines()
        found[path.stem] = [json.loads(line) for line in lines]
        assert all(r["resourceType"] == path.stem for r in found[path.stem])
    return found


def test_every_resource_is_valid_and_counts_match_the_database(
    loaded: None, tmp_path: Path
) -> None:
    summary = export_fhir(tmp_path, now=NOW, chunk_size=7)  # small chunks: many boundaries
    exported = read_export(tmp_path)
    expected = expected_counts()
    assert {kind: len(items) for kind, items in exported.items()} == {
        kind: n for kind, n in expected.items() if n
    }
    assert summary.counts == {kind: n for kind, n in expected.items() if n}
    assert summary.n_patients == 40
    for items in exported.values():
        for resource in items:
            validate_resource(resource)
        ids = [r["id"] for r in items]
        assert len(ids) == len(set(ids)), "resource ids are unique per type"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [o["type"] for o in manifest["output"]] == [t for t in RESOURCE_TYPES if expected[t]]
    assert {o["url"]: o["count"] for o in manifest["output"]} == {
        f"{kind}.ndjson": len(items) for kind, items in exported.items()
    }
    assert (
        manifest["requiresAccessToken"] is False and manifest["extension"]["vertebra"]["identified"]
    )


def _references(value: Any) -> list[str]:
    """Every literal reference string inside a resource."""
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def test_every_reference_resolves_within_the_export(loaded: None, tmp_path: Path) -> None:
    export_fhir(tmp_path, now=NOW)
    exported = read_export(tmp_path)
    present = {f"{r['resourceType']}/{r['id']}" for items in exported.values() for r in items}
    dangling = {
        ref for items in exported.values() for r in items for ref in _references(r)
    } - present
    assert dangling == set()


def test_the_export_is_audited_before_it_reads(loaded: None, tmp_path: Path) -> None:
    first = clinic_ids()[0]
    export_fhir(tmp_path, clinic_ids=[first], now=NOW)
    row = m.AuditEvent.objects.get(object_type=AUDIT_OBJECT_TYPE)
    assert row.actor_username == "system:export-fhir" and row.action == "read"
    assert row.new_values["clinics"] == [first] and row.new_values["identified"] is True
    assert row.new_values["n_patients"] == m.Patient.objects.filter(clinic_id=first).count()
    assert verify_audit_chain() == []


def test_one_clinic_only(loaded: None, tmp_path: Path) -> None:
    second = clinic_ids()[1]
    export_fhir(tmp_path, clinic_ids=[second], now=NOW)
    exported = read_export(tmp_path)
    expected = expected_counts([second])
    assert {kind: len(items) for kind, items in exported.items()} == {
        kind: n for kind, n in expected.items() if n
    }
    assert {r["managingOrganization"]["reference"] for r in exported["Patient"]} == {
        f"Organization/clinic-{second}"
    }
    assert [r["id"] for r in exported["Organization"]] == [f"clinic-{second}"]


def test_unknown_clinic_is_refused_before_anything_is_written(loaded: None, tmp_path: Path) -> None:
    missing = max(clinic_ids()) + 1
    with pytest.raises(LookupError, match=f"no clinic with id {missing}"):
        export_fhir(tmp_path / "out", clinic_ids=[missing], now=NOW)
    assert not (tmp_path / "out").exists()
    assert not m.AuditEvent.objects.filter(object_type=AUDIT_OBJECT_TYPE).exists()


def test_a_rerun_replaces_the_previous_files(loaded: None, tmp_path: Path) -> None:
    export_fhir(tmp_path, now=NOW)
    third = clinic_ids()[2]
    export_fhir(tmp_path, clinic_ids=[third], now=NOW)
    assert (
        len(read_export(tmp_path)["Patient"]) == m.Patient.objects.filter(clinic_id=third).count()
    )


def test_a_chunk_costs_a_fixed_number_of_queries(loaded: None) -> None:
    """No per-object queries: a chunk of 40 patients costs what a chunk of 2 does."""
    ids = scope_of([]).patient_ids
    with CaptureQueriesContext(connection) as small:
        few = read_chunk(ids[0], ids[1])
    with CaptureQueriesContext(connection) as large:
        many = read_chunk(ids[0], ids[-1])
    assert len(few.patients) == 2 and len(many.patients) == 40
    assert len(small.captured_queries) == len(large.captured_queries) == 11
    assert Counter(r.instrument_id for r in many.responses)["odi"] > 0
