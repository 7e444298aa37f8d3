"""Import: malformed input writes nothing; the importing user must be a clinician there; the
follow-up service the import uses. (Round trip, refusals, identity: test_import_lossless.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from tests.fhir.conftest import NOW, TODAY
from vertebra.interop import importer
from vertebra.interop.export import export_fhir
from vertebra.interop.importer import ImportFormatError, ImportSetupError, import_fhir_folder
from vertebra.registry import models as m
from vertebra.registry.audit import verify_audit_chain

pytestmark = pytest.mark.django_db


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
        ("QuestionnaireResponse.ndjson", lambda lines: lines.append('{"resourceType": "Patient"}'),
         "QuestionnaireResponse.ndjson line "),
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


def test_the_importing_user_must_hold_a_clinic_role(source: Path, clinic: m.Clinic) -> None:
    get_user_model().objects.create(username="outsider")
    with pytest.raises(ImportSetupError, match="not a clinician"):
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


INVALID_R4 = '{"resourceType": "Patient", "birthDate": "1970-13-01"}'


def _read_summary(folder: Path, jobs: int) -> Any:
    """What read_folder found, as comparable values (or the ImportFormatError message)."""
    try:
        found = importer.read_folder(folder, jobs=jobs)
    except ImportFormatError as exc:
        return str(exc)
    bundles = {
        ref: (b.patient, [(i.kind, i.rid, i.line, i.value) for i in b.items()], b.problems)
        for ref, b in found.bundles.items()
    }
    return bundles, found.lots, [(i.kind, i.rid) for i in found.organizations], found.orphans


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (None, None),
        (lambda lines: lines.insert(2, INVALID_R4), "Patient.ndjson line 3: Patient/? is not valid FHIR R4"),
        (lambda lines: (lines.insert(2, INVALID_R4), lines.insert(30, "{not json")),
         "Patient.ndjson line 3: Patient/? is not valid FHIR R4"),
        (lambda lines: (lines.insert(2, "{not json"), lines.insert(30, INVALID_R4)),
         "Patient.ndjson line 3: not valid JSON"),
        (lambda lines: (lines.insert(20, INVALID_R4), lines.insert(30, '{"resourceType": "Condition"}')),
         "Patient.ndjson line 21: Patient/? is not valid FHIR R4"),
    ],
)  # fmt: skip
def test_validation_in_worker_processes_reads_the_same_and_names_the_same_line(
    source: Path, monkeypatch: pytest.MonkeyPatch, breakage: Any, message: str | None
) -> None:
    """R4 validation in worker processes (large exports) gives what validating in the reading
    process gives: the same bundles, or the same first malformed line, whichever chunk of lines
    (7 a task here) it falls in."""
    monkeypatch.setattr(importer, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(importer, "VALIDATE_CHUNK", 7)
    if breakage is not None:
        path = source / "Patient.ndjson"
        lines = path.read_text().splitlines()
        breakage(lines)
        path.write_text("\n".join(lines) + "\n")
    alone, pooled = _read_summary(source, jobs=1), _read_summary(source, jobs=2)
    assert pooled == alone
    if message is None:
        assert isinstance(pooled, tuple) and len(pooled[0]) == 40
    else:
        assert isinstance(pooled, str) and pooled.startswith(message), pooled
