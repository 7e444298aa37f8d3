"""JSON API for corrections, voids and history: the same three routes for every record type.

For each record type of :mod:`vertebra.registry.corrections` (``patients``, ``consents``,
``diagnoses``, ``prior-treatments``, ``episodes``, ``harvests``, ``processing``,
``injections``, ``adverse-events``, ``clinical-events``, ``followup-answers``):

* ``PATCH /api/v1/<records>/{id}``: the changed fields, ``expected_version`` (the ``version``
  you read) and ``reason``. 200 with the stored record; **409** when the record changed since
  (an RFC 9457 problem of type ``urn:vertebra:problem:stale-edit`` with the extension members
  ``current_version`` and ``changes``: who, when, role, why, each field old → new), nothing
  written; 409 (``urn:vertebra:problem:record-voided``) also for a voided record.
* ``POST /api/v1/<records>/{id}/void``: ``expected_version`` and ``reason``; 200 with the voided
  record (never deleted), 409 as above, 422 when others depend on it (void those first).
* ``GET /api/v1/<records>/{id}/history``: the record and its history, in words.

Same permissions, clinic isolation (another clinic's id: 404 with the same body as a missing
one) and audit as the pages: both call the same services. Field names and allowed values are
those of the record's own creation endpoint; a field not sent is not changed, ``null`` clears
a field that may be empty.

This module has no ``from __future__ import annotations``: the payload types of the routes it
builds in a loop must be real objects for django-ninja to read.
"""

import datetime as dt
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Field, Schema

from vertebra.perimeter.problems import ProblemError
from vertebra.registry import corrections
from vertebra.registry.api import (
    ERRORS,
    MAX_ID,
    Amount,
    ConditionChoice,
    ErrorOut,
    Id,
    LateralityOrBlank,
    LevelChoice,
    LevelOrBlank,
    PatientOut,
    PatientPatch,
    RelatednessOrBlank,
    StenosisOrBlank,
    Text,
    _actor,
    _choices,
    registry_errors,
    router,
)
from vertebra.registry.audit import to_json_value
from vertebra.registry.errors import RecordVoidedError, StaleEditError
from vertebra.registry.models import (
    AdverseEventCategory,
    AdverseEventOutcome,
    Arm,
    CellSource,
    ClinicalEventKind,
    ConsentKind,
    Guidance,
    InjectionTarget,
    PriorTreatmentKind,
    ProcessingMethod,
)

# ------------------------------------------------------------------------ output schemas


class ChangeOut(Schema):
    field: str = Field(description="The field, as people read it.")
    old: str = Field(description="Before, in words ('—' when empty).")
    new: str = Field(description="After, in words.")


class HistoryEntryOut(Schema):
    when: dt.datetime
    who: str
    role: str
    action: str = Field(description="Recorded, Corrected, Voided, ...")
    reason: str
    version: int | None = Field(None, description="The record's version after this change.")
    changes: list[ChangeOut]


class RecordOut(Schema):
    """A correctable record: its version, whether it is voided, and its editable values."""

    record_type: str
    id: int
    version: int = Field(description="Send back as expected_version when correcting or voiding.")
    voided: bool
    voided_at: dt.datetime | None
    void_reason: str
    values: dict[str, Any] = Field(description="The editable (and derived) fields as stored.")
    notes: list[str] = Field(
        default_factory=list, description="What else the change did (follow-up moved, ...)."
    )


class HistoryOut(Schema):
    record: RecordOut
    entries: list[HistoryEntryOut]


class ConflictOut(ErrorOut):
    """409, an RFC 9457 problem: the record changed since you read it (``type``
    ``urn:vertebra:problem:stale-edit``, with ``current_version`` and the ``changes`` you
    missed) or was voided (``urn:vertebra:problem:record-voided``); nothing was written."""

    current_version: int | None = Field(
        None, description="The record's version now: read it again, then send this one."
    )
    changes: list[HistoryEntryOut] = Field(
        default_factory=list, description="The changes made after the version you sent."
    )


class VoidIn(Schema):
    expected_version: int = Field(ge=1, le=MAX_ID)
    reason: Text(500, min_length=1)  # type: ignore[valid-type]


# ------------------------------------------------------------------------ patch schemas


class _Patch(Schema):
    """Changed fields only, with the version you read and why you change it."""

    expected_version: int = Field(ge=1, le=MAX_ID)
    reason: Text(500, min_length=1)  # type: ignore[valid-type]


class ConsentPatch(_Patch):
    kind: _choices(ConsentKind) | None = None  # type: ignore[valid-type]
    form_version: Text(40, min_length=1) | None = None  # type: ignore[valid-type]
    signed_on: dt.date | None = None


class DiagnosisPatch(_Patch):
    condition: ConditionChoice | None = None  # type: ignore[valid-type]
    icd10: Text(8, min_length=1) | None = None  # type: ignore[valid-type]
    diagnosed_on: dt.date | None = None
    level: LevelOrBlank | None = None  # type: ignore[valid-type]
    laterality: LateralityOrBlank | None = None  # type: ignore[valid-type]
    pfirrmann_grade: int | None = Field(None, ge=1, le=5)
    modified_pfirrmann_grade: int | None = Field(None, ge=1, le=8)
    modic_type: int | None = Field(None, ge=0, le=3)
    disc_height_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    spondylolisthesis_grade: int | None = Field(None, ge=0, le=5)
    stenosis: StenosisOrBlank | None = None  # type: ignore[valid-type]


