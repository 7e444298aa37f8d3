"""The analysis-ready tables, read from the registry and follow-up rows, scoped and audited.

Contracts
---------
* :func:`analysis_tables` returns the three tables of the analytics contract
  (:mod:`vertebra.core.analytics.schema`) for the patients the actor may see:

  - clinic staff (roles with ``patient.read``: clinician, coordinator, clinic admin): patients
    of the clinics where they verifiably hold that role; ``patient_id`` is the registry id;
  - registry-wide researchers (``deidentified.read``): every clinic, **de-identified** by
    :func:`vertebra.core.deidentify.deidentify` (HIPAA Safe Harbor): no names, MRN, email,
    phone or date of birth ever enter the tables (only the age at treatment, capped at 90 =
    "90 or older"), no calendar date (the treatment year, and days after the patient's own
    treatment), ``patient_id`` a pseudonym (1..n, random order, new per read); a
    treatment-date filter is widened to whole years;
  - any other role: PermissionDeniedError (and a ``denied`` audit row).

* Each call writes one audit row: action ``read``, object type ``outcomes_report``, the filter
  and the number of patients as ``new_values``.
* Queries are a handful of ``values_list`` reads turned into DataFrames: no per-object loops
  over model instances.
* Mapping (see docs/outcomes.md): one row per patient for their first treatment episode; the
  cell-therapy arm is refined by the cell source (bone marrow -> ``bmac``, adipose ->
  ``adipose``, allogeneic lot -> ``allogeneic``) plus ``_prp`` when PRP was recorded either at
  processing (``Processing.adjunct_prp``, autologous products) or on any injection of the
  episode (``Injection.adjunct_prp``, the only place for an allogeneic lot, which has no
  processing step); these are the synthetic generator's arm names. STarT Back group comes from the
  latest stored screening with a STarT Back result, else the baseline questionnaire's, else
  ``"unknown"``; pain duration from the
  earliest recorded prior treatment start, else missing.
* Odd stored rows never break a read (:func:`read_tables` is the one place rows become frames):
  rows dated outside the plausible window (:func:`vertebra.core.plausibility.analytics_window`:
  1 Jan 1900 to a year ahead, e.g. a year-0025 typo stored before plausibility checks existed,
  or written by SQL) are left out before any frame is built, and the tables'
  ``exclusions`` say how many and why, so every report, dashboard and the decision aid says it.
  A patient with such a birth date or treatment-episode date is left out whole (their first
  episode and age cannot be trusted); an odd event, time point or prior-treatment start is
  left out alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from vertebra.core.analytics import AnalysisTables, CohortFilter, Exclusion, select_patients
from vertebra.core.analytics.cost import COST_COLUMNS
from vertebra.core.codebook import codebook
from vertebra.core.deidentify import coarsen_filter, deidentify
from vertebra.core.instruments import InstrumentError, get_definition
from vertebra.core.instruments.answers import check_answer
from vertebra.core.plausibility import analytics_window
from vertebra.followup.models import FollowUpTimePoint, QuestionnaireResponse
from vertebra.registry.audit import audited_transaction, record_audit
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import (
    AdverseEvent,
    Clinic,
    ClinicalEvent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    ScreeningEvaluation,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, is_allowed, verify_actor

__all__ = [
    "AUDIT_OBJECT_TYPE",
    "IDENTIFYING_COLUMNS",
    "Scope",
    "analysis_tables",
    "clinic_choices",
    "patient_tables",
    "read_tables",
    "scope_for",
    "system_tables",
]

AUDIT_OBJECT_TYPE = "outcomes_report"
#: Columns that identify a person; never present in de-identified tables (which hold only
#: the allow-listed columns of vertebra/data/deidentification.yaml).
IDENTIFYING_COLUMNS = ("mrn", "given_name", "family_name", "email", "phone", "date_of_birth")

#: Registry cell source -> the analytics' cell_source value (the synth generator's names).
CELL_SOURCE = {
    "bone_marrow_iliac_crest": "bone_marrow",
    "adipose": "adipose",
    "umbilical_cord_allogeneic": "allogeneic",
    "other_allogeneic": "allogeneic",
}
#: analytics cell_source -> arm name prefix.
ARM_OF_SOURCE = {"bone_marrow": "bmac", "adipose": "adipose", "allogeneic": "allogeneic"}
#: follow-up instrument id -> timepoints column.
SCORE_COLUMNS = {
    "odi": "odi",
    "nrs_back": "nrs_back",
    "nrs_leg": "nrs_leg",
    "promis_pf_4a": "promis_pf",
    "promis_pi_4a": "promis_pi",
    "opioid_use": "mme",
    "psfs": "psfs",
}
#: follow-up instrument id -> timepoints column holding its band (a category, not a score).
BAND_COLUMNS = {"work_status": "work_status_band"}
#: The patients table's columns, in order (both readers build exactly these; ``mrn`` is added
#: last for the clinic's own identified exports).
PATIENT_COLUMNS = (
    "patient_id",
    "episode_id",
    "clinic_id",
    "arm",
    "condition",
    "treatment_date",
    "age",
    "sex",
    "startback_group",
    "pain_duration_months",
    "cell_source",
    "adjunct",
    "dose",
    *COST_COLUMNS,
)
TIMEPOINT_COLUMNS = (
    "patient_id",
    "timepoint",
    "months",
    "target_date",
    "due_date",
    "window_closes",
    "status",
    "completed",
    "completed_date",
    "odi",
    "nrs_back",
    "nrs_leg",
    "promis_pf",
    "promis_pi",
    "opioid_use",
    "mme",
    "psfs",
    "work_status_band",
)
EVENT_COLUMNS = ("patient_id", "kind", "date", "ctcae_grade", "serious", "relatedness", "status")


@dataclass(frozen=True)
class Scope:
    """Which clinics a read covers and whether the result must be de-identified.

    ``clinic_ids`` None means every clinic (registry-wide researcher or the system export).
    """

    clinic_ids: frozenset[int] | None
    deidentified: bool


def scope_for(actor: Actor) -> Scope:
    """The Scope of ``actor``: clinic staff see their clinics identified, researchers see all
    clinics de-identified; other roles get PermissionDeniedError."""
    if is_allowed(actor.role, Action.PATIENT_READ):
        return Scope(clinic_ids=verify_actor(actor, Action.PATIENT_READ), deidentified=False)
    if is_allowed(actor.role, Action.DEIDENTIFIED_READ):
        verify_actor(actor, Action.DEIDENTIFIED_READ)
        return Scope(clinic_ids=None, deidentified=True)
    raise PermissionDeniedError(
        f"The {actor.role.replace('_', ' ')} role may not read outcome reports.",
        action="outcomes.read",
    )


@audited_transaction
def analysis_tables(
    *, actor: Actor, filter: CohortFilter | None = None, as_of: dt.date | None = None
) -> AnalysisTables:
    """The analysis tables of the actor's patients that satisfy ``filter`` (audited once).

    ``as_of`` (default today) is the data cut-off of de-identified tables (see
    :func:`read_tables`); identified tables do not depend on it. Raises PermissionDeniedError
    for roles with neither ``patient.read`` nor ``deidentified.read`` (a ``denied`` row is
    audited by the decorator).
    """
    flt = filter or CohortFilter()
    scope = scope_for(actor)
    tables = read_tables(scope, flt, as_of=as_of)
    record_audit(
        actor=actor,
        action="read",
        object_type=AUDIT_OBJECT_TYPE,
        new_values={
            "filter": flt.to_dict(),
            "deidentified": scope.deidentified,
            "n_patients": len(tables.patients),
        },
    )
    return tables


@audited_transaction
def patient_tables(*, actor: Actor, patient_id: int) -> AnalysisTables:
    """One patient's rows of the actor's analysis tables (identified; unfiltered): the rows
    :func:`analysis_tables` would hold for this patient, read now for this patient alone (an
    index read, whatever the size of the registry), with the exclusions of this patient's
    rows only. No row when the patient is not in the actor's clinics. Audited once (action
    ``read``, the patient named). Raises PermissionDeniedError for roles without
    ``patient.read`` (the per-patient page is for clinic staff)."""
    from vertebra.outcomes.columnar import read_frames, tables_from_frames

    if not is_allowed(actor.role, Action.PATIENT_READ):
        raise PermissionDeniedError(
            f"The {actor.role.replace('_', ' ')} role may not read a patient's outcomes.",
            action="outcomes.read",
        )
    clinics = verify_actor(actor, Action.PATIENT_READ)
    frames = read_frames(clinics, patient_ids={int(patient_id)})
    tables = tables_from_frames(frames, clinics, False, CohortFilter())
    episodes = frames.frames["episodes"]["clinic_id"].dropna()
    record_audit(
        actor=actor,
        action="read",
        object_type=AUDIT_OBJECT_TYPE,
        object_id=int(patient_id),
        clinic_id=int(episodes.iloc[0]) if len(episodes) else None,
        patient_id=int(patient_id),
        new_values={"patient": int(patient_id), "n_patients": len(tables.patients)},
    )
    return tables


@dataclass(frozen=True)
class _SystemUser:
    """The command line's audit identity (no account): ``system:<purpose>``."""

    username: str
    pk: None = None
    is_active: bool = True

    def get_username(self) -> str:
        return self.username


