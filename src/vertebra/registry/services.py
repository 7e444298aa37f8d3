"""Registry services: every write to the registry goes through one of these functions.

Contracts (each service)
------------------------
* Keyword-only, typed arguments, starting with ``actor``
  (:class:`~vertebra.registry.permissions.Actor`).
* One transaction (:func:`~vertebra.registry.audit.audited_transaction`): the change and exactly
  one audit row (action ``create`` / ``update``, object type and id, clinic, patient, the initial
  values or the field-level old → new values, the reason) commit together or not at all.
* Permission first: the actor's role must allow the action (PermissionDeniedError) and the object
  must belong to a clinic where the actor verifiably holds that role; otherwise NotFound, the
  same answer as for an id that does not exist. A refusal is audited as ``denied``.
* Input is validated with the models' ``full_clean()``: field errors are Django
  ValidationErrors keyed by field name.
* The cell-therapy chain of custody is enforced here (ChainOfCustodyError, plain message):
  harvest only on a cell-therapy episode; processing only after the harvest; injection only of a
  product with a passed sterility result processed from *this patient's* harvest, or of a
  released allogeneic lot; dates in order and not in the future.
* Edits after the fact use optimistic locking (``expected_version``; StaleEditError when stale,
  nothing written) and need a non-blank reason, which the audit row keeps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F, Model
from django.utils import timezone

from vertebra.core.labels import format_date
from vertebra.core.mme import InvalidDoseError, UnknownOpioidError, mme_per_day
from vertebra.registry.audit import audited_transaction, record_audit, snapshot, to_json_value
from vertebra.registry.errors import (
    ChainOfCustodyError,
    MissingStepError,
    NotFound,
    PermissionDeniedError,
    RecordVoidedError,
)
from vertebra.registry.models import (
    ALLOGENEIC_SOURCES,
    EPISODE_COST_FIELDS,
    AdverseEvent,
    AdverseEventOutcome,
    AdverseEventStatus,
    AllogeneicLot,
    ApiToken,
    Arm,
    ClinicalEvent,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    Membership,
    Patient,
    PriorTreatment,
    PriorTreatmentKind,
    Processing,
    Role,
    ScreeningEvaluation,
    SpinalLevel,
    Sterility,
    TreatmentEpisode,
)
from vertebra.registry.pathway import already_done, consent_missing, sterility_blocker
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.validation import validate_record

__all__ = [
    "EDITABLE_PATIENT_FIELDS",
    "EPISODE_COST_FIELDS",
    "adjudicate_adverse_event",
    "authenticate_api_token",
    "issue_api_token",
    "lock_patient",
    "record_adverse_event",
    "record_clinical_event",
    "record_consent",
    "record_diagnosis",
    "record_harvest",
    "record_injection",
    "record_prior_treatment",
    "record_processing",
    "record_processing_for_harvest",
    "record_screening",
    "record_sterility_result",
    "register_lot",
    "register_patient",
    "release_lot",
    "revoke_api_token",
    "start_episode",
    "update_patient",
    "withdraw_consent",
]

_M = TypeVar("_M", bound=Model)

#: Patient fields an edit may change; anything else (clinic, version, created_at) is refused.
EDITABLE_PATIENT_FIELDS = (
    "mrn",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "email",
    "phone",
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _object_type(instance: Model) -> str:
    return instance._meta.model_name or type(instance).__name__.lower()


def _create(actor: Actor, instance: _M, *, patient: Patient | None) -> _M:
    """Validate, insert, and audit the initial values of ``instance``."""
    validate_record(instance)
    instance.save(force_insert=True)
    record_audit(
        actor=actor,
        action="create",
        object_type=_object_type(instance),
        object_id=instance.pk,
        clinic_id=patient.clinic_id if patient else None,
        patient_id=patient.pk if patient else None,
        new_values=snapshot(instance),
    )
    return instance


def lock_patient(patient_id: int) -> None:
    """Lock the patient's row until the end of the transaction (``SELECT ... FOR UPDATE``).

    The lock order of every write (see :mod:`vertebra.registry.audit`): the patient row
    first, then the rows below it (episode, time point, ...), the audit-chain lock last.
    Writers of one patient therefore queue on this row and can never wait for each other in
    a circle. A patient that does not exist locks nothing. One plain statement (no ORM
    compilation, no ordering): every write of the portal's submit path starts here.
    """
    if not connection.features.has_select_for_update:  # SQLite: one writer at a time anyway
        return
    table = connection.ops.quote_name(Patient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [patient_id])


def _patient(actor: Actor, action: Action, patient_id: int) -> Patient:
    """The patient, if ``actor`` may perform ``action`` on them (locked); else NotFound."""
    clinics = verify_actor(actor, action)
    patient = (
        Patient.objects.select_for_update().filter(pk=patient_id, clinic_id__in=clinics).first()
    )
    if patient is None:
        raise NotFound("patient", patient_id)
    return patient


def _episode(actor: Actor, action: Action, episode_id: int) -> TreatmentEpisode:
    """The episode (with its patient), if within the actor's clinics; else NotFound."""
    clinics = verify_actor(actor, action)
    patient_id = (
        TreatmentEpisode.objects.filter(pk=episode_id, patient__clinic_id__in=clinics)
        .values_list("patient_id", flat=True)
        .first()
    )
    if patient_id is None:
        raise NotFound("treatment_episode", episode_id)
    lock_patient(patient_id)  # lock order: patient first (see lock_patient)
    # Locking the episode serialises the pathway steps recorded on it.
    episode = (
        TreatmentEpisode.objects.select_for_update()
        .select_related("patient")
        .filter(pk=episode_id, patient__clinic_id__in=clinics)
        .first()
    )
    if episode is None:
        raise NotFound("treatment_episode", episode_id)
    return episode


