"""Import: export -> import into an empty registry -> export gives equivalent resources;
malformed input writes nothing; a refused patient is rolled back whole; re-runs skip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from tests.fhir.conftest import NOW, TODAY
from tests.fhir.test_export import read_export
from vertebra.interop.export import export_fhir
from vertebra.interop.importer import ImportFormatError, ImportSetupError, import_fhir_folder
from vertebra.registry import models as m
from vertebra.registry.audit import verify_audit_chain

pytestmark = pytest.mark.django_db

#: Resource types the import carries (MedicationStatement: those derived from answers).
CARRIED = ("Patient", "Condition", "Consent", "Procedure", "QuestionnaireResponse", "Observation",
           "MedicationStatement")  # fmt: skip


class _Rollback(Exception):
    pass


@pytest.fixture
def source(db: Any, tmp_path: Path) -> Path:
    """An export of a 40-patient registry, taken in a savepoint that is then rolled back, so
    the test continues with an empty registry (as another registry's export would arrive)."""
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort

    out = tmp_path / "source"
    with pytest.raises(_Rollback), transaction.atomic():
        load_cohort(generate_cohort(40, 21, today=TODAY), now=NOW)
        export_fhir(out, now=NOW)
        raise _Rollback
    assert not m.Patient.objects.exists()
    return out


@pytest.fixture
def clinic(db: Any) -> m.Clinic:
    """An empty clinic with a clinician ("importer") who runs the import."""
    clinic = m.Clinic.objects.create(name="Receiving clinic")
    user = get_user_model().objects.create(username="importer")
    m.Membership.objects.create(user=user, clinic=clinic, role="clinician")
    return clinic


def comparable(exported: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """The carried resources with registry ids replaced by natural keys (MRN, arm and date),
    as sorted canonical JSON per type."""
    mrn = {
        f"Patient/{p['id']}": next(i["value"] for i in p["identifier"] if i.get("use") == "usual")
        for p in exported["Patient"]
    }
    episodes = {
        f"Procedure/{p['id']}": f"{mrn[p['subject']['reference']]}:{p['code']['coding'][0]['code']}"
        f":{p['performedPeriod']['start']}"
        for p in exported["Procedure"]
        if p["id"].startswith("episode-")
    }
    responses = {
        f"QuestionnaireResponse/{q['id']}": f"{mrn[q['subject']['reference']]}:{q['questionnaire']}"
        f":{q['authored']}"
        for q in exported["QuestionnaireResponse"]
    }
    natural = {**mrn, **episodes, **responses}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("reference"), str):
                return {"reference": natural.get(value["reference"], "(not carried)")}
            return {
                k: clean(v) for k, v in value.items() if k not in ("id", "managingOrganization")
            }
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    def carried(kind: str, resource: dict[str, Any]) -> bool:
        if kind == "Procedure":
            return str(resource["id"]).startswith("episode-")
        if kind == "MedicationStatement":
            return str(resource["id"]).startswith("opioid-")
        return True

    result = {}
    for kind in CARRIED:
        items = []
        for resource in exported.get(kind, []):
            if not carried(kind, resource):
                continue
            resource = clean(resource)
            if kind == "Patient":  # the MRN's system names the clinic, the registry id differs
                resource["identifier"] = [
                    {"value": i["value"]} for i in resource["identifier"] if i.get("use") == "usual"
                ]
            resource.pop("identifier", None) if kind == "QuestionnaireResponse" else None
            items.append(json.dumps(resource, sort_keys=True))
        result[kind] = sorted(items)
    return result


def test_export_import_export_gives_equivalent_resources(
    source: Path, clinic: m.Clinic, tmp_path: Path
) -> None:
    report = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW
    )
    assert report.failed == [] and report.skipped == [] and report.imported == 40
    again = tmp_path / "again"
    export_fhir(again, now=NOW)
    before, after = comparable(read_export(source)), comparable(read_export(again))
    for kind in CARRIED:
        assert after[kind] == before[kind], kind
    assert len(after["QuestionnaireResponse"]) == report.counts["QuestionnaireResponse"] > 0
    # Every write went through the services, each with its audit row, as the importing user.
    importer = set(m.AuditEvent.objects.values_list("actor_username", flat=True))
    assert "importer" in importer
    assert (
        m.AuditEvent.objects.filter(actor_username="importer", object_type="patient").count() == 40
    )
    assert verify_audit_chain() == []


def test_a_rerun_skips_the_patients_already_imported(source: Path, clinic: m.Clinic) -> None:
    first = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW
    )
    second = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW
    )
    assert first.imported == 40 and second.imported == 0 and len(second.skipped) == 40
    assert m.Patient.objects.count() == 40


def _rewrite(path: Path, change: Any) -> None:
    """Apply ``change(list of resources)`` to an NDJSON file in place."""
    items = [json.loads(line) for line in path.read_text().splitlines()]
    change(items)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