def system_tables(
    flt: CohortFilter | None = None,
    *,
    purpose: str,
    with_mrn: bool = False,
    deidentified: bool = False,
    as_of: dt.date | None = None,
    with_items: bool = False,
    _reader: Any = None,
) -> AnalysisTables:
    """Tables of every clinic for an operator's command (export, report), audited.

    Identified by default; ``deidentified`` gives the researchers' tables at the data cut-off
    ``as_of`` (default today), as for the research export. ``with_items`` adds the item-level
    answers to the time points (:func:`read_tables`). For management-level commands
    run by whoever operates the server (who can read the database anyway); the audit row
    names ``system:<purpose>``, the filter and whether the tables were de-identified.
    (``_reader`` replaces :func:`read_tables`: only :func:`_system_tables_orm` passes it.)
    """
    read = _reader or read_tables
    flt = flt or CohortFilter()
    actor = Actor(user=_SystemUser(f"system:{purpose}"), role="system", clinic_ids=frozenset())
    scope = Scope(clinic_ids=None, deidentified=deidentified)
    with transaction.atomic():
        tables = read(scope, flt, with_mrn=with_mrn, as_of=as_of, with_items=with_items)
        record_audit(
            actor=actor,
            action="read",
            object_type=AUDIT_OBJECT_TYPE,
            new_values={
                "filter": flt.to_dict(),
                "deidentified": deidentified,
                "with_mrn": with_mrn,
                "n_patients": len(tables.patients),
            },
        )
    return tables