def _episode_of(patient: Patient, episode_id: int | None) -> TreatmentEpisode | None:
    """The patient's own episode ``episode_id`` (None stays None)."""
    if episode_id is None:
        return None
    episode = TreatmentEpisode.objects.filter(pk=episode_id, patient=patient).first()
    if episode is None:
        raise ValidationError({"episode": "This episode does not belong to this patient."})
    return episode


def _not_future(field: str, value: dt.date, label: str) -> None:
    if value > timezone.localdate():
        raise ValidationError({field: f"The {label} cannot be in the future."})


def _operator(operator_id: int | None, actor: Actor, clinic_id: int) -> Any:
    """The user who performed a procedure: an active clinician of the patient's clinic."""
    user_id = actor.user.pk if operator_id is None else operator_id
    qualified = Membership.objects.filter(
        user_id=user_id, clinic_id=clinic_id, role=Role.CLINICIAN, user__is_active=True
    ).exists()
    if not qualified:
        raise ValidationError(
            {"operator": "The operator must be an active clinician of this patient's clinic."}
        )
    return get_user_model().objects.get(pk=user_id)


def _require_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing a record after the fact."})
    return reason.strip()


def _require_treatment_consent(episode: TreatmentEpisode, on: dt.date, step: str) -> None:
    """Consent gates treatment: ``step`` needs an active treatment consent on its date."""
    missing = consent_missing(episode.patient_id, on, step)
    if missing is not None:
        raise missing


def _cell_therapy(episode: TreatmentEpisode, step: str) -> None:
    if episode.voided_at is not None:
        raise ChainOfCustodyError(
            f"Episode {episode.pk} was voided (entered in error): no pathway step can be "
            "recorded on it. Start a new episode."
        )
    if episode.arm != Arm.CELL_THERAPY:
        raise ChainOfCustodyError(
            f"{step} can only be recorded on a cell-therapy episode; episode {episode.pk} is a "
            f"{Arm(episode.arm).label.lower()} episode."
        )


# --------------------------------------------------------------------------------------------
# Patients, consent, diagnosis, prior treatment
# --------------------------------------------------------------------------------------------


@audited_transaction
def register_patient(
    *,
    actor: Actor,
    clinic_id: int,
    mrn: str,
    given_name: str,
    family_name: str,
    date_of_birth: dt.date,
    sex: str,
    email: str = "",
    phone: str = "",
) -> Patient:
    """Register a new patient at one of the actor's clinics (MRN unique per clinic)."""
    clinics = verify_actor(actor, Action.PATIENT_CREATE)
    if clinic_id not in clinics:
        raise NotFound("clinic", clinic_id)
    _not_future("date_of_birth", date_of_birth, "date of birth")
    patient = Patient(
        clinic_id=clinic_id,
        mrn=mrn.strip(),
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        date_of_birth=date_of_birth,
        sex=sex,
        email=email.strip(),
        phone=phone.strip(),
    )
    return _create(actor, patient, patient=patient)


@audited_transaction
def update_patient(
    *,
    actor: Actor,
    patient_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    reason: str,
) -> Patient:
    """Change a patient's identifying fields, refusing a stale edit: the generic correction
    (:func:`vertebra.registry.corrections.correct_record`, record type ``patients``).

    ``expected_version`` is the ``version`` the editor loaded; the row is updated with
    ``UPDATE ... WHERE version = expected_version`` and its version incremented; if another edit
    got there first, StaleEditError is raised and nothing is written. Only
    :data:`EDITABLE_PATIENT_FIELDS` may change; ``reason`` is required. The audit row holds the
    changed fields only (old and new) and the reason. An edit that changes nothing writes nothing.
    """
    from vertebra.registry import corrections  # corrections builds on this module

    patient = corrections.apply_correction(
        actor=actor,
        record_type="patients",
        object_id=patient_id,
        expected_version=expected_version,
        changes=changes,
        reason=reason,
    )
    assert isinstance(patient, Patient)
    return patient


@audited_transaction
def record_consent(
    *,
    actor: Actor,
    patient_id: int,
    kind: str,
    form_version: str,
    signed_on: dt.date,
) -> Consent:
    """Record a signed consent form (registry participation or treatment)."""
    patient = _patient(actor, Action.CONSENT_RECORD, patient_id)
    _not_future("signed_on", signed_on, "signature date")
    consent = Consent(
        patient=patient,
        kind=kind,
        form_version=form_version.strip(),
        signed_on=signed_on,
        recorded_by=actor.user,
    )
    return _create(actor, consent, patient=patient)


