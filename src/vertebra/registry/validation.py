"""One gate for every clinical record, on creation and on correction.

:func:`validate_record` is what a service calls before writing a row, whether it is new or a
correction of an existing one, so that the same rules hold however a value arrives (page, API,
import, correction): the model's own field validation (``full_clean``), and the plausibility
rules (dates, ranges, units, pathway order) that the database cannot express.
Field errors are Django ``ValidationError``s keyed by field name, in plain words that name the
allowed range.

The rules themselves are pure functions in :mod:`vertebra.core.plausibility` reading the
versioned ``data/plausibility.yaml``; this module only reads the *related* rows (the patient's
birth date, the episode's start, the harvest, the processing, the injections) so that the
pathway order birth < diagnosis <= episode <= harvest <= processing <= injection holds in
both directions: a new step cannot precede the one before it, and a correction cannot move a
step past the one after it. The row being validated is excluded from those reads (by primary
key), so a correction is checked against the *other* rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Min, Model
from django.utils import timezone

from vertebra.core import plausibility as rules_
from vertebra.core.plausibility import Bound, Refusal
from vertebra.registry.models import (
    AdverseEvent,
    AllogeneicLot,
    CellSource,
    ClinicalEvent,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    InjectionTarget,
    Patient,
    PriorTreatment,
    Processing,
    TreatmentEpisode,
)

__all__ = ["plausibility_refusals", "validate_record"]


def validate_record(instance: Model) -> None:
    """Validate ``instance`` as it is about to be stored; raise ValidationError if it may not be.

    Runs ``full_clean()`` and then the plausibility rules of its model (fields that already
    failed ``full_clean`` are not checked again). Read-only: never writes. Called inside the
    service's transaction, after any row locks.
    """
    errors: dict[str, list[str]] = {}
    try:
        instance.full_clean()
    except ValidationError as exc:
        errors = {name: list(messages) for name, messages in exc.message_dict.items()}
    for refusal in plausibility_refusals(instance, today=timezone.localdate()):
        if refusal.field not in errors:
            errors.setdefault(refusal.field, []).append(refusal.message)
    if errors:
        raise ValidationError(errors)


def plausibility_refusals(instance: Model, *, today: dt.date) -> list[Refusal]:
    """The plausibility refusals of ``instance`` (empty when plausible, or no rules apply)."""
    check = _CHECKS.get(type(instance))
    return [] if check is None else [r for r in check(instance, today) if r is not None]


# ------------------------------------------------------------------------------ helpers


def _date(
    instance: Model,
    field: str,
    label: str,
    today: dt.date,
    *,
    after: Iterable[Bound | None] = (),
    before: Iterable[Bound | None] = (),
) -> Refusal | None:
    key = _rule_key(instance, field)
    return rules_.check_date(
        field,
        label,
        getattr(instance, field, None),
        today=today,
        future_days=rules_.rules().future_allowance(key),
        after=[b for b in after if b is not None],
        before=[b for b in before if b is not None],
    )


def _rule_key(instance: Model, field: str) -> str:
    """``treatment_episode.start_date``: the key the data file uses for a model's field."""
    names: dict[type[Model], str] = {
        TreatmentEpisode: "treatment_episode",
        PriorTreatment: "prior_treatment",
    }
    model = names.get(type(instance), type(instance).__name__.lower())
    return f"{model}.{field}"


def _bound(label: str, day: dt.date | None, *, strict: bool = False) -> Bound | None:
    return None if day is None else Bound(label, day, strict)


def _birth(patient_id: int | None) -> Bound | None:
    """The patient's birth date as a strict lower bound (nothing happens on the day of birth
    in this registry, and certainly not before)."""
    if patient_id is None:
        return None
    born = Patient.objects.filter(pk=patient_id).values_list("date_of_birth", flat=True).first()
    return _bound("the day after the date of birth", born, strict=True)


def _first_episode_start(patient_id: int, exclude: int | None = None) -> dt.date | None:
    query = TreatmentEpisode.objects.filter(patient_id=patient_id)
    if exclude is not None:
        query = query.exclude(pk=exclude)
    return query.aggregate(first=Min("start_date"))["first"]