def _system_tables_orm(
    flt: CohortFilter | None = None,
    *,
    purpose: str,
    with_mrn: bool = False,
    deidentified: bool = False,
    as_of: dt.date | None = None,
    with_items: bool = False,
) -> AnalysisTables:
    """:func:`system_tables` read row by row through the ORM (:func:`_read_tables_orm`): the
    reference the columnar read is tested and benchmarked against; not for production use."""
    return system_tables(
        flt,
        purpose=purpose,
        with_mrn=with_mrn,
        deidentified=deidentified,
        as_of=as_of,
        with_items=with_items,
        _reader=_read_tables_orm,
    )


def read_tables(
    scope: Scope,
    flt: CohortFilter | None = None,
    *,
    with_mrn: bool = False,
    as_of: dt.date | None = None,
    with_items: bool = False,
) -> AnalysisTables:
    """Build the tables for ``scope`` and ``flt`` without permission checks or audit.

    Read at columnar speed (:func:`vertebra.outcomes.columnar.read_tables_columnar`: one
    SELECT per source table, COPY into Arrow on PostgreSQL); the same tables as the ORM
    reference :func:`_read_tables_orm`, whose docstring states the contract.
    """
    from vertebra.outcomes.columnar import read_tables_columnar

    return read_tables_columnar(
        scope.clinic_ids,
        scope.deidentified,
        flt,
        with_mrn=with_mrn,
        as_of=as_of,
        with_items=with_items,
    )