@audited_transaction
def withdraw_consent(
    *, actor: Actor, consent_id: int, withdrawn_on: dt.date, reason: str = ""
) -> Consent:
    """Record that the patient withdrew a consent on ``withdrawn_on``; the row is kept.

    Needs ``consent.record``; a consent outside the actor's clinics is NotFound. Withdrawing
    twice is refused (the first date stands; correct it through a correction). From that day
    on, a withdrawn treatment consent blocks further harvest, processing and injection, and a
    withdrawn registry consent stops follow-up invitations (the worker checks before each
    send; :func:`vertebra.followup.services.withdraw_consent_and_stop_invitations` also
    cancels the queued ones at once). Audited with old and new values and ``reason``.
    """
    clinics = verify_actor(actor, Action.CONSENT_RECORD)
    consent = (
        Consent.objects.select_for_update()
        .select_related("patient")
        .filter(pk=consent_id, patient__clinic_id__in=clinics)
        .first()
    )
    if consent is None:
        raise NotFound("consent", consent_id)
    if consent.withdrawn_on is not None:
        raise ValidationError(
            {
                "withdrawn_on": f"This consent was already withdrawn on {format_date(consent.withdrawn_on)}."
            }
        )
    _not_future("withdrawn_on", withdrawn_on, "withdrawal date")
    consent.withdrawn_on = withdrawn_on
    validate_record(consent)
    Consent.objects.filter(pk=consent.pk).update(
        withdrawn_on=withdrawn_on, updated_at=timezone.now()
    )
    record_audit(
        actor=actor,
        action="update",
        object_type="consent",
        object_id=consent.pk,
        clinic_id=consent.patient.clinic_id,
        patient_id=consent.patient_id,
        old_values={"withdrawn_on": None},
        new_values={"withdrawn_on": withdrawn_on},
        reason=reason.strip() or "consent withdrawn",
    )
    return consent


@audited_transaction
def record_diagnosis(
    *,
    actor: Actor,
    patient_id: int,
    condition: str,
    icd10: str,
    diagnosed_on: dt.date,
    level: str = "",
    laterality: str = "",
    pfirrmann_grade: int | None = None,
    modified_pfirrmann_grade: int | None = None,
    modic_type: int | None = None,
    disc_height_pct: float | None = None,
    spondylolisthesis_grade: int | None = None,
    stenosis: str = "",
) -> Diagnosis:
    """Record a diagnosis with its imaging findings (unknown findings: None or blank).

    Disc degeneration is recorded on the scale the MRI report used: ``pfirrmann_grade`` on the
    classic scale (1-5), ``modified_pfirrmann_grade`` on the modified scale (1-8). A grade is
    never converted between them (ADR 0006); an out-of-range grade is a ValidationError.
    """
    patient = _patient(actor, Action.DIAGNOSIS_RECORD, patient_id)
    _not_future("diagnosed_on", diagnosed_on, "diagnosis date")
    diagnosis = Diagnosis(
        patient=patient,
        condition=condition,
        icd10=icd10.strip().upper(),
        diagnosed_on=diagnosed_on,
        level=level,
        laterality=laterality,
        pfirrmann_grade=pfirrmann_grade,
        modified_pfirrmann_grade=modified_pfirrmann_grade,
        modic_type=modic_type,
        disc_height_pct=disc_height_pct,
        spondylolisthesis_grade=spondylolisthesis_grade,
        stenosis=stenosis,
    )
    return _create(actor, diagnosis, patient=patient)


def prior_treatment_mme(kind: str, medication_name: str, daily_dose: float | None) -> float | None:
    """MME/day of a prior treatment (CDC 2022 factors): None unless an opioid medication with a
    daily dose. An impossible dose is a ValidationError on ``daily_dose``. Used when a prior
    treatment is recorded and when it is corrected, so the stored figure always follows."""
    if kind != PriorTreatmentKind.MEDICATION or not medication_name or daily_dose is None:
        return None
    try:
        return mme_per_day(medication_name, daily_dose)
    except UnknownOpioidError:
        return None  # not an opioid (or not one with a CDC factor): no MME
    except InvalidDoseError as exc:
        raise ValidationError({"daily_dose": str(exc)}) from None


@audited_transaction
def record_prior_treatment(
    *,
    actor: Actor,
    patient_id: int,
    kind: str,
    details: str = "",
    medication_name: str = "",
    daily_dose: float | None = None,
    relief_weeks: int | None = None,
    started_on: dt.date | None = None,
    ended_on: dt.date | None = None,
) -> PriorTreatment:
    """Record a prior treatment. For an opioid medication with a daily dose, MME/day is
    computed with the CDC 2022 factors and stored; for other medications it stays None."""
    patient = _patient(actor, Action.PRIOR_TREATMENT_RECORD, patient_id)
    mme = prior_treatment_mme(kind, medication_name, daily_dose)
    treatment = PriorTreatment(
        patient=patient,
        kind=kind,
        details=details,
        medication_name=medication_name.strip(),
        daily_dose=daily_dose,
        mme_per_day=mme,
        relief_weeks=relief_weeks,
        started_on=started_on,
        ended_on=ended_on,
    )
    return _create(actor, treatment, patient=patient)