def _first_diagnosis(patient_id: int, exclude: int | None = None) -> dt.date | None:
    query = Diagnosis.objects.filter(patient_id=patient_id)
    if exclude is not None:
        query = query.exclude(pk=exclude)
    return query.aggregate(first=Min("diagnosed_on"))["first"]


def _episode_start(episode_id: int | None) -> Bound | None:
    if episode_id is None:
        return None
    start = (
        TreatmentEpisode.objects.filter(pk=episode_id).values_list("start_date", flat=True).first()
    )
    return _bound("the episode start", start)


# ------------------------------------------------------------------------- per model


def _patient(p: Patient, today: dt.date) -> list[Refusal | None]:
    """Birth date: from 1900, not in the future, before every other date of the patient."""
    earliest: list[Bound | None] = []
    if p.pk is not None:
        dated: tuple[tuple[type[Model], str, str], ...] = (
            (Consent, "signed_on", "the first consent signature"),
            (Diagnosis, "diagnosed_on", "the first diagnosis"),
            (PriorTreatment, "started_on", "the first prior treatment"),
            (TreatmentEpisode, "start_date", "the first treatment episode"),
            (AdverseEvent, "onset", "the first adverse event"),
            (ClinicalEvent, "occurred_on", "the first clinical event"),
        )
        for model, field, label in dated:
            first = model._default_manager.filter(patient_id=p.pk).aggregate(m=Min(field))["m"]
            earliest.append(_bound(f"the day before {label}", first, strict=True))
    return [_date(p, "date_of_birth", "date of birth", today, before=earliest)]


def _consent(c: Consent, today: dt.date) -> list[Refusal | None]:
    birth = _birth(c.patient_id)
    return [
        _date(c, "signed_on", "signature date", today, after=[birth]),
        _date(
            c,
            "withdrawn_on",
            "withdrawal date",
            today,
            after=[_bound("the signature date", c.signed_on)],
        ),
    ]


def _diagnosis(d: Diagnosis, today: dt.date) -> list[Refusal | None]:
    """After birth; and the patient's earliest diagnosis may not follow their first episode
    (diagnosis <= episode). A later, additional diagnosis is fine."""
    before: list[Bound | None] = []
    first_episode = _first_episode_start(d.patient_id) if d.patient_id else None
    if first_episode is not None:
        other_first = _first_diagnosis(d.patient_id, exclude=d.pk)
        if other_first is None or other_first > first_episode:
            before.append(_bound("the start of the first treatment episode", first_episode))
    return [
        _date(d, "diagnosed_on", "diagnosis date", today, after=[_birth(d.patient_id)],
              before=before),
    ]  # fmt: skip


def _prior_treatment(t: PriorTreatment, today: dt.date) -> list[Refusal | None]:
    birth = _birth(t.patient_id)
    return [
        _date(t, "started_on", "start date", today, after=[birth]),
        _date(t, "ended_on", "end date", today, after=[birth, _bound("the start date",
              t.started_on)]),
    ]  # fmt: skip


def _amount(value: Any) -> float | None:
    """An amount as a float; None when unknown or not a number (full_clean names that)."""
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _episode(e: TreatmentEpisode, today: dt.date) -> list[Refusal | None]:
    """After birth and the first diagnosis; before (or on) its harvest and injections; its
    cost fields consistent and within the currency's range."""
    before: list[Bound | None] = []
    if e.pk is not None:
        harvest = Harvest.objects.filter(episode_id=e.pk).values_list("harvested_on", flat=True)
        before.append(_bound("the harvest date", harvest.first()))
        first_injection = Injection.objects.filter(episode_id=e.pk).aggregate(m=Min("injected_on"))[
            "m"
        ]
        before.append(_bound("the first injection", first_injection))
    diagnosed = _first_diagnosis(e.patient_id) if e.patient_id else None
    return [
        _date(
            e,
            "start_date",
            "episode start date",
            today,
            after=[_birth(e.patient_id), _bound("the first diagnosis", diagnosed)],
            before=before,
        ),
        *rules_.check_episode_cost(
            _amount(e.price),
            _amount(e.patient_paid),
            e.currency,
            e.billed_to,
            e.cost_note,
        ),
    ]