def _read_tables_orm(
    scope: Scope,
    flt: CohortFilter | None = None,
    *,
    with_mrn: bool = False,
    as_of: dt.date | None = None,
    with_items: bool = False,
) -> AnalysisTables:
    """Build the tables for ``scope`` and ``flt`` without permission checks or audit, row by
    row through the ORM (the reference implementation of :func:`read_tables`).

    With ``with_items`` the time points also carry one column per instrument item of the
    research codebook (:func:`vertebra.core.codebook.codebook`), the answer as its option code
    or number (missing when not answered; an answer the definition no longer accepts is
    missing too, never guessed).
    For callers that already decided access (:func:`analysis_tables`, the system export). With
    ``with_mrn`` (identified scopes only) the patients table carries the MRN for linkage.
    A de-identified scope gets :func:`vertebra.core.deidentify.deidentify` of the identified
    tables at the data cut-off ``as_of`` (default: today in the site's time zone), with the
    treatment-date filter widened to whole years first (the tables keep only the year).
    """
    if with_mrn and scope.deidentified:
        raise ValueError("a de-identified read cannot carry the MRN")
    flt = flt or CohortFilter()
    if scope.deidentified:
        flt = coarsen_filter(flt)
    window = analytics_window(timezone.localdate())
    left_out = _LeftOut(window)
    patients = _patients(scope, flt, with_mrn=with_mrn, left_out=left_out)
    if len(patients):
        patients = patients.loc[select_patients(patients, flt)].reset_index(drop=True)
    episodes = dict(zip(patients["episode_id"], patients["patient_id"], strict=True))
    timepoints = _timepoints(episodes, left_out, with_items=with_items)
    events = _events(patients, left_out)
    patients = patients.drop(columns=["episode_id"])
    tables = AnalysisTables.of(patients, timepoints, events, exclusions=left_out.exclusions())
    if scope.deidentified:
        tables = deidentify(tables, as_of=as_of or timezone.localdate())
    return tables


#: Why a row was left out, in words fit for every reader (no calendar date of anyone).
ODD_DATE_REASON = (
    "a stored {field} lies outside the plausible range (before 1900 or more than a year "
    "ahead, e.g. a mistyped year); correct the record to include it"
)


class _LeftOut:
    """Counts of stored rows a read leaves out because of implausible dates."""

    def __init__(self, window: tuple[dt.date, dt.date]) -> None:
        self.window = window
        self.counts: dict[tuple[str, str], int] = {}

    def outside(self, field: str) -> Q:
        """Rows whose ``field`` lies outside the window."""
        low, high = self.window
        return Q(**{f"{field}__lt": low}) | Q(**{f"{field}__gt": high})

    def add(self, what: str, field_words: str, count: int) -> None:
        if count:
            key = (what, field_words)
            self.counts[key] = self.counts.get(key, 0) + count

    def exclusions(self) -> tuple[Exclusion, ...]:
        return tuple(
            Exclusion(what, count, ODD_DATE_REASON.format(field=field))
            for (what, field), count in sorted(self.counts.items())
        )


def clinic_choices(actor: Actor) -> list[tuple[str, str]]:
    """(id, name) of the clinics the actor's outcome reports may cover, for a filter menu.

    Not audited: clinic names are reference data, not patient data.
    """
    scope = scope_for(actor)
    query = Clinic.objects.all()
    if scope.clinic_ids is not None:
        query = query.filter(pk__in=scope.clinic_ids)
    return [(str(pk), name) for pk, name in query.order_by("name").values_list("pk", "name")]


# --------------------------------------------------------------------------------- patients


def _live(model: type[Model]) -> QuerySet[Any]:
    """The model's rows that were not voided (entered in error, ADR 0009): the one filter every
    analysis read goes through, so a voided record never counts."""
    return model._default_manager.filter(voided_at__isnull=True)


