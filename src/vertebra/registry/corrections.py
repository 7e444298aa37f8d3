"""Corrections, voids and history of clinical records: one mechanism for every record type.

What clinical systems do (21 CFR 11.10(e), REDCap's data-change reasons, OpenClinica's
discrepancy notes), once, for every record (ADR 0009):

* **Correct** (:func:`correct_record`): change some of a record's declared fields, with a
  required reason. ``UPDATE ... WHERE version = expected`` increments the version; if someone
  changed the record since the editor loaded it, StaleEditError and nothing is written. The new
  values pass :func:`vertebra.registry.validation.validate_record` (the one validation gate) and
  the chain-of-custody rules of the record's type. One audit row ``update`` holds each changed
  field old → new, the versions and the reason.
* **Void** (:func:`void_record`): a record entered in error is marked voided (who, when, why),
  never deleted; audit row ``void``. A record others depend on (a harvest with a live processing,
  an episode with live pathway steps) is voided only after them. Voided records are shown struck
  through and are left out of analytics, worklists and exports (the selectors filter them).
* **History** (:func:`record_history`): the audit rows of one record, in words.

The record types are a declarative table (:data:`RECORD_TYPES`): each names its model, its
editable fields, the permission its corrections need, the path to its patient (and so its
clinic), and optional hooks: derived values (MME, scores), chain-of-custody checks after a
correction, and what blocks a void. Higher floors add their own types with :func:`register`
(follow-up answers are registered by ``vertebra.followup``), so the registry never imports them.

Permissions and isolation are those of the services: the role must hold the type's action
(PermissionDeniedError, audited ``denied``), and a record outside the actor's clinics is NotFound,
exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, Q
from django.utils import timezone

from vertebra.core.labels import format_date, humanize, label
from vertebra.registry import services
from vertebra.registry.audit import audited_transaction, record_audit, snapshot
from vertebra.registry.errors import (
    ChainOfCustodyError,
    NotFound,
    RecordVoidedError,
    StaleEditError,
)
from vertebra.registry.models import (
    ALLOGENEIC_SOURCES,
    AdverseEvent,
    AdverseEventStatus,
    Arm,
    AuditEvent,
    ClinicalEvent,
    Consent,
    Correctable,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    Processing,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.validation import validate_record

__all__ = [
    "RECORD_TYPES",
    "Change",
    "FieldSpec",
    "HistoryEntry",
    "Outcome",
    "RecordHistory",
    "RecordType",
    "apply_correction",
    "apply_void",
    "changes_since",
    "correct",
    "correct_record",
    "describe",
    "display",
    "get_for_correction",
    "get_type",
    "patient_of",
    "record_history",
    "register",
    "type_of",
    "values_when_opened",
    "void",
    "void_record",
]

# --------------------------------------------------------------------------------------------
# The table of record types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """A field as people read it: its name, its label (empty: the model field's own verbose
    name, e.g. where the unit lives in the model), and the vocabulary of its codes
    (``vertebra.core.labels``) when it holds codes; ``"user"`` for a user id."""

    name: str
    label: str = ""
    vocabulary: str = ""


@dataclass(frozen=True)
class RecordType:
    """One kind of correctable record (see the module docstring)."""

    slug: str  # URL and API segment, plural: "harvests"
    model: type[Correctable]
    noun: str  # "harvest", in sentences
    fields: tuple[FieldSpec, ...]  # editable, in form order
    action: Action  # needed to correct or void
    patient_path: str  # ORM path from the record to its patient; "" for the patient itself
    #: Fields whose change needs a further right (adverse-event grading: adjudication).
    field_actions: Mapping[str, Action] = field(default_factory=dict)
    #: Values the type computes from the editable ones (MME, scores), shown in history.
    derived: tuple[FieldSpec, ...] = ()
    #: More fields worth naming in history (written by other services, e.g. adjudication).
    shown: tuple[FieldSpec, ...] = ()
    derive: Callable[[Any], None] | None = None
    #: Chain-of-custody and cross-field checks after a correction (plain-language refusals).
    check: Callable[[Any], None] | None = None
    #: Live records that must be voided first (noun phrases); empty when the void may go ahead.
    blockers: Callable[[Any], list[str]] | None = None
    #: Why this record may not be corrected or voided by staff at all ("" when it may).
    refusal: Callable[[Any], str] | None = None
    #: The right a void needs besides ``action`` (an adjudicated adverse event: adjudication).
    void_action: Callable[[Any], Action | None] | None = None
    #: Audit rows of other objects that belong to this record's history, and how to read
    #: their changes (none shown without it: their summary line says enough).
    related_history: Callable[[Any], Q] | None = None
    related_changes: Callable[[AuditEvent], tuple[Change, ...]] | None = None
    #: For types the patient page does not list by itself: the patient's records of this type.
    patient_items: Callable[[Patient], list[Any]] | None = None
    #: A short title of one record, in words ("Harvest of 1 Mar 2024" when not given).
    describe: Callable[[Any], str] | None = None
    #: Orchestration a higher floor puts around the generic correction or void (the follow-up
    #: recomputes an episode's schedule): same arguments as :func:`correct_record` /
    #: :func:`void_record` without ``record_type``, returns an :class:`Outcome`.
    correct_with: Callable[..., Outcome] | None = None
    void_with: Callable[..., Outcome] | None = None

    @property
    def object_type(self) -> str:
        """The audit trail's object type of these records (the model name)."""
        return self.model._meta.model_name or self.model.__name__.lower()

    @property
    def editable(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    def spec(self, name: str) -> FieldSpec:
        """The spec of ``name`` among editable, derived and shown fields, with its label
        (the model's verbose name when the table gives none; humanized if not a field)."""
        for spec in (*self.fields, *self.derived, *self.shown):
            if spec.name == name or f"{spec.name}_id" == name:
                if spec.label:
                    return spec
                return FieldSpec(spec.name, self._verbose_name(spec.name), spec.vocabulary)
        return FieldSpec(name, humanize(name.removesuffix("_id")))

    def _verbose_name(self, name: str) -> str:
        try:
            verbose = getattr(self.model._meta.get_field(name), "verbose_name", "")
        except Exception:
            verbose = ""
        text = str(verbose or humanize(name))
        return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Outcome:
    """A stored correction or void and what else it did, in sentences for the person."""

    record: Any
    notes: tuple[str, ...] = ()


RECORD_TYPES: dict[str, RecordType] = {}


def register(record_type: RecordType) -> RecordType:
    """Add a record type to :data:`RECORD_TYPES` (idempotent for the same slug and model)."""
    known = RECORD_TYPES.get(record_type.slug)
    if known is not None and known.model is not record_type.model:
        raise ValueError(f"record type {record_type.slug!r} is already registered")
    RECORD_TYPES[record_type.slug] = record_type
    return record_type


def get_type(slug: str) -> RecordType:
    """The record type ``slug``; NotFound for an unknown one (pages and API answer 404)."""
    record_type = RECORD_TYPES.get(slug)
    if record_type is None:
        raise NotFound("record", slug)
    return record_type


def type_of(instance: Any) -> RecordType:
    """The record type of a model instance (KeyError when the model is not correctable)."""
    for record_type in RECORD_TYPES.values():
        if isinstance(instance, record_type.model):
            return record_type
    raise KeyError(type(instance).__name__)


# --------------------------------------------------------------------------------------------
# Checks of each type (plain-language refusals, field by field)
# --------------------------------------------------------------------------------------------


def _not_future(instance: Any, name: str, what: str) -> None:
    value = getattr(instance, name)
    if value is not None and value > timezone.localdate():
        raise ValidationError({name: f"The {what} cannot be in the future."})


def _check_patient(patient: Patient) -> None:
    _not_future(patient, "date_of_birth", "date of birth")


def _check_consent(consent: Consent) -> None:
    _not_future(consent, "signed_on", "signature date")
    if consent.withdrawn_on is not None and consent.withdrawn_on < consent.signed_on:
        raise ValidationError({"signed_on": "The consent was withdrawn before this date."})


def _derive_diagnosis(diagnosis: Diagnosis) -> None:
    diagnosis.icd10 = (diagnosis.icd10 or "").strip().upper()


def _check_diagnosis(diagnosis: Diagnosis) -> None:
    _not_future(diagnosis, "diagnosed_on", "diagnosis date")


def _derive_prior_treatment(treatment: PriorTreatment) -> None:
    treatment.mme_per_day = services.prior_treatment_mme(
        treatment.kind, treatment.medication_name, treatment.daily_dose
    )


def _check_prior_treatment(treatment: PriorTreatment) -> None:
    if treatment.started_on and treatment.ended_on and treatment.ended_on < treatment.started_on:
        raise ValidationError({"ended_on": "The end date cannot be before the start date."})


def _live(query: Any) -> Any:
    return query.filter(voided_at__isnull=True)


def _check_episode(episode: TreatmentEpisode) -> None:
    _not_future(episode, "start_date", "start date")
    harvest = _live(Harvest.objects.filter(episode=episode)).first()
    injections = _live(Injection.objects.filter(episode=episode))
    if episode.arm != Arm.CELL_THERAPY and (harvest is not None or injections.exists()):
        raise ValidationError(
            {
                "arm": "This episode has cell-therapy pathway steps: void them first to change the arm."
            }
        )
    first = injections.order_by("injected_on").first()
    if first is not None and episode.start_date > first.injected_on:
        raise ChainOfCustodyError(
            f"The start date {format_date(episode.start_date)} would be after the injection of "
            f"{format_date(first.injected_on)}: correct or void the injection first."
        )


def _episode_blockers(episode: TreatmentEpisode) -> list[str]:
    blockers = []
    if _live(Harvest.objects.filter(episode=episode)).exists():
        blockers.append("its harvest")
    if _live(Injection.objects.filter(episode=episode)).exists():
        blockers.append("its injections")
    return blockers


def _check_harvest(harvest: Harvest) -> None:
    _not_future(harvest, "harvested_on", "harvest date")
    allogeneic = harvest.source in ALLOGENEIC_SOURCES
    if allogeneic != (harvest.allogeneic_lot_id is not None):
        raise ValidationError(
            {
                "source": "An allogeneic source names its lot and an autologous one cannot: "
                "void this harvest and record the right one on a new episode."
            }
        )
    processing = _live(Processing.objects.filter(harvest=harvest)).first()
    if processing is not None and harvest.harvested_on > processing.processed_on:
        raise ChainOfCustodyError(
            f"The harvest date {format_date(harvest.harvested_on)} would be after the processing "
            f"date {format_date(processing.processed_on)}."
        )


def _harvest_blockers(harvest: Harvest) -> list[str]:
    return ["its processing"] if _live(Processing.objects.filter(harvest=harvest)).exists() else []


def _derive_processing(processing: Processing) -> None:
    processing.lab = (processing.lab or "").strip()
    processing.product_id = (processing.product_id or "").strip()


def _check_processing(processing: Processing) -> None:
    _not_future(processing, "processed_on", "processing date")
    harvest = processing.harvest
    if processing.processed_on < harvest.harvested_on:
        raise ChainOfCustodyError(
            f"The processing date {format_date(processing.processed_on)} would be before the "
            f"harvest date {format_date(harvest.harvested_on)}."
        )
    first = _live(Injection.objects.filter(processing=processing)).order_by("injected_on").first()
    if first is not None and processing.processed_on > first.injected_on:
        raise ChainOfCustodyError(
            f"The processing date {format_date(processing.processed_on)} would be after the "
            f"injection of {format_date(first.injected_on)}."
        )


def _processing_blockers(processing: Processing) -> list[str]:
    injected = _live(Injection.objects.filter(processing=processing)).exists()
    return ["the injections of its product"] if injected else []


def _derive_injection(injection: Injection) -> None:
    injection.levels = services._levels(injection.levels)


def _check_injection(injection: Injection) -> None:
    _not_future(injection, "injected_on", "injection date")
    day = injection.injected_on
    if injection.processing is not None and day < injection.processing.processed_on:
        raise ChainOfCustodyError(
            f"The injection date {format_date(day)} would be before the processing date "
            f"{format_date(injection.processing.processed_on)}."
        )
    lot = injection.allogeneic_lot
    if lot is not None and lot.released_on is not None and day < lot.released_on:
        raise ChainOfCustodyError(
            f"The injection date {format_date(day)} would be before lot {lot.lot_number} was "
            f"released ({format_date(lot.released_on)})."
        )
    if day < injection.episode.start_date:
        raise ChainOfCustodyError(
            f"The injection date {format_date(day)} would be before the episode start "
            f"{format_date(injection.episode.start_date)}."
        )


def _derive_adverse_event(event: AdverseEvent) -> None:
    event.description = (event.description or "").strip()


def _check_adverse_event(event: AdverseEvent) -> None:
    _not_future(event, "onset", "onset date")
    if event.resolved_on is not None and event.resolved_on < event.onset:
        raise ValidationError({"resolved_on": "The resolution date cannot be before the onset."})
    if event.status == AdverseEventStatus.ADJUDICATED:
        if event.ctcae_grade is None:
            raise ValidationError({"ctcae_grade": "An adjudicated event keeps a CTCAE grade."})
        if not event.relatedness:
            raise ValidationError({"relatedness": "An adjudicated event keeps its relatedness."})


def _adverse_event_void_action(event: AdverseEvent) -> Action | None:
    adjudicated = event.status == AdverseEventStatus.ADJUDICATED
    return Action.ADVERSE_EVENT_ADJUDICATE if adjudicated else None


def _derive_clinical_event(event: ClinicalEvent) -> None:
    event.details = (event.details or "").strip()


def _check_clinical_event(event: ClinicalEvent) -> None:
    _not_future(event, "occurred_on", "event date")


def _patient_blockers(patient: Patient) -> list[str]:
    live = _live(TreatmentEpisode.objects.filter(patient=patient)).exists()
    return ["their treatment episodes"] if live else []


def _strip_patient(patient: Patient) -> None:
    for name in services.EDITABLE_PATIENT_FIELDS:
        value = getattr(patient, name)
        if isinstance(value, str):
            setattr(patient, name, value.strip())


F_ = FieldSpec
_GRADING = {
    "ctcae_grade": Action.ADVERSE_EVENT_ADJUDICATE,
    "serious": Action.ADVERSE_EVENT_ADJUDICATE,
    "relatedness": Action.ADVERSE_EVENT_ADJUDICATE,
    "expected": Action.ADVERSE_EVENT_ADJUDICATE,
}

for _type in (
    RecordType(
        slug="patients",
        model=Patient,
        noun="patient",
        fields=(
            F_("mrn", "MRN"),
            F_("given_name", "Given name"),
            F_("family_name", "Family name"),
            F_("date_of_birth", "Date of birth"),
            F_("sex", "Sex", "sex"),
            F_("email", "Email"),
            F_("phone", "Phone"),
        ),
        action=Action.PATIENT_UPDATE,
        patient_path="",
        derive=_strip_patient,
        check=_check_patient,
        blockers=_patient_blockers,
        # Undoing a registration is as weighty as making one.
        void_action=lambda patient: Action.PATIENT_CREATE,
    ),
    RecordType(
        slug="consents",
        model=Consent,
        noun="consent",
        fields=(
            F_("kind", "Consent for", "consent_kind"),
            F_("form_version", "Form version"),
            F_("signed_on", "Signed on"),
        ),
        shown=(F_("withdrawn_on", "Withdrawn on"), F_("recorded_by", "Recorded by", "user")),
        action=Action.CONSENT_RECORD,
        patient_path="patient",
        check=_check_consent,
    ),
    RecordType(
        slug="diagnoses",
        model=Diagnosis,
        noun="diagnosis",
        fields=(
            F_("condition", "Condition", "condition"),
            F_("icd10", "ICD-10-CM code"),
            F_("diagnosed_on", "Diagnosed on"),
            F_("level", "Level"),
            F_("laterality", "Side"),
            F_("pfirrmann_grade", "Pfirrmann grade (classic, 1–5)"),
            F_("modified_pfirrmann_grade", "Modified Pfirrmann grade (1–8)"),
            F_("modic_type", "Modic type"),
            F_("disc_height_pct", "Disc height (% of normal)"),
            F_("spondylolisthesis_grade", "Spondylolisthesis grade"),
            F_("stenosis", "Stenosis"),
        ),
        action=Action.DIAGNOSIS_RECORD,
        patient_path="patient",
        derive=_derive_diagnosis,
        check=_check_diagnosis,
    ),
    RecordType(
        slug="prior-treatments",
        model=PriorTreatment,
        noun="prior treatment",
        fields=(
            F_("kind", "Kind"),
            F_("details", "Details"),
            F_("medication_name", "Medication"),
            F_("daily_dose", "Daily dose (mg/day; fentanyl patch mcg/h)"),
            F_("relief_weeks", "Relief (weeks)"),
            F_("started_on", "Started on"),
            F_("ended_on", "Ended on"),
        ),
        derived=(F_("mme_per_day", "MME/day"),),
        action=Action.PRIOR_TREATMENT_RECORD,
        patient_path="patient",
        derive=_derive_prior_treatment,
        check=_check_prior_treatment,
    ),
    RecordType(
        slug="episodes",
        model=TreatmentEpisode,
        noun="treatment episode",
        fields=(
            F_("arm", "Treatment", "arm"),
            F_("start_date", "Treatment date"),
            F_("price", "Price charged"),
            F_("currency", "Currency"),
            F_("billed_to", "Billed to", "billed_to"),
            F_("patient_paid", "Paid by the patient (out of pocket)"),
            F_("cost_note", "Cost note"),
        ),
        action=Action.EPISODE_START,
        patient_path="patient",
        check=_check_episode,
        blockers=_episode_blockers,
    ),
    RecordType(
        slug="harvests",
        model=Harvest,
        noun="harvest",
        fields=(
            F_("source", "Cell source", "cell_source"),
            F_("volume_ml", "Volume (mL)"),
            F_("harvested_on", "Harvested on"),
        ),
        shown=(F_("operator", "Operator", "user"),),
        action=Action.HARVEST_RECORD,
        patient_path="episode__patient",
        check=_check_harvest,
        blockers=_harvest_blockers,
    ),
    RecordType(
        slug="processing",
        model=Processing,
        noun="processing record",
        fields=(
            F_("method", "Method"),
            F_("lab", "Laboratory"),
            F_("processed_on", "Processed on"),
            F_("product_id", "Product id"),
            F_("tnc_per_ml", "TNC per mL"),
            F_("cfu_f_per_ml", "CFU-F per mL"),
            F_("cd34_pct", "CD34+ (%)"),
            F_("viability_pct", "Viability (%)"),
            F_("adjunct_prp", "Adjunct: PRP"),
            F_("adjunct_hyaluronic_acid", "Adjunct: hyaluronic acid"),
        ),
        shown=(F_("sterility", "Sterility", "sterility"),),
        action=Action.PROCESSING_RECORD,
        patient_path="harvest__episode__patient",
        derive=_derive_processing,
        check=_check_processing,
        blockers=_processing_blockers,
    ),
    RecordType(
        slug="injections",
        model=Injection,
        noun="injection",
        fields=(
            F_("levels", "Levels"),
            F_("target", "Target"),
            F_("guidance", "Guidance"),
            F_("volume_ml", "Volume (mL)"),
            F_("cell_dose"),  # the model's label carries the unit
            F_("adjunct_prp", "Adjunct: PRP"),
            F_("injected_on", "Injected on"),
        ),
        shown=(F_("operator", "Operator", "user"),),
        action=Action.INJECTION_RECORD,
        patient_path="episode__patient",
        derive=_derive_injection,
        check=_check_injection,
    ),
    RecordType(
        slug="adverse-events",
        model=AdverseEvent,
        noun="adverse event",
        fields=(
            F_("description", "Description"),
            F_("category", "Category"),
            F_("onset", "Onset"),
            F_("outcome", "Outcome", "ae_outcome"),
            F_("resolved_on", "Resolved on"),
            F_("ctcae_grade", "CTCAE grade"),
            F_("serious", "Serious"),
            F_("relatedness", "Relatedness", "relatedness"),
            F_("expected", "Expected"),
        ),
        shown=(
            F_("status", "Status", "ae_status"),
            F_("adjudicated_by", "Adjudicated by", "user"),
            F_("adjudicated_at", "Adjudicated at"),
        ),
        field_actions=_GRADING,
        action=Action.ADVERSE_EVENT_REPORT,
        patient_path="patient",
        derive=_derive_adverse_event,
        check=_check_adverse_event,
        void_action=_adverse_event_void_action,
    ),
    RecordType(
        slug="clinical-events",
        model=ClinicalEvent,
        noun="clinical event",
        fields=(
            F_("kind", "Event"),
            F_("occurred_on", "Date"),
            F_("details", "Details"),
        ),
        action=Action.CLINICAL_EVENT_RECORD,
        patient_path="patient",
        derive=_derive_clinical_event,
        check=_check_clinical_event,
    ),
):
    register(_type)


# --------------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------------


def _scoped(record_type: RecordType, clinics: frozenset[int]) -> Q:
    prefix = f"{record_type.patient_path}__" if record_type.patient_path else ""
    return Q(**{f"{prefix}clinic_id__in": clinics})


def patient_of(record_type: RecordType, instance: Any) -> Patient:
    """The patient a record belongs to (following :attr:`RecordType.patient_path`)."""
    target = instance
    for step in filter(None, record_type.patient_path.split("__")):
        target = getattr(target, step)
    assert isinstance(target, Patient)
    return target


def _find(
    actor: Actor, record_type: RecordType, object_id: int, *, action: Action, lock: bool
) -> Any:
    """The record if the actor may perform ``action`` on it; else PermissionDeniedError (role)
    or NotFound (missing, or another clinic's: the same answer)."""
    clinics = verify_actor(actor, action)
    query = record_type.model._default_manager.filter(_scoped(record_type, clinics), pk=object_id)
    if lock:
        query = query.select_for_update(of=("self",))
    instance = query.first()
    if instance is None:
        raise NotFound(record_type.noun.replace(" ", "_"), object_id)
    return instance


def _refuse_if_closed(record_type: RecordType, instance: Any) -> None:
    if instance.voided_at is not None:
        raise RecordVoidedError(record_type.noun, instance.pk)
    if record_type.refusal is not None:
        why = record_type.refusal(instance)
        if why:
            raise ValidationError(why)


@audited_transaction
def get_for_correction(*, actor: Actor, record_type: str, object_id: int) -> Any:
    """The record as a correction form shows it, if the actor may correct it (audited read).

    PermissionDeniedError when the role may not correct this type, NotFound when the record is
    not within the actor's clinics. A voided record is returned (the caller says it is voided).
    """
    kind = get_type(record_type)
    instance = _find(actor, kind, object_id, action=kind.action, lock=False)
    patient = patient_of(kind, instance)
    record_audit(
        actor=actor,
        action="read",
        object_type=kind.object_type,
        object_id=instance.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={"view": "correction"},
    )
    return instance


# --------------------------------------------------------------------------------------------
# Correct and void
# --------------------------------------------------------------------------------------------


def _require_reason(reason: str, what: str) -> str:
    if not reason or not reason.strip():
        raise ValidationError({"reason": f"Give a reason for {what}."})
    return reason.strip()


def _clean_value(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def apply_correction(
    *,
    actor: Actor,
    record_type: str,
    object_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    reason: str,
) -> Any:
    """:func:`correct_record` inside the caller's transaction (no ``denied`` row of its own).

    For services that wrap a correction in their own audited transaction
    (``update_patient``, the follow-up's episode correction).
    """
    kind = get_type(record_type)
    unknown = sorted(set(changes) - set(kind.editable))
    if unknown:
        raise ValidationError({name: "This field cannot be edited here." for name in unknown})
    reason = _require_reason(reason, "changing a record after the fact")
    instance = _find(actor, kind, object_id, action=kind.action, lock=True)
    _refuse_if_closed(kind, instance)
    if instance.version != expected_version:
        raise StaleEditError(kind.noun, object_id, expected_version)
    watched = tuple(spec.name for spec in (*kind.fields, *kind.derived))
    old = snapshot(instance, watched)
    for name, value in changes.items():
        setattr(instance, name, _clean_value(value))
    if kind.derive is not None:
        kind.derive(instance)
    new = snapshot(instance, watched)
    changed = [name for name in old if old[name] != new[name]]
    if not changed:
        return instance
    for name in changed:
        needed = kind.field_actions.get(name)
        if needed is not None:
            verify_actor(actor, needed)
    if kind.check is not None:
        kind.check(instance)
    validate_record(instance)
    updated = kind.model._default_manager.filter(pk=instance.pk, version=expected_version).update(
        **{name: getattr(instance, name) for name in changed},
        version=F("version") + 1,
        updated_at=timezone.now(),
    )
    if updated != 1:
        raise StaleEditError(kind.noun, object_id, expected_version)
    instance.refresh_from_db()
    patient = patient_of(kind, instance)
    record_audit(
        actor=actor,
        action="update",
        object_type=kind.object_type,
        object_id=instance.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        old_values={**{name: old[name] for name in changed}, "version": expected_version},
        new_values={**{name: new[name] for name in changed}, "version": instance.version},
        reason=reason,
    )
    return instance


@audited_transaction
def correct_record(
    *,
    actor: Actor,
    record_type: str,
    object_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    reason: str,
) -> Any:
    """Correct fields of one record, refusing a stale edit; return the stored record.

    ``record_type`` is a slug of :data:`RECORD_TYPES`; ``changes`` maps editable field names to
    new values (others: ValidationError naming them); ``reason`` is required. Raises
    PermissionDeniedError (role, or a graded field without the adjudication right), NotFound
    (not within the actor's clinics), RecordVoidedError, StaleEditError (``expected_version`` is
    not the stored version; nothing written), ValidationError (field errors, from the type's
    checks and :func:`~vertebra.registry.validation.validate_record`) or ChainOfCustodyError.
    A correction that changes nothing writes nothing and returns the record as stored.
    """
    return apply_correction(
        actor=actor,
        record_type=record_type,
        object_id=object_id,
        expected_version=expected_version,
        changes=changes,
        reason=reason,
    )


def apply_void(
    *, actor: Actor, record_type: str, object_id: int, expected_version: int, reason: str
) -> Any:
    """:func:`void_record` inside the caller's transaction (see :func:`apply_correction`)."""
    kind = get_type(record_type)
    reason = _require_reason(reason, "voiding a record")
    instance = _find(actor, kind, object_id, action=kind.action, lock=True)
    _refuse_if_closed(kind, instance)
    if kind.void_action is not None:
        needed = kind.void_action(instance)
        if needed is not None:
            verify_actor(actor, needed)
    if instance.version != expected_version:
        raise StaleEditError(kind.noun, object_id, expected_version)
    blockers = kind.blockers(instance) if kind.blockers is not None else []
    if blockers:
        raise ChainOfCustodyError(
            f"This {kind.noun} cannot be voided while {' and '.join(blockers)} "
            f"{'are' if len(blockers) > 1 or blockers[0].endswith('s') else 'is'} on record: "
            "void those first."
        )
    now = timezone.now()
    updated = kind.model._default_manager.filter(pk=instance.pk, version=expected_version).update(
        voided_at=now,
        voided_by_id=actor.user.pk,
        void_reason=reason,
        version=F("version") + 1,
        updated_at=now,
    )
    if updated != 1:
        raise StaleEditError(kind.noun, object_id, expected_version)
    instance.refresh_from_db()
    patient = patient_of(kind, instance)
    record_audit(
        actor=actor,
        action="void",
        object_type=kind.object_type,
        object_id=instance.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        old_values={"voided_at": None, "version": expected_version},
        new_values={"voided_at": now, "void_reason": reason, "version": instance.version},
        reason=reason,
    )
    return instance


@audited_transaction
def void_record(
    *, actor: Actor, record_type: str, object_id: int, expected_version: int, reason: str
) -> Any:
    """Void one record entered in error (who, when and why kept; never deleted).

    Same permissions, isolation and optimistic locking as :func:`correct_record`; an adjudicated
    adverse event is voided only by a role that may adjudicate. A record with live dependants (a
    harvest with its processing, an episode with its pathway steps, a patient with episodes) is
    refused with ChainOfCustodyError saying what to void first. One audit row ``void``.
    """
    return apply_void(
        actor=actor,
        record_type=record_type,
        object_id=object_id,
        expected_version=expected_version,
        reason=reason,
    )


def correct(
    *,
    actor: Actor,
    record_type: str,
    object_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    reason: str,
) -> Outcome:
    """What pages and the API call: the type's orchestrated correction when a higher floor
    registered one (``correct_with``), else :func:`correct_record`. Same refusals."""
    kind = get_type(record_type)
    arguments: dict[str, Any] = {
        "actor": actor,
        "object_id": object_id,
        "expected_version": expected_version,
        "changes": changes,
        "reason": reason,
    }
    if kind.correct_with is not None:
        return kind.correct_with(**arguments)
    return Outcome(correct_record(record_type=record_type, **arguments))


def void(
    *, actor: Actor, record_type: str, object_id: int, expected_version: int, reason: str
) -> Outcome:
    """What pages and the API call to void: ``void_with`` when registered, else
    :func:`void_record`. Same refusals."""
    kind = get_type(record_type)
    arguments: dict[str, Any] = {
        "actor": actor,
        "object_id": object_id,
        "expected_version": expected_version,
        "reason": reason,
    }
    if kind.void_with is not None:
        return kind.void_with(**arguments)
    return Outcome(void_record(record_type=record_type, **arguments))


def describe(record_type: RecordType, instance: Any) -> str:
    """A short title of one record in words: "Harvest of 1 Mar 2024", "Patient details"."""
    if record_type.describe is not None:
        return record_type.describe(instance)
    if isinstance(instance, Patient):
        return "Patient details"
    for spec in record_type.fields:
        if _date_field(record_type, spec.name) == "date" and getattr(instance, spec.name):
            return f"{record_type.noun.capitalize()} of {format_date(getattr(instance, spec.name))}"
    return record_type.noun.capitalize()


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------

_ACTIONS = {
    "create": "Recorded",
    "update": "Corrected",
    "void": "Voided",
}
_HIDDEN = {"version", "voided_at", "void_reason", "voided_by_id", "id", "extras"}


@dataclass(frozen=True)
class Change:
    """One field of one history entry: its label and the old and new values, in words."""

    field: str
    old: str
    new: str


@dataclass(frozen=True)
class HistoryEntry:
    """One audit row about a record, in words."""

    seq: int
    when: dt.datetime
    who: str
    role: str
    action: str
    reason: str
    changes: tuple[Change, ...]
    version: int | None


@dataclass(frozen=True)
class RecordHistory:
    """A record, its type and patient, and its history, oldest first."""

    record_type: RecordType
    record: Any
    patient: Patient
    entries: tuple[HistoryEntry, ...]


def _user_names(ids: set[int]) -> dict[int, str]:
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(pk__in=ids)
    return {user.pk: user.get_username() for user in users}


def _choices_of(record_type: RecordType, name: str) -> dict[str, str]:
    try:
        model_field = record_type.model._meta.get_field(name)
    except Exception:
        return {}
    return {
        str(code): str(text) for code, text in (getattr(model_field, "flatchoices", None) or [])
    }


def _date_field(record_type: RecordType, name: str) -> str:
    from django.db import models

    try:
        model_field = record_type.model._meta.get_field(name.removesuffix("_id"))
    except Exception:
        return ""
    if isinstance(model_field, models.DateTimeField):
        return "datetime"
    if isinstance(model_field, models.DateField):
        return "date"
    return ""


def display(record_type: RecordType, name: str, value: Any, users: Mapping[int, str]) -> str:
    """A stored (JSON) value of field ``name`` as people read it: labels for codes, the
    product's date format, Yes/No, user names; never a raw code or JSON."""
    spec = record_type.spec(name)
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if spec.vocabulary == "user":
        return users.get(int(value), "a former user") if str(value).isdigit() else str(value)
    kind = _date_field(record_type, name)
    if kind == "date":
        return format_date(value)
    if kind == "datetime":
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        return f"{format_date(moment)} {moment.strftime('%H:%M')} UTC"
    if isinstance(value, list):
        return ", ".join(_one(record_type, spec, item) for item in value)
    if isinstance(value, dict):
        return "; ".join(
            f"{humanize(str(k))}: {display(record_type, '', v, users)}" for k, v in value.items()
        )
    return _one(record_type, spec, value)


def _one(record_type: RecordType, spec: FieldSpec, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if spec.vocabulary:
        return label(spec.vocabulary, value)
    choices = _choices_of(record_type, spec.name)
    if choices:
        return choices.get(str(value), humanize(str(value)))
    if spec.name == "levels":
        from vertebra.registry.models import SpinalLevel

        return dict(SpinalLevel.choices).get(str(value), str(value))
    return str(value)


def _changes(
    record_type: RecordType, row: AuditEvent, users: Mapping[int, str]
) -> tuple[Change, ...]:
    old = row.old_values if isinstance(row.old_values, dict) else {}
    new = row.new_values if isinstance(row.new_values, dict) else {}
    if row.object_type != record_type.object_type:
        # Another object's row (the answer set, the follow-up schedule): its type says how.
        reader = record_type.related_changes
        return reader(row) if reader is not None else ()
    if row.action == "create":
        names = [
            spec.name if spec.vocabulary != "user" else f"{spec.name}_id"
            for spec in (*record_type.fields, *record_type.derived, *record_type.shown)
        ]
        keys = [name for name in names if name in new]
        return tuple(
            Change(record_type.spec(k).label, "—", display(record_type, k, new[k], users))
            for k in keys
        )
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in _HIDDEN]
    changes: list[Change] = []
    for key in keys:
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) or isinstance(after, dict):
            before, after = before or {}, after or {}
            for item in dict.fromkeys([*before, *after]):
                if before.get(item) != after.get(item):
                    changes.append(
                        Change(
                            f"{record_type.spec(key).label}: {humanize(str(item))}",
                            display(record_type, "", before.get(item), users),
                            display(record_type, "", after.get(item), users),
                        )
                    )
            continue
        changes.append(
            Change(
                record_type.spec(key).label,
                display(record_type, key, before, users),
                display(record_type, key, after, users),
            )
        )
    return tuple(changes)


def _user_ids(rows: list[AuditEvent], record_type: RecordType) -> set[int]:
    user_keys = {f"{s.name}_id" for s in record_type.shown if s.vocabulary == "user"}
    ids: set[int] = set()
    for row in rows:
        for values in (row.old_values, row.new_values):
            if isinstance(values, dict):
                ids.update(int(v) for k, v in values.items() if k in user_keys and v is not None)
    return ids


_OTHER_ACTIONS = {"create": "recorded", "update": "changed", "void": "voided"}


def _summary(row: AuditEvent, record_type: RecordType) -> str:
    if row.object_type != record_type.object_type:
        what = label("audit_object", row.object_type)
        return f"{what} {_OTHER_ACTIONS.get(row.action, humanize(row.action).lower())}"
    return _ACTIONS.get(row.action, humanize(row.action))


def _entries(record_type: RecordType, rows: list[AuditEvent]) -> tuple[HistoryEntry, ...]:
    users = _user_names(_user_ids(rows, record_type))
    entries = []
    for row in rows:
        new = row.new_values if isinstance(row.new_values, dict) else {}
        version = new.get("version")
        entries.append(
            HistoryEntry(
                seq=row.pk,
                when=row.occurred_at,
                who=row.actor_username,
                role=label("role", row.role),
                action=_summary(row, record_type),
                reason=row.reason,
                changes=_changes(record_type, row, users),
                version=int(version) if isinstance(version, int) else None,
            )
        )
    return tuple(entries)


def _history_rows(record_type: RecordType, instance: Any) -> list[AuditEvent]:
    where = Q(object_type=record_type.object_type, object_id=str(instance.pk))
    if record_type.related_history is not None:
        where |= record_type.related_history(instance)
    # Every row about a patient's record names the patient: the (patient, time) index keeps
    # this a read of one patient's rows, however long the trail.
    patient = patient_of(record_type, instance)
    return list(
        AuditEvent.objects.filter(patient_id=patient.pk)
        .filter(where)
        .filter(action__in=["create", "update", "void"])
        .order_by("occurred_at", "id")
    )


@audited_transaction
def record_history(*, actor: Actor, record_type: str, object_id: int) -> RecordHistory:
    """The history of one record (every create, correction and void, with who, when, role,
    why and each field old → new, in words), if the actor may read its patient.

    NotFound for a record outside the actor's clinics; one ``read`` audit row.
    """
    kind = get_type(record_type)
    instance = _find(actor, kind, object_id, action=Action.PATIENT_READ, lock=False)
    patient = patient_of(kind, instance)
    entries = _entries(kind, _history_rows(kind, instance))
    record_audit(
        actor=actor,
        action="read",
        object_type=kind.object_type,
        object_id=instance.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={"view": "history"},
    )
    return RecordHistory(kind, instance, patient, entries)


@audited_transaction
def changes_since(
    *, actor: Actor, record_type: str, object_id: int, version: int
) -> tuple[Any, tuple[HistoryEntry, ...]]:
    """The record as stored now and the changes made to it after ``version`` (what a stale
    editor missed: who, when, why, old → new), for the 409 answer. Audited as a read."""
    kind = get_type(record_type)
    instance = _find(actor, kind, object_id, action=Action.PATIENT_READ, lock=False)
    missed = _rows_since(kind, instance, version)
    patient = patient_of(kind, instance)
    record_audit(
        actor=actor,
        action="read",
        object_type=kind.object_type,
        object_id=instance.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={"view": "conflict", "since_version": version},
    )
    return instance, _entries(kind, missed)


def _rows_since(kind: RecordType, instance: Any, version: int) -> list[AuditEvent]:
    """The audit rows about ``instance`` after the one that left it at ``version``."""
    rows = _history_rows(kind, instance)
    # The last row that left the record at ``version`` (or the creation for version 1);
    # everything after it is what the editor did not see, versioned or not.
    start = 0
    for index, row in enumerate(rows):
        new = row.new_values if isinstance(row.new_values, dict) else {}
        reached = new.get("version", 1 if row.action == "create" else None)
        if isinstance(reached, int) and reached <= version:
            start = index + 1
    return rows[start:]


def values_when_opened(
    *, actor: Actor, record_type: str, object_id: int, version: int
) -> dict[str, Any]:
    """The stored (JSON) values, at ``version``, of the fields changed since then: what a
    stale editor's form showed for them. Lets the 409 page keep the other person's change
    on every field the editor left alone. Reads what :func:`changes_since` audited."""
    kind = get_type(record_type)
    instance = _find(actor, kind, object_id, action=Action.PATIENT_READ, lock=False)
    opened: dict[str, Any] = {}
    for row in _rows_since(kind, instance, version):
        if row.object_type != kind.object_type or row.object_id != str(instance.pk):
            continue
        old = row.old_values if isinstance(row.old_values, dict) else {}
        for name, value in old.items():
            if name != "version":
                opened.setdefault(name, value)
    return opened