# --------------------------------------------------------------------------------------------
# Screening
# --------------------------------------------------------------------------------------------


class ScreeningOutcome(Protocol):
    """What the screening engine returns (``vertebra.core.screening.ScreeningResult``)."""

    def to_dict(self) -> dict[str, object]: ...


Evaluator = Callable[[Mapping[str, Any]], ScreeningOutcome]


def default_evaluator() -> Evaluator:
    """``vertebra.core.screening.evaluate``, looked up when first needed.

    Raises RuntimeError if the engine is not installed (it is built separately; see issue 3).
    """
    try:
        module = importlib.import_module("vertebra.core.screening")
        return cast(Evaluator, module.evaluate)
    except (ImportError, AttributeError):
        raise RuntimeError(
            "the screening engine (vertebra.core.screening.evaluate) is not available"
        ) from None


@audited_transaction
def record_screening(
    *,
    actor: Actor,
    patient_id: int,
    facts: Mapping[str, Any],
    evaluator: Evaluator | None = None,
    evaluated_at: dt.datetime | None = None,
) -> ScreeningEvaluation:
    """Run the screening rules on ``facts`` and store inputs, verdict, fired rules, the full
    result and the rule-set id and version, attributed to the actor.

    ``evaluator`` defaults to :func:`default_evaluator` (tests may pass another). Facts the
    engine rejects raise ValidationError on ``facts`` with the engine's message.
    """
    patient = _patient(actor, Action.SCREENING_RECORD, patient_id)
    evaluate = evaluator or default_evaluator()
    try:
        result = to_json_value(evaluate(facts).to_dict())
    except ValueError as exc:  # InvalidFactsError: the engine's own, plain-language message
        raise ValidationError({"facts": str(exc)}) from None
    evaluation = ScreeningEvaluation(
        patient=patient,
        inputs=to_json_value(facts),
        verdict=str(result["verdict"]),
        fired_rules=result.get("fired", []),
        result=result,
        ruleset_id=str(result.get("ruleset_id", "")),
        ruleset_version=str(result.get("ruleset_version", "")),
        evaluated_by=actor.user,
        evaluated_at=evaluated_at or timezone.now(),
    )
    return _create(actor, evaluation, patient=patient)


# --------------------------------------------------------------------------------------------
# Treatment pathway
# --------------------------------------------------------------------------------------------


@audited_transaction
def start_episode(
    *,
    actor: Actor,
    patient_id: int,
    arm: str,
    start_date: dt.date,
    cost: Mapping[str, Any] | None = None,
) -> TreatmentEpisode:
    """Start a treatment episode in any arm; follow-up is scheduled from ``start_date``.

    ``cost`` optionally holds the episode's cost fields (:data:`EPISODE_COST_FIELDS`: price,
    currency, billed_to, patient_paid, cost_note); they are validated with the episode
    (non-negative, within the currency's plausible range, paid <= price unless a note says
    why) and audited in the same row. Later changes go through the episode's correction.
    """
    patient = _patient(actor, Action.EPISODE_START, patient_id)
    values = episode_cost_values(cost)
    episode = TreatmentEpisode(patient=patient, arm=arm, start_date=start_date, **values)
    return _create(actor, episode, patient=patient)


def episode_cost_values(cost: Mapping[str, Any] | None) -> dict[str, Any]:
    """The episode's cost fields as stored: codes and the note trimmed, the currency upper
    case; ValidationError for a name that is not a cost field. (Validation of the amounts is
    the episode's own, at full_clean.) The FHIR bulk importer stores them the same way."""
    values = dict(cost or {})
    unknown = set(values) - set(EPISODE_COST_FIELDS)
    if unknown:
        raise ValidationError({name: "Not a cost field of an episode." for name in unknown})
    for name in ("currency", "billed_to", "cost_note"):
        values[name] = str(values.get(name) or "").strip()
    values["currency"] = values["currency"].upper()
    return values


@audited_transaction
def register_lot(*, actor: Actor, lot_number: str, product: str) -> AllogeneicLot:
    """Register an allogeneic lot, not yet released (registry admins)."""
    verify_actor(actor, Action.LOT_MANAGE)
    lot = AllogeneicLot(lot_number=lot_number.strip(), product=product.strip())
    return _create(actor, lot, patient=None)


@audited_transaction
def release_lot(*, actor: Actor, lot_id: int, released_on: dt.date) -> AllogeneicLot:
    """Mark a lot released on ``released_on``; a lot is released once and never un-released
    here (a recall is a separate, later feature)."""
    verify_actor(actor, Action.LOT_MANAGE)
    lot = AllogeneicLot.objects.select_for_update().filter(pk=lot_id).first()
    if lot is None:
        raise NotFound("allogeneic_lot", lot_id)
    if lot.released:
        raise ChainOfCustodyError(
            f"Lot {lot.lot_number} was already released on {format_date(lot.released_on)}."
        )
    _not_future("released_on", released_on, "release date")
    AllogeneicLot.objects.filter(pk=lot_id).update(
        released=True, released_on=released_on, updated_at=timezone.now()
    )
    lot.refresh_from_db()
    record_audit(
        actor=actor,
        action="update",
        object_type="allogeneiclot",
        object_id=lot.pk,
        old_values={"released": False, "released_on": None},
        new_values={"released": True, "released_on": released_on},
        reason="lot released",
    )
    return lot