def _frame(rows: Iterable[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame from ``values_list`` rows (an empty frame keeps its columns)."""
    records: list[Any] = list(rows)
    return pd.DataFrame.from_records(records, columns=list(columns))


def _odd_patients(scope: Scope, left_out: _LeftOut) -> list[int]:
    """In-scope treated patients with a birth or episode date outside the window (left out
    whole, and counted)."""
    episodes = _live(TreatmentEpisode)
    if scope.clinic_ids is not None:
        episodes = episodes.filter(patient__clinic_id__in=scope.clinic_ids)
    odd = episodes.filter(
        left_out.outside("start_date") | left_out.outside("patient__date_of_birth")
    )
    ids = sorted(set(odd.values_list("patient_id", flat=True)))
    left_out.add("patients", "treatment date or birth date", len(ids))
    return ids


#: Episode fields behind the analytics' cost columns (same order as COST_COLUMNS).
_COST_FIELDS = ("price", "patient_paid", "currency", "billed_to")


def _first_episodes(scope: Scope, flt: CohortFilter, left_out: _LeftOut) -> pd.DataFrame:
    """Each in-scope patient's first treatment episode (earliest start date, then id),
    leaving out patients with implausible stored dates."""
    query = _live(TreatmentEpisode)
    if scope.clinic_ids is not None:
        query = query.filter(patient__clinic_id__in=scope.clinic_ids)
    odd = _odd_patients(scope, left_out)
    if odd:
        query = query.exclude(patient_id__in=odd)
    if flt.clinics:
        wanted = [int(c) for c in flt.clinics if str(c).isdigit()]
        query = query.filter(patient__clinic_id__in=wanted)
    cols = ("episode_id", "patient_id", "registry_arm", "treatment_date", *COST_COLUMNS)
    frame = _frame(
        query.order_by("patient_id", "start_date", "id").values_list(
            "id", "patient_id", "arm", "start_date", *_COST_FIELDS
        ),
        cols,
    )
    for column in ("cost_price", "cost_patient_paid"):  # Decimal -> float (analytics' numbers)
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    cost_codes_as_read(frame)
    return frame.drop_duplicates("patient_id", keep="first").reset_index(drop=True)


def _patients(
    scope: Scope, flt: CohortFilter, *, with_mrn: bool, left_out: _LeftOut
) -> pd.DataFrame:
    """One row per treated patient in scope, in the analytics' patients schema."""
    episodes = _first_episodes(scope, flt, left_out)
    ids = episodes["patient_id"].tolist()
    fields = ["id", "clinic_id", "sex", "date_of_birth"] + (["mrn"] if with_mrn else [])
    people = _frame(
        Patient.objects.filter(pk__in=ids).values_list(*fields),
        ["patient_id", "clinic_id", "sex", "date_of_birth"] + (["mrn"] if with_mrn else []),
    )
    frame = episodes.merge(people, on="patient_id", how="inner")
    frame["condition"] = frame["patient_id"].map(_conditions(ids)).fillna("unknown")
    frame["startback_group"] = frame["patient_id"].map(_startback(ids)).fillna("unknown")
    frame = frame.join(_cell_details(frame["episode_id"].tolist()), on="episode_id")
    frame["treatment_date"] = pd.to_datetime(frame["treatment_date"])
    born = pd.to_datetime(frame["date_of_birth"])
    frame["age"] = np.floor((frame["treatment_date"] - born).dt.days / 365.25).astype(float)
    onset = frame["patient_id"].map(_pain_onset(ids, left_out))
    frame["pain_duration_months"] = (
        (frame["treatment_date"] - pd.to_datetime(onset)).dt.days / 30.0
    ).astype(float)
    is_cell = frame["registry_arm"].eq("cell_therapy")
    frame["arm"] = np.where(is_cell, frame["cell_arm"], frame["registry_arm"])
    frame.loc[~is_cell, ["cell_source", "adjunct", "dose"]] = np.nan
    frame["clinic_id"] = frame["clinic_id"].astype(str)
    columns = patient_columns(with_mrn=with_mrn)
    return frame[columns].sort_values("patient_id").reset_index(drop=True)


def _conditions(patient_ids: list[int]) -> dict[int, str]:
    """Patient -> condition of their first diagnosis (earliest diagnosed_on, then id)."""
    rows = (
        _live(Diagnosis)
        .filter(patient_id__in=patient_ids)
        .order_by("patient_id", "diagnosed_on", "id")
        .values_list("patient_id", "condition")
    )
    first: dict[int, str] = {}
    for pid, condition in rows:
        first.setdefault(pid, condition)
    return first


def _startback(patient_ids: list[int]) -> dict[int, str]:
    """Patient -> STarT Back risk group: of their latest screening that has one, else of their
    earliest answered baseline questionnaire (the portal asks STarT Back at baseline)."""
    rows = (
        ScreeningEvaluation.objects.filter(patient_id__in=patient_ids)
        .order_by("patient_id", "-evaluated_at", "-id")
        .values_list("patient_id", "result")
    )
    groups: dict[int, str] = {}
    for pid, result in rows:
        startback = (result or {}).get("startback") if isinstance(result, dict) else None
        if pid not in groups and isinstance(startback, dict) and startback.get("risk_group"):
            groups[pid] = str(startback["risk_group"])
    answered = (
        _live(QuestionnaireResponse)
        .filter(
            time_point__patient_id__in=patient_ids,
            time_point__key="baseline",
            instrument_id="startback",
        )
        .exclude(band="")
        .order_by("time_point__patient_id", "submitted_at", "id")
        .values_list("time_point__patient_id", "band")
    )
    for pid, band in answered:
        groups.setdefault(pid, str(band))
    return groups


def _pain_onset(patient_ids: list[int], left_out: _LeftOut) -> dict[int, dt.date]:
    """Patient -> earliest start date of a recorded prior treatment (a floor for pain onset);
    implausible start dates are ignored (and counted)."""
    treated = _live(PriorTreatment).filter(patient_id__in=patient_ids, started_on__isnull=False)
    odd = treated.filter(left_out.outside("started_on"))
    left_out.add("prior-treatment start dates", "prior-treatment start date", odd.count())
    rows = (
        treated.exclude(left_out.outside("started_on"))
        .order_by("patient_id", "started_on")
        .values_list("patient_id", "started_on")
    )
    onset: dict[int, dt.date] = {}
    for pid, day in rows:
        if day is not None:
            onset.setdefault(pid, day)
    return onset


def _injected_with_prp(episode_ids: list[int]) -> set[int]:
    """Episodes with at least one injection that recorded PRP (``Injection.adjunct_prp``)."""
    return set(
        _live(Injection)
        .filter(episode_id__in=episode_ids, adjunct_prp=True)
        .values_list("episode_id", flat=True)
        .distinct()
    )


def _cell_details(episode_ids: list[int]) -> pd.DataFrame:
    """Per episode: cell_arm, cell_source, adjunct, dose (indexed by episode id).

    PRP counts when processing recorded it or any injection of the episode did, so an
    allogeneic lot given with PRP reads back as ``allogeneic_prp``.
    """
    harvest = _frame(
        _live(Harvest)
        .filter(episode_id__in=episode_ids)
        .values_list(
            "episode_id",
            "source",
            "processing__adjunct_prp",
            "processing__adjunct_hyaluronic_acid",
        ),
        ["episode_id", "source", "prp", "hyaluronic_acid"],
    ).set_index("episode_id")
    injection = _frame(
        _live(Injection)
        .filter(episode_id__in=episode_ids)
        .order_by("episode_id", "injected_on", "id")
        .values_list("episode_id", "cell_dose", "allogeneic_lot_id"),
        ["episode_id", "dose", "lot_id"],
    ).drop_duplicates("episode_id", keep="first")
    injection = injection.set_index("episode_id")
    out = pd.DataFrame(index=pd.Index(episode_ids, name="episode_id"))
    out = out.join(harvest).join(injection)
    source = out["source"].map(CELL_SOURCE)
    source = source.mask(source.isna() & out["lot_id"].notna(), "allogeneic")
    prp = out["prp"].astype("boolean").fillna(False).astype(bool)
    prp = prp | out.index.isin(list(_injected_with_prp(episode_ids)))
    hyaluronic = out["hyaluronic_acid"].astype("boolean").fillna(False).astype(bool)
    out["cell_source"] = source
    adjunct = pd.Series(None, index=out.index, dtype=object)
    adjunct[hyaluronic] = "hyaluronic_acid"
    adjunct[prp] = "prp"
    out["adjunct"] = adjunct
    base = source.map(ARM_OF_SOURCE).fillna("cell_therapy")
    out["cell_arm"] = np.where(prp, base + "_prp", base)
    out["dose"] = pd.to_numeric(out["dose"], errors="coerce").astype(float)
    return out[["cell_arm", "cell_source", "adjunct", "dose"]]


# ------------------------------------------------------------------------------- timepoints


#: Follow-up time points may lie up to this long after the analytics window's end (the last
#: time point, 24 months, with its window, of an episode booked a year ahead).
FOLLOWUP_HORIZON = dt.timedelta(days=3 * 366)


def _timepoints(
    episode_to_patient: dict[int, int], left_out: _LeftOut, *, with_items: bool = False
) -> pd.DataFrame:
    """One row per patient x scheduled time point of the patient's first episode, with scores.

    A time point dated outside the window (+ the follow-up horizon) is left out and counted.
    """
    low, high = left_out.window
    high = high + FOLLOWUP_HORIZON
    odd = Q()
    for field in ("target", "opens", "closes"):
        odd |= Q(**{f"{field}__lt": low}) | Q(**{f"{field}__gt": high})
    points = FollowUpTimePoint.objects.filter(schedule__episode_id__in=list(episode_to_patient))
    left_out.add("follow-up time points", "follow-up due date", points.filter(odd).count())
    rows = points.exclude(odd).values_list(
        "id",
        "schedule__episode_id",
        "key",
        "months",
        "target",
        "opens",
        "closes",
        "status",
        "completed_at",
    )
    tp = _frame(
        rows,
        [
            "tp_id",
            "episode_id",
            "timepoint",
            "months",
            "target_date",
            "due_date",
            "window_closes",
            "status",
            "completed_at",
        ],
    )
    tp["patient_id"] = tp["episode_id"].map(episode_to_patient)
    tp["completed"] = tp["status"].eq("completed").astype(bool)
    tp["completed_date"] = pd.to_datetime(tp["completed_at"], utc=True).dt.tz_localize(None)
    tp["completed_date"] = tp["completed_date"].dt.normalize()
    for col in ("target_date", "due_date", "window_closes"):
        tp[col] = pd.to_datetime(tp[col])
    tp["months"] = tp["months"].astype(float)
    scores = _scores(tp["tp_id"].tolist())
    tp = tp.join(scores, on="tp_id")
    tp = tp.join(_bands(tp["tp_id"].tolist()), on="tp_id")
    for col in SCORE_COLUMNS.values():
        tp[col] = pd.to_numeric(tp[col], errors="coerce").astype(float)
    tp["opioid_use"] = np.where(tp["mme"].notna(), (tp["mme"] > 0).astype(float), np.nan)
    columns = list(TIMEPOINT_COLUMNS)
    if with_items:
        items = _items(tp["tp_id"].tolist())
        tp = tp.join(items, on="tp_id")
        columns += list(items.columns)
    tp = tp.sort_values(["patient_id", "months"]).reset_index(drop=True)
    return tp[columns]


def _items(tp_ids: list[int]) -> pd.DataFrame:
    """Time point id -> one column per codebook item column (option code or number)."""
    columns = codebook().item_columns()
    wanted = {c.instrument for c in columns}
    rows = (
        _live(QuestionnaireResponse)
        .filter(time_point_id__in=tp_ids, instrument_id__in=sorted(wanted))
        .values_list("time_point_id", "instrument_id", "answers")
    )
    return _item_rows(rows, columns)


def _item_rows(rows: Iterable[Sequence[Any]], columns: Sequence[Any]) -> pd.DataFrame:
    """(time point id, instrument id, answers) rows -> one column per codebook item column
    (option code or number; an answer the definition no longer accepts is missing)."""
    name_of = {(c.instrument, c.link_id): c.name for c in columns}
    found: dict[int, dict[str, Any]] = {}
    for tp_id, instrument_id, answers in rows:
        if not isinstance(answers, dict):
            continue
        defn = get_definition(instrument_id)
        row = found.setdefault(tp_id, {})
        for item in defn.items:
            try:
                value = check_answer(defn, item, answers.get(item.id))
            except InstrumentError:
                value = None  # an answer the definition no longer accepts: missing
            row[name_of[(instrument_id, item.id)]] = value
    frame = pd.DataFrame.from_dict(found, orient="index")
    frame.index.name = "tp_id"
    frame = frame.reindex(columns=[c.name for c in columns])
    for col in columns:  # numbers as numbers (an object column of floats is not a code)
        if col.type in ("integer", "number"):
            frame[col.name] = pd.to_numeric(frame[col.name], errors="coerce").astype(float)
    return frame


def _scores(tp_ids: list[int]) -> pd.DataFrame:
    """Time point id -> one column per scored instrument (NaN when not answered/scorable)."""
    long = _frame(
        _live(QuestionnaireResponse)
        .filter(time_point_id__in=tp_ids, instrument_id__in=list(SCORE_COLUMNS))
        .values_list("time_point_id", "instrument_id", "score"),
        ["tp_id", "instrument_id", "score"],
    )
    columns = list(SCORE_COLUMNS.values())
    if long.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="tp_id"), dtype=float)
    long["score"] = pd.to_numeric(long["score"], errors="coerce")
    wide = long.pivot_table(
        index="tp_id", columns="instrument_id", values="score", aggfunc="last", dropna=False
    )
    wide = wide.rename(columns=SCORE_COLUMNS)
    return wide.reindex(columns=columns)


