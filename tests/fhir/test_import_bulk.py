"""The bulk import path (ADR 0016) against the careful one: the same export back, the same audit
records (every created row has its ``create`` record, with the service's values), an intact
chain, and every patient the bulk checks do not pass decided by the careful path with the
service's reason. Runs on SQLite and PostgreSQL (whichever DATABASE_URL names)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Model

from tests.fhir.conftest import NOW, TODAY
from tests.fhir.test_export import read_export
from tests.fhir.test_import_lossless import clinic, normalised, source  # noqa: F401 (fixtures)
from vertebra.followup import models as fm
from vertebra.interop import importbulk
from vertebra.interop.export import export_fhir
from vertebra.interop.importer import ImportReport, import_fhir_folder
from vertebra.registry import models as m
from vertebra.registry.audit import verify_audit_chain

pytestmark = pytest.mark.django_db

#: Tables of patient data whose rows each get one ``create`` record (object type -> model).
AUDITED: dict[str, type[Model]] = {
    "patient": m.Patient,
    "consent": m.Consent,
    "diagnosis": m.Diagnosis,
    "priortreatment": m.PriorTreatment,
    "treatmentepisode": m.TreatmentEpisode,
    "harvest": m.Harvest,
    "processing": m.Processing,
    "injection": m.Injection,
    "adverseevent": m.AdverseEvent,
    "clinicalevent": m.ClinicalEvent,
    "followup_schedule": fm.FollowUpSchedule,
    "followup_submission": fm.Submission,
    "psfs_activities": fm.PsfsActivities,
}


class _Rollback(Exception):
    pass


def run(folder: Path, clinic: m.Clinic, **options: Any) -> ImportReport:  # noqa: F811
    return import_fhir_folder(
        folder, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW, **options
    )


def audit_coverage() -> dict[str, Any]:
    """Check that every created patient-data row has exactly one ``create`` record by the
    importer whose ``new_values`` match the row (time points inside their schedule's record,
    responses inside their submission's), and return a content summary of the records that
    does not depend on ids or timestamps."""
    records = m.AuditEvent.objects.filter(actor_username="importer", action="create")
    by_type: dict[str, dict[str, dict[str, Any]]] = {}
    for object_type, object_id, new_values, patient_id in records.values_list(
        "object_type", "object_id", "new_values", "patient_id"
    ):
        assert object_id not in by_type.setdefault(object_type, {}), (object_type, object_id)
        by_type[object_type][object_id] = {**new_values, "_patient": patient_id}
    summary: dict[str, Any] = {}
    for object_type, model in AUDITED.items():
        rows = {str(pk): pk for pk in model._default_manager.values_list("pk", flat=True)}
        assert set(by_type.get(object_type, {})) == set(rows), object_type
        summary[object_type] = len(rows)
    for pk, values in by_type.get("patient", {}).items():
        row = m.Patient.objects.get(pk=pk)
        assert values["mrn"] == row.mrn and values["date_of_birth"] == str(row.date_of_birth)
        assert values["_patient"] == row.pk
    for pk, values in by_type.get("followup_schedule", {}).items():
        keys = fm.FollowUpTimePoint.objects.filter(schedule_id=pk).values_list("key", flat=True)
        assert set(values["time_points"]) == set(keys)
    for pk, values in by_type.get("followup_submission", {}).items():
        made = fm.QuestionnaireResponse.objects.filter(submission_id=pk)
        assert {r.instrument_id: r.score for r in made} == {
            k: v["score"] for k, v in values["responses"].items()
        }

    # What the records say, ids and timestamps left out: equal between the two paths.
    def kept(key: str) -> bool:
        # "episode" (the PSFS names' record) is a row id too
        ids = ("_patient", "id", "reference", "episode")
        return key not in ids and not key.endswith(("_id", "_at"))

    summary["content"] = sorted(
        (kind, json.dumps({k: v for k, v in values.items() if kept(k)}, sort_keys=True))
        for kind, items in by_type.items()
        for values in items.values()
    )
    return summary


def import_and_look(folder: Path, clinic: m.Clinic, out: Path, careful: bool) -> Any:  # noqa: F811
    """Import, check the chain and coverage, export; then roll everything back."""
    looked: dict[str, Any] = {}
    with pytest.raises(_Rollback), transaction.atomic():
        report = run(folder, clinic, careful=careful)
        looked["report"] = report
        looked["rows"] = {kind: (t.read, t.imported, t.present) for kind, t in report.rows()}
        assert verify_audit_chain() == []
        looked["audit"] = audit_coverage()
        export_fhir(out, now=NOW)
        raise _Rollback
    looked["export"] = normalised(read_export(out))
    return looked


def test_bulk_and_careful_give_the_same_registry_and_audit(
    source: Path,  # noqa: F811
    clinic: m.Clinic,  # noqa: F811
    tmp_path: Path,
) -> None:
    careful = import_and_look(source, clinic, tmp_path / "careful", careful=True)
    bulk = import_and_look(source, clinic, tmp_path / "bulk", careful=False)
    assert careful["report"].patients_careful == careful["report"].patients_imported == 40
    # Every patient of the synthetic export passes the bulk checks: none fell back.
    assert bulk["report"].patients_imported == 40 and bulk["report"].patients_careful == 0
    assert bulk["rows"] == careful["rows"]
    assert bulk["export"] == careful["export"]
    assert bulk["audit"] == careful["audit"]
    assert bulk["audit"]["followup_submission"] > 100  # the answers were covered, not skipped
    assert bulk["audit"]["psfs_activities"] > 5  # and the PSFS names


def _rewrite(path: Path, change: Any) -> None:
    items = [json.loads(line) for line in path.read_text().splitlines()]
    change(items)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


def test_patients_the_bulk_checks_or_the_database_refuse_get_the_careful_reason(
    source: Path,  # noqa: F811
    clinic: m.Clinic,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A consent signed before birth and an injection with no product (bulk checks), and a
    product id already used by an earlier patient (the database's unique constraint, inside
    a bulk batch): each refused exactly as the careful path refuses it, with its reason, the
    rest of the batch imported in bulk."""
    patients = [json.loads(line) for line in (source / "Patient.ndjson").read_text().splitlines()]
    first = f"Patient/{patients[0]['id']}"
    taken = {first}  # patients already broken

    def early_consent(items: list[dict[str, Any]]) -> None:
        consent = next(c for c in items if c["patient"]["reference"] == first)
        consent["dateTime"] = "1900-01-02"

    def productless(items: list[dict[str, Any]]) -> None:
        shot = next(
            p for p in items
            if p["id"].startswith("injection") and p["subject"]["reference"] != first
        )  # fmt: skip
        shot.pop("usedReference", None)
        shot.pop("focalDevice", None)
        shot["extension"] = [e for e in shot["extension"] if "used-product" not in e["url"]]
        taken.add(shot["subject"]["reference"])

    def shared_product_id(items: list[dict[str, Any]]) -> None:
        """A later patient's product gets an earlier patient's product id (unique
        registry-wide): only the database's constraint sees it inside a bulk batch."""
        mine = [
            i for i in items
            if any(x["system"].endswith("/sid/product") for x in i.get("identifier", []))
        ]  # fmt: skip
        mine = [i for i in mine if i["collection"]["source"]["reference"] not in taken]
        first_id = next(x for x in mine[0]["identifier"] if x["system"].endswith("/sid/product"))
        later = [i for i in mine if i["collection"]["source"]["reference"] != (
            mine[0]["collection"]["source"]["reference"])]  # fmt: skip
        for x in later[-1]["identifier"]:
            if x["system"].endswith("/sid/product"):
                x["value"] = first_id["value"]

    _rewrite(source / "Consent.ndjson", early_consent)
    _rewrite(source / "Procedure.ndjson", productless)
    _rewrite(source / "BiologicallyDerivedProduct.ndjson", shared_product_id)
    careful = import_and_look(source, clinic, tmp_path / "careful", careful=True)
    bulk = import_and_look(source, clinic, tmp_path / "bulk", careful=False)
    for looked in (careful, bulk):
        assert looked["report"].patients_refused == 3 and looked["report"].patients_imported == 37

    def reasons(report: ImportReport) -> dict[str, dict[str, int]]:  # examples may differ
        return {k: {r: n for r, (n, _) in t.refused.items()} for k, t in report.rows()}

    assert reasons(bulk["report"]) == reasons(careful["report"])
    assert "the injection names no product" in str(reasons(bulk["report"])["Procedure"])
    assert "This product id cannot be used" in str(reasons(bulk["report"]))
    # The failing batch was halved down to the patient: the others stayed in bulk.
    assert 3 <= bulk["report"].patients_careful < 20
    assert bulk["export"] == careful["export"]
    assert bulk["audit"] == careful["audit"]


def test_batch_audit_records_match_record_audit(clinic: m.Clinic) -> None:  # noqa: F811
    """The batch writer's records chain onto the service's and verify (hash and MAC)."""
    from django.contrib.auth import get_user_model

    from vertebra.registry import services
    from vertebra.registry.permissions import Actor

    user = get_user_model().objects.get(username="importer")
    actor = Actor.for_user(user, "clinician")
    services.register_patient(
        actor=actor, clinic_id=clinic.pk, mrn="A1", given_name="A", family_name="B",
        date_of_birth=TODAY.replace(year=1970), sex="female",
    )  # fmt: skip
    with transaction.atomic():
        audit = importbulk.BatchAudit(actor, NOW)
        for n in range(3):
            audit.create("thing", n, clinic_id=clinic.pk, patient_id=None, new_values={"n": n})
        audit.flush()
    services.register_patient(
        actor=actor, clinic_id=clinic.pk, mrn="A2", given_name="A", family_name="C",
        date_of_birth=TODAY.replace(year=1971), sex="male",
    )  # fmt: skip
    assert verify_audit_chain() == []
    assert Counter(m.AuditEvent.objects.values_list("object_type", flat=True)) == {
        "patient": 2, "thing": 3,
    }  # fmt: skip