@audited_transaction
def record_harvest(
    *,
    actor: Actor,
    episode_id: int,
    source: str,
    harvested_on: dt.date,
    volume_ml: float | None = None,
    allogeneic_lot_id: int | None = None,
    operator_id: int | None = None,
) -> Harvest:
    """Step 1 of the cell-therapy pathway: record the harvest (or the allogeneic lot received).

    Refused (ChainOfCustodyError) on a non-cell-therapy episode, on an episode that already has
    a harvest, for an allogeneic source without a lot or an autologous source with one.
    ``operator_id`` defaults to the actor and must be a clinician of the patient's clinic.
    """
    episode = _episode(actor, Action.HARVEST_RECORD, episode_id)
    _cell_therapy(episode, "A harvest")
    existing = Harvest.objects.filter(episode=episode).first()
    if existing is not None and existing.voided_at is not None:
        raise ChainOfCustodyError(
            f"The harvest of episode {episode.pk} was voided; a voided harvest stays on record "
            "and is not replaced on the same episode: start a new episode for the right harvest."
        )
    if existing is not None:
        raise already_done(episode, "harvest") or ChainOfCustodyError(
            f"Episode {episode.pk} already has a harvest."
        )
    lot: AllogeneicLot | None = None
    if source in ALLOGENEIC_SOURCES:
        if allogeneic_lot_id is None:
            raise ChainOfCustodyError(
                "An allogeneic source needs its lot: name the allogeneic lot the cells come from."
            )
        lot = AllogeneicLot.objects.filter(pk=allogeneic_lot_id).first()
        if lot is None:
            raise NotFound("allogeneic_lot", allogeneic_lot_id)
    elif allogeneic_lot_id is not None:
        raise ChainOfCustodyError(
            "An autologous harvest comes from the patient and cannot name an allogeneic lot."
        )
    _not_future("harvested_on", harvested_on, "harvest date")
    _require_treatment_consent(episode, harvested_on, "harvest")
    harvest = Harvest(
        episode=episode,
        source=source,
        allogeneic_lot=lot,
        volume_ml=volume_ml,
        harvested_on=harvested_on,
        operator=_operator(operator_id, actor, episode.patient.clinic_id),
    )
    return _create(actor, harvest, patient=episode.patient)


@audited_transaction
def record_processing(
    *,
    actor: Actor,
    episode_id: int,
    method: str,
    lab: str,
    processed_on: dt.date,
    product_id: str,
    tnc_per_ml: float | None = None,
    cfu_f_per_ml: float | None = None,
    cd34_pct: float | None = None,
    viability_pct: float | None = None,
    sterility: str = Sterility.PENDING,
    adjunct_prp: bool = False,
    adjunct_hyaluronic_acid: bool = False,
) -> Processing:
    """Step 2: record the processing of the episode's harvest into product ``product_id``.

    Refused (ChainOfCustodyError) before the harvest is recorded, a second time for the same
    harvest, or dated before the harvest.
    """
    episode = _episode(actor, Action.PROCESSING_RECORD, episode_id)
    _cell_therapy(episode, "Processing")
    harvest = Harvest.objects.filter(episode=episode).first()
    if harvest is None:
        raise MissingStepError(
            f"Episode {episode.pk} has no harvest yet: record the harvest before processing.",
            remedy="harvest",
            patient_id=episode.patient_id,
            episode_id=episode.pk,
        )
    if harvest.voided_at is not None:
        raise ChainOfCustodyError(
            f"The harvest of episode {episode.pk} was voided: a voided harvest cannot be processed."
        )
    if Processing.objects.filter(harvest=harvest).exists():
        raise already_done(episode, "processing") or ChainOfCustodyError(
            f"The harvest of episode {episode.pk} was already processed."
        )
    if processed_on < harvest.harvested_on:
        raise ChainOfCustodyError(
            f"The processing date {format_date(processed_on)} is before the harvest date "
            f"{format_date(harvest.harvested_on)}."
        )
    _not_future("processed_on", processed_on, "processing date")
    _require_treatment_consent(episode, processed_on, "processing")
    processing = Processing(
        harvest=harvest,
        method=method,
        lab=lab.strip(),
        processed_on=processed_on,
        product_id=product_id.strip(),
        tnc_per_ml=tnc_per_ml,
        cfu_f_per_ml=cfu_f_per_ml,
        cd34_pct=cd34_pct,
        viability_pct=viability_pct,
        sterility=sterility,
        adjunct_prp=adjunct_prp,
        adjunct_hyaluronic_acid=adjunct_hyaluronic_acid,
    )
    # Product ids are unique registry-wide; the model's own "already exists" would tell one
    # clinic that another holds the id. Say only that it cannot be used.
    if Processing.objects.filter(product_id=processing.product_id).exists():
        raise ValidationError({"product_id": PRODUCT_ID_UNAVAILABLE})
    return _create(actor, processing, patient=episode.patient)