class PriorTreatmentPatch(_Patch):
    kind: _choices(PriorTreatmentKind) | None = None  # type: ignore[valid-type]
    details: Text(5000) | None = None  # type: ignore[valid-type]
    medication_name: Text(100) | None = None  # type: ignore[valid-type]
    daily_dose: Amount(le=1e5) | None = None  # type: ignore[valid-type]
    relief_weeks: int | None = Field(None, ge=0, le=32767)
    started_on: dt.date | None = None
    ended_on: dt.date | None = None


class EpisodePatch(_Patch):
    arm: _choices(Arm) | None = None  # type: ignore[valid-type]
    start_date: dt.date | None = Field(
        None, description="A new treatment date also moves the follow-up schedule."
    )


class HarvestPatch(_Patch):
    source: _choices(CellSource) | None = None  # type: ignore[valid-type]
    volume_ml: Amount(le=1e6) | None = None  # type: ignore[valid-type]
    harvested_on: dt.date | None = None


class ProcessingPatch(_Patch):
    method: _choices(ProcessingMethod) | None = None  # type: ignore[valid-type]
    lab: Text(200, min_length=1) | None = None  # type: ignore[valid-type]
    processed_on: dt.date | None = None
    product_id: Text(64, min_length=1) | None = None  # type: ignore[valid-type]
    tnc_per_ml: Amount(le=1e15) | None = None  # type: ignore[valid-type]
    cfu_f_per_ml: Amount(le=1e15) | None = None  # type: ignore[valid-type]
    cd34_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    viability_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    adjunct_prp: bool | None = None
    adjunct_hyaluronic_acid: bool | None = None


class InjectionPatch(_Patch):
    levels: list[LevelChoice] | None = Field(None, min_length=1, max_length=5)  # type: ignore[valid-type]
    target: _choices(InjectionTarget) | None = None  # type: ignore[valid-type]
    guidance: _choices(Guidance) | None = None  # type: ignore[valid-type]
    volume_ml: Amount(le=1e4) | None = None  # type: ignore[valid-type]
    cell_dose: Amount(le=1e15) | None = None  # type: ignore[valid-type]
    adjunct_prp: bool | None = None
    injected_on: dt.date | None = None


class AdverseEventPatch(_Patch):
    """Grading fields (grade, serious, relatedness, expected) need the adjudication right."""

    description: Text(5000, min_length=1) | None = None  # type: ignore[valid-type]
    category: _choices(AdverseEventCategory) | None = None  # type: ignore[valid-type]
    onset: dt.date | None = None
    outcome: _choices(AdverseEventOutcome) | None = None  # type: ignore[valid-type]
    resolved_on: dt.date | None = None
    ctcae_grade: int | None = Field(None, ge=1, le=5)
    serious: bool | None = None
    relatedness: RelatednessOrBlank | None = None  # type: ignore[valid-type]
    expected: bool | None = None


class ClinicalEventPatch(_Patch):
    kind: _choices(ClinicalEventKind) | None = None  # type: ignore[valid-type]
    occurred_on: dt.date | None = None
    details: Text(5000) | None = None  # type: ignore[valid-type]


AnswerKey = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_]+$")]
AnswerValue = (
    Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
    | Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
    | Text(60)
    | None
)


class AnswersPatch(_Patch):
    """The whole corrected answer set of one instrument (item id → answer); it is re-scored."""

    answers: dict[AnswerKey, AnswerValue] | None = Field(None, max_length=100)  # type: ignore[valid-type]


#: Record type slug → its PATCH body.
PATCHES: dict[str, type[_Patch] | type[PatientPatch]] = {
    "patients": PatientPatch,
    "consents": ConsentPatch,
    "diagnoses": DiagnosisPatch,
    "prior-treatments": PriorTreatmentPatch,
    "episodes": EpisodePatch,
    "harvests": HarvestPatch,
    "processing": ProcessingPatch,
    "injections": InjectionPatch,
    "adverse-events": AdverseEventPatch,
    "clinical-events": ClinicalEventPatch,
    "followup-answers": AnswersPatch,
}

# ------------------------------------------------------------------------ helpers


def _record(kind: corrections.RecordType, record: Any, notes: tuple[str, ...] = ()) -> RecordOut:
    names = [spec.name for spec in (*kind.fields, *kind.derived)]
    return RecordOut(
        record_type=kind.slug,
        id=record.pk,
        version=record.version,
        voided=record.voided_at is not None,
        voided_at=record.voided_at,
        void_reason=record.void_reason,
        values={name: to_json_value(getattr(record, name)) for name in names},
        notes=list(notes),
    )


def record_out(kind: corrections.RecordType, record: Any, notes: tuple[str, ...] = ()) -> Any:
    """The corrected record as PATCH answers it (patients keep their own schema, as before)."""
    return record if kind.slug == "patients" else _record(kind, record, notes)