@pytest.mark.parametrize(
    ("file", "breakage", "message"),
    [
        ("Patient.ndjson", lambda lines: lines.insert(1, "{not json"), "Patient.ndjson line 2: not valid JSON"),
        ("Condition.ndjson", lambda lines: lines.insert(0, '{"resourceType": "Patient", "id": "x"}'),
         "Condition.ndjson line 1: resourceType 'Patient', expected 'Condition'"),
        ("Patient.ndjson", lambda lines: lines.insert(2, '{"resourceType": "Patient", "birthDate": "1970-13-01"}'),
         "Patient.ndjson line 3: Patient/? is not valid FHIR R4"),
        ("QuestionnaireResponse.ndjson", lambda lines: lines.append('{"resourceType": "QuestionnaireResponse", '
         '"status": "completed", "questionnaire": "x"}'), "QuestionnaireResponse.ndjson line "),
    ],
)  # fmt: skip
def test_a_malformed_line_stops_the_import_before_any_write(
    source: Path, clinic: m.Clinic, file: str, breakage: Any, message: str
) -> None:
    path = source / file
    lines = path.read_text().splitlines()
    breakage(lines)
    path.write_text("\n".join(lines) + "\n")
    audit_rows = m.AuditEvent.objects.count()
    with pytest.raises(ImportFormatError) as caught:
        import_fhir_folder(source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW)
    assert str(caught.value).startswith(message)
    assert not m.Patient.objects.exists() and m.AuditEvent.objects.count() == audit_rows


def test_a_refused_patient_is_rolled_back_whole(source: Path, clinic: m.Clinic) -> None:
    """A response of another instrument version: that patient (and only that patient) fails,
    and nothing of theirs stays (no patient row, no diagnosis, no episode)."""
    victim: dict[str, str] = {}

    def older_odi(items: list[dict[str, Any]]) -> None:
        odi = next(i for i in items if "/Questionnaire/odi|" in i["questionnaire"])
        odi["questionnaire"] = odi["questionnaire"].replace("|2.1a", "|2.0")
        victim["ref"] = odi["subject"]["reference"]

    _rewrite(source / "QuestionnaireResponse.ndjson", older_odi)
    patients = {f"Patient/{p['id']}": p for p in read_export(source)["Patient"]}
    mrn = next(i["value"] for i in patients[victim["ref"]]["identifier"] if i.get("use") == "usual")
    report = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW
    )
    assert report.imported == 39 and len(report.failed) == 1
    assert f"MRN {mrn}" in report.failed[0] and "version 2.0" in report.failed[0]
    assert not m.Patient.objects.filter(mrn=mrn).exists()
    assert m.TreatmentEpisode.objects.count() == 39 and m.Diagnosis.objects.count() == 39
    assert verify_audit_chain() == []


def test_the_importing_user_must_hold_a_clinic_role(source: Path, clinic: m.Clinic) -> None:
    get_user_model().objects.create(username="outsider")
    with pytest.raises(ImportSetupError, match="not a clinician or coordinator"):
        import_fhir_folder(source, clinic_id=clinic.pk, username="outsider", today=TODAY, now=NOW)
    with pytest.raises(ImportSetupError, match="no clinic"):
        import_fhir_folder(
            source, clinic_id=clinic.pk + 1000, username="importer", today=TODAY, now=NOW
        )
    assert not m.Patient.objects.exists()


def test_imported_answers_service_checks_clinic_and_completion(loaded: None) -> None:
    """The follow-up service the import uses: staff of the patient's clinic only; scored by
    the core; a time point that has answers is not answered twice."""
    from vertebra.followup.errors import AlreadyCompleted, SubmissionInvalid
    from vertebra.followup.models import FollowUpTimePoint, QuestionnaireResponse
    from vertebra.followup.services import ImportedAnswers, record_imported_answers
    from vertebra.registry.errors import NotFound
    from vertebra.registry.permissions import Actor

    point = FollowUpTimePoint.objects.exclude(status="completed").select_related("patient").first()
    assert point is not None
    home = point.patient.clinic_id
    other = m.Clinic.objects.exclude(pk=home).values_list("pk", flat=True).first()
    users = get_user_model().objects
    mine = Actor.for_user(users.get(username=f"clinician-c{home}"), "clinician")
    theirs = Actor.for_user(users.get(username=f"clinician-c{other}"), "clinician")
    answers = {"nrs_back": ImportedAnswers("1.0", {"pain_back": 6}, NOW)}
    call = dict(time_point_id=point.pk, answers_by_instrument=answers, source="test", now=NOW)
    with pytest.raises(NotFound):
        record_imported_answers(actor=theirs, **call)
    assert m.AuditEvent.objects.filter(
        action="denied", actor_username=f"clinician-c{other}"
    ).exists()
    with pytest.raises(SubmissionInvalid, match=r"version 1\.0"):
        record_imported_answers(actor=mine, **{**call, "answers_by_instrument": {
            "odi": ImportedAnswers("1.0", {"pain_intensity": 1}, NOW)}})  # fmt: skip
    record_imported_answers(actor=mine, **call)
    stored = QuestionnaireResponse.objects.get(time_point=point)
    assert stored.score == 6.0 and stored.submitted_at == NOW
    point.refresh_from_db()
    assert point.status == "completed" and point.completed_at == NOW
    with pytest.raises(AlreadyCompleted):
        record_imported_answers(actor=mine, **call)
    assert verify_audit_chain() == []