def _harvest(h: Harvest, today: dt.date) -> list[Refusal | None]:
    processed = None
    if h.pk is not None:
        processed = (
            Processing.objects.filter(harvest_id=h.pk)
            .values_list("processed_on", flat=True)
            .first()
        )
    source_label = dict(CellSource.choices).get(h.source, h.source)
    return [
        _date(
            h,
            "harvested_on",
            "harvest date",
            today,
            after=[_episode_start(h.episode_id)],
            before=[_bound("the processing date", processed)],
        ),
        rules_.check_harvest_volume(h.volume_ml, h.source, source_label),
    ]


def _processing(p: Processing, today: dt.date) -> list[Refusal | None]:
    harvested = None
    if p.harvest_id is not None:
        harvested = (
            Harvest.objects.filter(pk=p.harvest_id).values_list("harvested_on", flat=True).first()
        )
    first_injection = None
    if p.pk is not None:
        first_injection = Injection.objects.filter(processing_id=p.pk).aggregate(
            m=Min("injected_on")
        )["m"]
    r = rules_.rules()
    return [
        _date(
            p,
            "processed_on",
            "processing date",
            today,
            after=[_bound("the harvest date", harvested)],
            before=[_bound("the first injection of this product", first_injection)],
        ),
        rules_.check_range("tnc_per_ml", "TNC", p.tnc_per_ml, r.tnc_million_per_ml),
        rules_.check_range("cfu_f_per_ml", "CFU-F", p.cfu_f_per_ml, r.cfu_f_per_ml),
    ]


def _injection(i: Injection, today: dt.date) -> list[Refusal | None]:
    processed = released = None
    if i.processing_id is not None:
        processed = (
            Processing.objects.filter(pk=i.processing_id)
            .values_list("processed_on", flat=True)
            .first()
        )
    if i.allogeneic_lot_id is not None:
        released = (
            AllogeneicLot.objects.filter(pk=i.allogeneic_lot_id)
            .values_list("released_on", flat=True)
            .first()
        )
    levels = i.levels if isinstance(i.levels, list) else []
    target_label = dict(InjectionTarget.choices).get(i.target, i.target)
    r = rules_.rules()
    return [
        _date(
            i,
            "injected_on",
            "injection date",
            today,
            after=[
                _episode_start(i.episode_id),
                _bound("the processing date", processed),
                _bound("the lot's release date", released),
            ],
        ),
        rules_.check_injection_volume(i.volume_ml, i.target, target_label, len(levels)),
        rules_.check_range("cell_dose", "cell dose", i.cell_dose, r.cell_dose_million),
    ]


def _adverse_event(a: AdverseEvent, today: dt.date) -> list[Refusal | None]:
    refusals: list[Refusal | None] = [
        _date(a, "onset", "onset date", today,
              after=[_birth(a.patient_id), _episode_start(a.episode_id)]),
        _date(a, "resolved_on", "resolution date", today, after=[_bound("the onset", a.onset)]),
    ]  # fmt: skip
    refusals += rules_.check_adverse_event(a.ctcae_grade, bool(a.serious), a.outcome)
    return refusals


def _clinical_event(c: ClinicalEvent, today: dt.date) -> list[Refusal | None]:
    return [
        _date(c, "occurred_on", "event date", today,
              after=[_birth(c.patient_id), _episode_start(c.episode_id)]),
    ]  # fmt: skip


def _lot(lot: AllogeneicLot, today: dt.date) -> list[Refusal | None]:
    return [_date(lot, "released_on", "release date", today)]


_CHECKS: dict[type[Model], Callable[[Any, dt.date], list[Refusal | None]]] = {
    Patient: _patient,
    Consent: _consent,
    Diagnosis: _diagnosis,
    PriorTreatment: _prior_treatment,
    TreatmentEpisode: _episode,
    Harvest: _harvest,
    Processing: _processing,
    Injection: _injection,
    AdverseEvent: _adverse_event,
    ClinicalEvent: _clinical_event,
    AllogeneicLot: _lot,
}