#: The one answer for a product id that is already used, whoever uses it.
PRODUCT_ID_UNAVAILABLE = (
    "This product id cannot be used. Check it against the lab's label; if it is right, "
    "ask the registry administrator."
)


@audited_transaction
def record_sterility_result(
    *, actor: Actor, episode_id: int, sterility: str, reason: str = ""
) -> Processing:
    """Record the sterility result of the episode's product when it arrives.

    Moving from ``pending`` needs no reason (the result is new information); changing a result
    already recorded is a correction after the fact and needs ``reason``.
    """
    episode = _episode(actor, Action.PROCESSING_RECORD, episode_id)
    processing = Processing.objects.filter(harvest__episode=episode).first()
    if processing is None:
        raise ChainOfCustodyError(f"Episode {episode.pk} has no processed product yet.")
    if sterility not in Sterility.values:
        raise ValidationError({"sterility": f"Choose one of: {', '.join(Sterility.values)}."})
    old = processing.sterility
    if old == sterility:
        return processing
    if old != Sterility.PENDING:
        reason = _require_reason(reason)
    # The version moves with every write, so a correction form opened before it is stale.
    Processing.objects.filter(pk=processing.pk).update(
        sterility=sterility, version=F("version") + 1, updated_at=timezone.now()
    )
    processing.refresh_from_db()
    record_audit(
        actor=actor,
        action="update",
        object_type="processing",
        object_id=processing.pk,
        clinic_id=episode.patient.clinic_id,
        patient_id=episode.patient_id,
        old_values={"sterility": old},
        new_values={"sterility": sterility},
        reason=reason.strip(),
    )
    return processing


def _levels(levels: Sequence[str]) -> list[str]:
    """Validate injected levels: a non-empty list of known levels, each once, in spinal order."""
    if isinstance(levels, str) or not levels:
        raise ValidationError({"levels": "Choose at least one level (L1–L2 to L5–S1)."})
    unknown = [level for level in levels if level not in SpinalLevel.values]
    if unknown:
        raise ValidationError({"levels": f"Unknown level(s): {', '.join(map(str, unknown))}."})
    if len(set(levels)) != len(levels):
        raise ValidationError({"levels": "Each level may be listed once."})
    return [level for level in SpinalLevel.values if level in levels]


@audited_transaction
def record_injection(
    *,
    actor: Actor,
    episode_id: int,
    levels: Sequence[str],
    target: str,
    guidance: str,
    volume_ml: float,
    injected_on: dt.date,
    product_id: str | None = None,
    allogeneic_lot_id: int | None = None,
    cell_dose: float | None = None,
    operator_id: int | None = None,
    adjunct_prp: bool = False,
) -> Injection:
    """Step 3: record an image-guided injection of exactly one product.

    ``product_id`` names a processed autologous product: it must come from this patient's own
    harvest, have a passed sterility result (and, if made from an allogeneic lot, that lot must
    be released), and the injection date may not precede processing. ``allogeneic_lot_id``
    names a lot injected as supplied: it must be released, on or before the injection date.
    Violations raise ChainOfCustodyError; the injection date may not precede the episode start.

    ``adjunct_prp`` records platelet-rich plasma given with the injection. It is the only place
    PRP can be recorded for an allogeneic lot (there is no processing step); for an autologous
    product it may be recorded here or at processing, and either counts. The audit row's
    initial values include it, like every other column.
    """
    episode = _episode(actor, Action.INJECTION_RECORD, episode_id)
    _cell_therapy(episode, "An injection")
    if (product_id is None) == (allogeneic_lot_id is None):
        raise ChainOfCustodyError(
            "Name exactly one product: a processed product id or a released allogeneic lot."
        )
    processing: Processing | None = None
    lot: AllogeneicLot | None = None
    if product_id is not None:
        processing = (
            Processing.objects.select_related("harvest__episode", "harvest__allogeneic_lot")
            .filter(product_id=product_id.strip())
            .first()
        )
        # One message for "no such product" and "another patient's product", so that the
        # refusal reveals nothing about other patients' products.
        if processing is None or processing.harvest.episode.patient_id != episode.patient_id:
            raise ChainOfCustodyError(
                f"Product {product_id} was not processed from this patient's harvest: an "
                "autologous product may be injected only into the patient it was harvested from."
            )
        if processing.voided_at is not None:
            raise ChainOfCustodyError(
                f"Product {product_id} cannot be injected: its processing record was voided."
            )
        unsterile = sterility_blocker(processing, episode.patient_id)
        if unsterile is not None:
            raise unsterile
        source_lot = processing.harvest.allogeneic_lot
        if source_lot is not None and not source_lot.released:
            raise MissingStepError(
                f"Product {product_id} was made from lot {source_lot.lot_number}, which has not "
                "been released. A registry admin releases lots (Administration, Allogeneic lots).",
                remedy="lot_release",
                patient_id=episode.patient_id,
                episode_id=episode.pk,
                lot_id=source_lot.pk,
            )
        if injected_on < processing.processed_on:
            raise ChainOfCustodyError(
                f"The injection date {format_date(injected_on)} is before the processing date "
                f"{format_date(processing.processed_on)}."
            )
    elif allogeneic_lot_id is not None:
        lot = AllogeneicLot.objects.filter(pk=allogeneic_lot_id).first()
        if lot is None:
            raise NotFound("allogeneic_lot", allogeneic_lot_id)
        if not lot.released or lot.released_on is None:
            raise MissingStepError(
                f"Lot {lot.lot_number} has not been released: an allogeneic lot may be injected "
                "only after its release. A registry admin releases lots (Administration, "
                "Allogeneic lots).",
                remedy="lot_release",
                patient_id=episode.patient_id,
                episode_id=episode.pk,
                lot_id=lot.pk,
            )
        if injected_on < lot.released_on:
            raise ChainOfCustodyError(
                f"The injection date {format_date(injected_on)} is before lot {lot.lot_number} was "
                f"released ({format_date(lot.released_on)})."
            )
    if injected_on < episode.start_date:
        raise ChainOfCustodyError(
            f"The injection date {format_date(injected_on)} is before the episode start "
            f"{format_date(episode.start_date)}."
        )
    _not_future("injected_on", injected_on, "injection date")
    _require_treatment_consent(episode, injected_on, "injection")
    injection = Injection(
        episode=episode,
        processing=processing,
        allogeneic_lot=lot,
        levels=_levels(levels),
        target=target,
        guidance=guidance,
        volume_ml=volume_ml,
        cell_dose=cell_dose,
        adjunct_prp=adjunct_prp,
        injected_on=injected_on,
        operator=_operator(operator_id, actor, episode.patient.clinic_id),
    )
    return _create(actor, injection, patient=episode.patient)