def _entries(entries: tuple[corrections.HistoryEntry, ...]) -> list[HistoryEntryOut]:
    return [
        HistoryEntryOut(
            when=entry.when,
            who=entry.who,
            role=entry.role,
            action=entry.action,
            reason=entry.reason,
            version=entry.version,
            changes=[ChangeOut(field=c.field, old=c.old, new=c.new) for c in entry.changes],
        )
        for entry in entries
    ]


def stale_problem(actor: Any, slug: str, exc: StaleEditError) -> ProblemError:
    """The 409 problem of a stale edit: the current version and the changes the caller missed
    (extension members, shaped as :class:`ConflictOut` declares them)."""
    current, missed = corrections.changes_since(
        actor=actor, record_type=slug, object_id=int(exc.object_id), version=exc.expected_version
    )
    changes = [entry.model_dump(mode="json") for entry in _entries(missed)]
    return ProblemError(
        409, str(exc), slug="stale-edit", current_version=current.version, changes=changes
    )


def voided_problem(exc: RecordVoidedError) -> ProblemError:
    """The 409 problem of a change to a voided record (nothing to reload: it stays voided)."""
    return ProblemError(409, str(exc), slug="record-voided")


def _changes(kind: corrections.RecordType, payload: Schema) -> dict[str, Any]:
    """The fields the caller sent, except a ``null`` for a field that cannot be empty."""
    data = payload.dict(exclude_unset=True)
    data.pop("expected_version", None)
    data.pop("reason", None)
    model = kind.model._meta
    return {
        name: value
        for name, value in data.items()
        if value is not None or getattr(model.get_field(name), "null", False)
    }


# ------------------------------------------------------------------------ routes

CONFLICT = {409: ConflictOut}


def _add_patch(kind: corrections.RecordType, body: type[Schema]) -> None:
    def run(request: HttpRequest, object_id: int, payload: Any) -> Any:
        actor = _actor(request)
        try:
            outcome = corrections.correct(
                actor=actor,
                record_type=kind.slug,
                object_id=object_id,
                expected_version=payload.expected_version,
                changes=_changes(kind, payload),
                reason=payload.reason,
            )
        except StaleEditError as exc:
            raise stale_problem(actor, kind.slug, exc) from None
        except RecordVoidedError as exc:
            raise voided_problem(exc) from None
        return record_out(kind, outcome.record, outcome.notes)

    def correct(request: HttpRequest, object_id: Id, payload: body) -> Any:  # type: ignore[valid-type]
        return run(request, object_id, payload)

    # The patient's path parameter keeps the name of GET /patients/{patient_id}: one URL
    # pattern must serve both methods.
    def correct_patient(request: HttpRequest, patient_id: Id, payload: body) -> Any:  # type: ignore[valid-type]
        return run(request, patient_id, payload)

    patient = kind.slug == "patients"
    router.patch(
        "/patients/{patient_id}" if patient else f"/{kind.slug}/{{object_id}}",
        response={200: PatientOut if patient else RecordOut, **CONFLICT, **ERRORS},
        summary=f"Correct a {kind.noun} (reason required, optimistic locking)",
        operation_id=f"correct_{kind.slug.replace('-', '_')}",
    )(registry_errors(correct_patient if patient else correct))


def _add_void(kind: corrections.RecordType) -> None:
    def void(request: HttpRequest, object_id: Id, payload: VoidIn) -> Any:
        actor = _actor(request)
        try:
            outcome = corrections.void(
                actor=actor,
                record_type=kind.slug,
                object_id=object_id,
                expected_version=payload.expected_version,
                reason=payload.reason,
            )
        except StaleEditError as exc:
            raise stale_problem(actor, kind.slug, exc) from None
        except RecordVoidedError as exc:
            raise voided_problem(exc) from None
        return _record(kind, outcome.record, outcome.notes)

    router.post(
        f"/{kind.slug}/{{object_id}}/void",
        response={200: RecordOut, **CONFLICT, **ERRORS},
        summary=f"Void a {kind.noun} entered in error (never deleted)",
        operation_id=f"void_{kind.slug.replace('-', '_')}",
    )(registry_errors(void))


def _add_history(kind: corrections.RecordType) -> None:
    def history(request: HttpRequest, object_id: Id) -> Any:
        found = corrections.record_history(
            actor=_actor(request), record_type=kind.slug, object_id=object_id
        )
        return HistoryOut(record=_record(kind, found.record), entries=_entries(found.entries))

    router.get(
        f"/{kind.slug}/{{object_id}}/history",
        response={200: HistoryOut, **ERRORS},
        summary=f"History of a {kind.noun}: who, when, why, old → new",
        operation_id=f"history_{kind.slug.replace('-', '_')}",
    )(registry_errors(history))


def add_routes() -> None:
    """Add the three routes of every record type to the registry router (once, at import)."""
    for slug, body in PATCHES.items():
        kind = corrections.get_type(slug)
        _add_patch(kind, body)
        _add_void(kind)
        _add_history(kind)