def _bands(tp_ids: list[int]) -> pd.DataFrame:
    """Time point id -> one column per categorical instrument (its band; None when none)."""
    long = _frame(
        _live(QuestionnaireResponse)
        .filter(time_point_id__in=tp_ids, instrument_id__in=list(BAND_COLUMNS))
        .exclude(band="")
        .values_list("time_point_id", "instrument_id", "band"),
        ["tp_id", "instrument_id", "band"],
    )
    columns = list(BAND_COLUMNS.values())
    if long.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="tp_id"), dtype=object)
    wide = long.pivot_table(
        index="tp_id", columns="instrument_id", values="band", aggfunc="last", dropna=False
    )
    return wide.rename(columns=BAND_COLUMNS).reindex(columns=columns)


# ----------------------------------------------------------------------------------- events


def _events(patients: pd.DataFrame, left_out: _LeftOut) -> pd.DataFrame:
    """Adverse events and clinical events (surgery, repeat injection) of these patients;
    events dated outside the window are left out and counted."""
    ids = patients["patient_id"].tolist()
    adverse_rows = _live(AdverseEvent).filter(patient_id__in=ids)
    clinical_rows = _live(ClinicalEvent).filter(patient_id__in=ids)
    odd = (
        adverse_rows.filter(left_out.outside("onset")).count()
        + clinical_rows.filter(left_out.outside("occurred_on")).count()
    )
    left_out.add("adverse or clinical events", "event date", odd)
    adverse = _frame(
        adverse_rows.exclude(left_out.outside("onset")).values_list(
            "patient_id", "onset", "ctcae_grade", "serious", "relatedness", "status"
        ),
        ["patient_id", "date", "ctcae_grade", "serious", "relatedness", "status"],
    )
    adverse["kind"] = "adverse_event"
    adverse["relatedness"] = adverse["relatedness"].replace("", None)
    clinical = _frame(
        clinical_rows.exclude(left_out.outside("occurred_on")).values_list(
            "patient_id", "kind", "occurred_on"
        ),
        ["patient_id", "kind", "date"],
    )
    parts = [p for p in (adverse, clinical) if len(p)]
    events = pd.concat(parts, ignore_index=True) if parts else adverse
    events = events.reindex(columns=list(EVENT_COLUMNS))
    events["date"] = pd.to_datetime(events["date"])
    events["ctcae_grade"] = pd.to_numeric(events["ctcae_grade"], errors="coerce").astype(float)
    events["serious"] = events["serious"].astype("boolean")
    return events.sort_values(["patient_id", "date"], kind="stable").reset_index(drop=True)


def patient_columns(*, with_mrn: bool) -> list[str]:
    """The patients table's columns (:data:`PATIENT_COLUMNS`, then ``mrn`` when asked)."""
    return [*PATIENT_COLUMNS, *(["mrn"] if with_mrn else [])]


def cost_codes_as_read(frame: pd.DataFrame) -> None:
    """Normalise the cost code columns in place as both readers do: codes are lower case
    ("usd"; de-identified text cells must be codes) and "not recorded" ("") is missing."""
    frame["cost_currency"] = frame["cost_currency"].str.lower().replace("", None)
    frame["cost_billed_to"] = frame["cost_billed_to"].replace("", None)