# --------------------------------------------------------------------------------------------
# Adverse and clinical events
# --------------------------------------------------------------------------------------------


@audited_transaction
def record_adverse_event(
    *,
    actor: Actor,
    patient_id: int,
    description: str,
    category: str,
    onset: dt.date,
    episode_id: int | None = None,
    serious: bool = False,
    ctcae_grade: int | None = None,
    relatedness: str = "",
    expected: bool | None = None,
    outcome: str = AdverseEventOutcome.UNKNOWN,
    resolved_on: dt.date | None = None,
) -> AdverseEvent:
    """Report an adverse event.

    Reported without grade and relatedness it is ``pending`` (any intake role may report).
    Grading (``ctcae_grade``, ``relatedness``) is adjudication: it needs the adjudicate
    permission, and the event is ``adjudicated`` by the actor only when both are given.
    """
    patient = _patient(actor, Action.ADVERSE_EVENT_REPORT, patient_id)
    grading = ctcae_grade is not None or bool(relatedness)
    if grading:
        verify_actor(actor, Action.ADVERSE_EVENT_ADJUDICATE)
    _not_future("onset", onset, "onset date")
    adjudicated = ctcae_grade is not None and bool(relatedness)
    event = AdverseEvent(
        patient=patient,
        clinic_id=patient.clinic_id,
        episode=_episode_of(patient, episode_id),
        description=description.strip(),
        category=category,
        onset=onset,
        serious=serious,
        ctcae_grade=ctcae_grade,
        relatedness=relatedness,
        expected=expected,
        outcome=outcome,
        resolved_on=resolved_on,
        status=AdverseEventStatus.ADJUDICATED if adjudicated else AdverseEventStatus.PENDING,
        adjudicated_by=actor.user if adjudicated else None,
        adjudicated_at=timezone.now() if adjudicated else None,
    )
    return _create(actor, event, patient=patient)


@audited_transaction
def record_clinical_event(
    *,
    actor: Actor,
    patient_id: int,
    kind: str,
    occurred_on: dt.date,
    episode_id: int | None = None,
    details: str = "",
) -> ClinicalEvent:
    """Record a subsequent surgery or a repeat injection (outcome events)."""
    patient = _patient(actor, Action.CLINICAL_EVENT_RECORD, patient_id)
    _not_future("occurred_on", occurred_on, "event date")
    event = ClinicalEvent(
        patient=patient,
        episode=_episode_of(patient, episode_id),
        kind=kind,
        occurred_on=occurred_on,
        details=details.strip(),
    )
    return _create(actor, event, patient=patient)


@audited_transaction
def record_processing_for_harvest(*, actor: Actor, harvest_id: int, **fields: Any) -> Processing:
    """:func:`record_processing` addressed by the harvest (the API's ``/harvests/{id}``).

    The harvest must belong to a patient of the actor's clinics, else NotFound (the same answer
    as for a harvest that does not exist). ``fields`` are those of :func:`record_processing`.
    """
    clinics = verify_actor(actor, Action.PROCESSING_RECORD)
    episode_id = (
        Harvest.objects.filter(pk=harvest_id, episode__patient__clinic_id__in=clinics)
        .values_list("episode_id", flat=True)
        .first()
    )
    if episode_id is None:
        raise NotFound("harvest", harvest_id)
    return record_processing(actor=actor, episode_id=episode_id, **fields)


@audited_transaction
def adjudicate_adverse_event(
    *,
    actor: Actor,
    adverse_event_id: int,
    ctcae_grade: int,
    serious: bool,
    relatedness: str,
    expected: bool | None,
    outcome: str | None = None,
    resolved_on: dt.date | None = None,
    reason: str = "",
) -> AdverseEvent:
    """Adjudicate a reported adverse event: CTCAE grade, seriousness, relatedness, expectedness.

    Needs ``adverse_event.adjudicate`` (clinicians). A pending event becomes ``adjudicated`` by
    the actor; re-adjudicating an already adjudicated event is a correction after the fact and
    needs ``reason``. The audit row holds the changed fields (old and new). An event outside the
    actor's clinics is NotFound.
    """
    clinics = verify_actor(actor, Action.ADVERSE_EVENT_ADJUDICATE)
    patient_id = (
        AdverseEvent.objects.filter(pk=adverse_event_id, patient__clinic_id__in=clinics)
        .values_list("patient_id", flat=True)
        .first()
    )
    if patient_id is not None:
        lock_patient(patient_id)  # lock order: patient first (see lock_patient)
    event = (
        AdverseEvent.objects.select_for_update()
        .filter(pk=adverse_event_id, patient__clinic_id__in=clinics)
        .select_related("patient")
        .first()
    )
    if event is None:
        raise NotFound("adverse_event", adverse_event_id)
    if event.voided_at is not None:
        raise RecordVoidedError("adverse_event", adverse_event_id)
    if event.status == AdverseEventStatus.ADJUDICATED:
        reason = _require_reason(reason)
    fields = (
        "ctcae_grade",
        "serious",
        "relatedness",
        "expected",
        "outcome",
        "resolved_on",
        "status",
        "adjudicated_by",
        "adjudicated_at",
    )
    old = snapshot(event, fields)
    if not relatedness:
        raise ValidationError({"relatedness": "Choose how the event relates to the treatment."})
    event.ctcae_grade = ctcae_grade
    event.serious = serious
    event.relatedness = relatedness
    event.expected = expected
    if outcome is not None:
        event.outcome = outcome
    event.resolved_on = resolved_on if resolved_on is not None else event.resolved_on
    event.status = AdverseEventStatus.ADJUDICATED
    event.adjudicated_by = actor.user
    event.adjudicated_at = timezone.now()
    validate_record(event)
    # The version moves with every write, so a correction form opened before it is stale.
    event.version += 1
    event.save(update_fields=[*fields, "version", "updated_at"])
    new = snapshot(event, fields)
    record_audit(
        actor=actor,
        action="update",
        object_type="adverseevent",
        object_id=event.pk,
        clinic_id=event.patient.clinic_id,
        patient_id=event.patient_id,
        old_values={name: old[name] for name in old if old[name] != new[name]},
        new_values={name: new[name] for name in new if old[name] != new[name]},
        reason=reason.strip(),
    )
    return event


# --------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------

#: Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "vtb_"
DEFAULT_TOKEN_DAYS = 90


def hash_token(raw: str) -> str:
    """SHA-256 (hex) of a token: what the database stores and looks up.

    A fast hash is right here (unlike passwords): the token has 256 bits of entropy, so there
    is nothing to brute-force, and it is checked on every request.
    """
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@audited_transaction
def issue_api_token(
    *, actor: Actor, role: str | None = None, name: str = "", days: int = DEFAULT_TOKEN_DAYS
) -> tuple[ApiToken, str]:
    """Issue a token for ``actor.user`` acting as ``role`` (default: the actor's role).

    Returns the stored row and the token itself, which exists only in this return value: show
    it once. The user must hold ``role`` (PermissionDeniedError otherwise); ``days`` is 1–365.
    The audit row records the issue (prefix, role, expiry), never the token or its hash.
    """
    role = role or actor.role
    Actor.for_user(actor.user, role)  # the user must hold the role the token will act in
    if not 1 <= days <= 365:
        raise ValidationError({"days": "A token lives between 1 and 365 days."})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=actor.user,
        role=role,
        name=name.strip(),
        token_hash=hash_token(raw),
        prefix=raw[:12],
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    token.save(force_insert=True)
    record_audit(
        actor=actor,
        action="create",
        object_type="apitoken",
        object_id=token.pk,
        new_values={
            "user_id": token.user_id,
            "role": role,
            "prefix": token.prefix,
            "expires_at": token.expires_at,
        },
    )
    return token, raw


@audited_transaction
def revoke_api_token(*, actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the actor's own tokens (idempotent); other users' tokens are NotFound."""
    token = ApiToken.objects.select_for_update().filter(pk=token_id, user=actor.user).first()
    if token is None:
        raise NotFound("api_token", token_id)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_audit(
            actor=actor,
            action="update",
            object_type="apitoken",
            object_id=token.pk,
            old_values={"revoked_at": None},
            new_values={"revoked_at": token.revoked_at},
        )
    return token


def authenticate_api_token(raw: str, *, request_id: str = "") -> Actor | None:
    """The Actor a bearer token stands for, or None when it is unknown, revoked, expired, or
    its user is inactive or no longer holds the token's role. Records the time of use.

    Not audited itself: every read or write done with the Actor is.
    """
    if not raw or len(raw) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if token is None:
        return None
    try:
        actor = Actor.for_user(token.user, token.role, request_id=request_id)
    except PermissionDeniedError:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return actor
