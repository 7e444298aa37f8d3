"""Reads of identified patient data, scoped to the actor's clinics and audited.

Contracts
---------
* Every selector checks ``patient.read`` for the actor's role and returns only patients of the
  clinics where the actor verifiably holds that role.
* A patient outside those clinics is indistinguishable from one that does not exist: NotFound,
  with the same message (never revealing existence).
* Every read writes one audit row in the same transaction (``read`` with the patient id, or
  ``search`` with the query and the ids returned); refusals write a ``denied`` row.
* Results are evaluated lists, not lazy querysets, so what was audited is what was returned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from vertebra.core.labels import label
from vertebra.registry.audit import audited_transaction, record_audit
from vertebra.registry.corrections import RECORD_TYPES
from vertebra.registry.counts import patients_in
from vertebra.registry.errors import NotFound
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventStatus,
    AuditEvent,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, verify_actor

#: The most patients one search returns (pagination beyond that is the caller's job).
MAX_RESULTS = 100


@audited_transaction
def patients_for(
    *, actor: Actor, search: str | None = None, limit: int = 50, offset: int = 0
) -> list[Patient]:
    """Patients of the actor's clinics, by family and given name, optionally filtered.

    ``search`` matches the start of the MRN or any part of the given or family name,
    case-insensitively. ``limit`` is capped at :data:`MAX_RESULTS`.
    """
    clinics = verify_actor(actor, Action.PATIENT_READ)
    limit = max(0, min(limit, MAX_RESULTS))
    offset = max(0, offset)
    query = Patient.objects.filter(clinic_id__in=clinics)
    term = (search or "").strip()
    if term:
        query = query.filter(
            Q(mrn__istartswith=term)
            | Q(given_name__icontains=term)
            | Q(family_name__icontains=term)
        )
    patients = list(query.order_by("family_name", "given_name", "id")[offset : offset + limit])
    record_audit(
        actor=actor,
        action="search",
        object_type="patient",
        new_values={
            "search": term,
            "limit": limit,
            "offset": offset,
            "patient_ids": [patient.pk for patient in patients],
        },
    )
    return patients


def _clinics_for(actor: Actor, intent: Action | None) -> frozenset[int]:
    """Clinics where the actor may read patients and, if given, also perform ``intent``.

    ``intent`` is the action a form page is about to offer: showing a harvest form to a role
    that may not record one is refused up front (PermissionDeniedError), exactly as the
    service would refuse the submission.
    """
    clinics = verify_actor(actor, Action.PATIENT_READ)
    if intent is not None and intent is not Action.PATIENT_READ:
        clinics = clinics & verify_actor(actor, intent)
    return clinics


@audited_transaction
def get_patient_for(*, actor: Actor, patient_id: int, intent: Action | None = None) -> Patient:
    """The patient ``patient_id`` if the actor may read them (and perform ``intent``, when
    given); else PermissionDeniedError (role) or NotFound (not in the actor's clinics)."""
    clinics = _clinics_for(actor, intent)
    patient = Patient.objects.filter(pk=patient_id, clinic_id__in=clinics).first()
    if patient is None:
        raise NotFound("patient", patient_id)
    record_audit(
        actor=actor,
        action="read",
        object_type="patient",
        object_id=patient.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
    )
    return patient


# --------------------------------------------------------------------------------------------
# Search with filters, sort allow-list and a total for pagination
# --------------------------------------------------------------------------------------------

#: The only orderings a caller may ask for (API ``sort``; anything else is refused upstream).
SORTS: dict[str, tuple[str, ...]] = {
    "name": ("family_name", "given_name", "id"),
    "-name": ("-family_name", "-given_name", "-id"),
    "created": ("created_at", "id"),
    "-created": ("-created_at", "-id"),
    "mrn": ("mrn", "id"),
    "-mrn": ("-mrn", "-id"),
}


@dataclass(frozen=True)
class PatientPage:
    """One page of a patient search: the rows, how many match in all, and the window."""

    items: list[Patient]
    total: int
    limit: int
    offset: int


def _page_of(
    query: QuerySet[Patient], order: tuple[str, ...], total: int, offset: int, limit: int
) -> list[Patient]:
    """The patients at ``offset .. offset+limit`` of ``query`` in ``order`` (``total`` rows).

    Why not one ``ORDER BY .. OFFSET .. LIMIT``: the database must step over every skipped row,
    and reading whole rows to skip them costs a heap visit each (seconds at offset 500,000).
    Instead the page's ids are read first (from an index that covers the order and the filters,
    migration 0014: index-only), then the rows of those ids; and a page in the back half of the
    result is read in the reverse order from the end, so no page skips more than half.
    """
    if offset >= total:
        return []
    ordered = query.order_by(*order)
    if offset > total // 2:
        end = min(total, offset + limit)
        from_end = list(
            ordered.reverse().values_list("pk", flat=True)[total - end : total - offset]
        )
        ids = from_end[::-1]
    else:
        ids = list(ordered.values_list("pk", flat=True)[offset : offset + limit])
    rows = Patient.objects.in_bulk(ids)
    return [rows[pk] for pk in ids if pk in rows]


@audited_transaction
def search_patients(
    *,
    actor: Actor,
    search: str = "",
    condition: str = "",
    arm: str = "",
    sort: str = "name",
    limit: int = 25,
    offset: int = 0,
) -> PatientPage:
    """Patients of the actor's clinics matching ``search`` (MRN prefix or part of a name),
    having a diagnosis of ``condition`` and an episode in ``arm`` when those are given.

    ``sort`` must be a key of :data:`SORTS` (ValueError otherwise: callers validate input);
    ``limit`` is clamped to 1..:data:`MAX_RESULTS`. Audited as one ``search`` row listing the
    filters and the ids returned.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    clinics = verify_actor(actor, Action.PATIENT_READ)
    limit = max(1, min(limit, MAX_RESULTS))
    offset = max(0, offset)
    query = Patient.objects.filter(clinic_id__in=clinics)
    term = search.strip()
    if term:
        query = query.filter(
            Q(mrn__istartswith=term)
            | Q(given_name__icontains=term)
            | Q(family_name__icontains=term)
        )
    # A voided (entered in error) diagnosis or episode does not make a patient match.
    if condition:
        diagnoses = Diagnosis.objects.filter(condition=condition, voided_at__isnull=True)
        query = query.filter(pk__in=diagnoses.values("patient"))
    if arm:
        episodes = TreatmentEpisode.objects.filter(arm=arm, voided_at__isnull=True)
        query = query.filter(pk__in=episodes.values("patient"))
    # Unfiltered, the total is the clinics' trigger-kept patient counts (a few rows), not a
    # COUNT of every patient row (a second at 1,000,000; ADR 0023 §10).
    filtered = bool(term or condition or arm)
    total = query.count() if filtered else patients_in(clinics)
    patients = _page_of(query, SORTS[sort], total, offset, limit)
    record_audit(
        actor=actor,
        action="search",
        object_type="patient",
        new_values={
            "search": term,
            "condition": condition,
            "arm": arm,
            "sort": sort,
            "limit": limit,
            "offset": offset,
            "patient_ids": [patient.pk for patient in patients],
        },
    )
    return PatientPage(items=patients, total=total, limit=limit, offset=offset)


# --------------------------------------------------------------------------------------------
# One patient's record and timeline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One dated line of a patient's timeline; ``kind`` names the template fragment."""

    date: dt.date
    kind: str
    title: str
    obj: Any
    anchor: str


@dataclass
class PatientRecord:
    """Everything the patient page shows, read in one audited transaction."""

    patient: Patient
    consents: list[Any] = field(default_factory=list)
    diagnoses: list[Any] = field(default_factory=list)
    prior_treatments: list[Any] = field(default_factory=list)
    screenings: list[Any] = field(default_factory=list)
    episodes: list[TreatmentEpisode] = field(default_factory=list)
    adverse_events: list[AdverseEvent] = field(default_factory=list)
    clinical_events: list[Any] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: Records of types registered by higher floors (follow-up answers entered by staff):
    #: (record type, that type's records of this patient).
    other_records: list[tuple[Any, list[Any]]] = field(default_factory=list)


def build_timeline(record: PatientRecord) -> list[TimelineEntry]:
    """The record's dated items, newest first; pathway steps each get their own line.

    Ties keep a fixed clinical order (consent, diagnosis, screening, episode, harvest,
    processing, injection, events) so that same-day steps read in the order they happen.
    """
    entries: list[tuple[dt.date, int, TimelineEntry]] = []

    def add(order: int, date: dt.date, kind: str, title: str, obj: Any) -> None:
        entry = TimelineEntry(date, kind, title, obj, f"{obj._meta.model_name}-{obj.pk}")
        entries.append((date, order, entry))

    for consent in record.consents:
        add(0, consent.signed_on, "consent", f"Consent: {consent.get_kind_display()}", consent)
    for diagnosis in record.diagnoses:
        title = f"Diagnosis: {diagnosis.get_condition_display()} ({diagnosis.icd10})"
        add(1, diagnosis.diagnosed_on, "diagnosis", title, diagnosis)
    for treatment in record.prior_treatments:
        date = treatment.started_on or treatment.ended_on or record.patient.created_at.date()
        add(
            1,
            date,
            "prior_treatment",
            f"Prior treatment: {treatment.get_kind_display()}",
            treatment,
        )
    for screening in record.screenings:
        add(2, screening.evaluated_at.date(), "screening", "Screening evaluation", screening)
    for episode in record.episodes:
        add(3, episode.start_date, "episode", f"Episode: {episode.get_arm_display()}", episode)
        harvest = getattr(episode, "harvest", None)
        if harvest is not None:
            add(4, harvest.harvested_on, "harvest", "Harvest", harvest)
            processing = getattr(harvest, "processing", None)
            if processing is not None:
                add(5, processing.processed_on, "processing", "Processing", processing)
        for injection in episode.injections.all():
            add(6, injection.injected_on, "injection", "Injection", injection)
    for event in record.adverse_events:
        add(
            7, event.onset, "adverse_event", f"Adverse event: {event.get_category_display()}", event
        )
    for event in record.clinical_events:
        add(8, event.occurred_on, "clinical_event", event.get_kind_display(), event)
    entries.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [entry for _, _, entry in entries]


@audited_transaction
def patient_record(*, actor: Actor, patient_id: int) -> PatientRecord:
    """The patient with every recorded item and the timeline; one ``read`` audit row."""
    clinics = verify_actor(actor, Action.PATIENT_READ)
    patient = Patient.objects.filter(pk=patient_id, clinic_id__in=clinics).first()
    if patient is None:
        raise NotFound("patient", patient_id)
    episodes = (
        TreatmentEpisode.objects.filter(patient=patient)
        .select_related("harvest__processing", "harvest__allogeneic_lot", "harvest__operator")
        .prefetch_related(
            Prefetch(
                "injections",
                queryset=Injection.objects.select_related(
                    "processing", "allogeneic_lot", "operator"
                ),
            )
        )
        .order_by("start_date", "id")
    )
    record = PatientRecord(
        patient=patient,
        consents=list(patient.consents.select_related("recorded_by").order_by("signed_on")),
        diagnoses=list(patient.diagnoses.order_by("diagnosed_on", "id")),
        prior_treatments=list(patient.prior_treatments.order_by("id")),
        screenings=list(patient.screenings.select_related("evaluated_by").order_by("-id")),
        episodes=list(episodes),
        adverse_events=list(patient.adverse_events.order_by("onset", "id")),
        clinical_events=list(patient.clinical_events.order_by("occurred_on", "id")),
    )
    record.timeline = build_timeline(record)
    record.other_records = [
        (kind, items)
        for kind in RECORD_TYPES.values()
        if kind.patient_items is not None and (items := kind.patient_items(patient))
    ]
    record_audit(
        actor=actor,
        action="read",
        object_type="patient",
        object_id=patient.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={"view": "record"},
    )
    return record


# --------------------------------------------------------------------------------------------
# Episodes, harvests, adverse events
# --------------------------------------------------------------------------------------------


def _audit_read(actor: Actor, object_type: str, obj: Any, patient: Patient) -> None:
    record_audit(
        actor=actor,
        action="read",
        object_type=object_type,
        object_id=obj.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
    )


@audited_transaction
def get_episode_for(
    *, actor: Actor, episode_id: int, intent: Action | None = None
) -> TreatmentEpisode:
    """The episode (with patient, harvest and processing) if in the actor's clinics and the
    role may perform ``intent``; else PermissionDeniedError or NotFound."""
    clinics = _clinics_for(actor, intent)
    episode = (
        TreatmentEpisode.objects.select_related("patient", "harvest__processing")
        .filter(pk=episode_id, patient__clinic_id__in=clinics)
        .first()
    )
    if episode is None:
        raise NotFound("treatment_episode", episode_id)
    _audit_read(actor, "treatmentepisode", episode, episode.patient)
    return episode


@audited_transaction
def get_harvest_for(*, actor: Actor, harvest_id: int, intent: Action | None = None) -> Harvest:
    """The harvest (with episode and patient) if in the actor's clinics; as above."""
    clinics = _clinics_for(actor, intent)
    harvest = (
        Harvest.objects.select_related("episode__patient")
        .filter(pk=harvest_id, episode__patient__clinic_id__in=clinics)
        .first()
    )
    if harvest is None:
        raise NotFound("harvest", harvest_id)
    _audit_read(actor, "harvest", harvest, harvest.episode.patient)
    return harvest


@audited_transaction
def get_adverse_event_for(
    *, actor: Actor, adverse_event_id: int, intent: Action | None = None
) -> AdverseEvent:
    """The adverse event (with patient) if in the actor's clinics; as above."""
    clinics = _clinics_for(actor, intent)
    event = (
        AdverseEvent.objects.select_related("patient", "episode")
        .filter(pk=adverse_event_id, patient__clinic_id__in=clinics)
        .first()
    )
    if event is None:
        raise NotFound("adverse_event", adverse_event_id)
    _audit_read(actor, "adverseevent", event, event.patient)
    return event


@audited_transaction
def get_consent_for(*, actor: Actor, consent_id: int, intent: Action | None = None) -> Consent:
    """The consent (with patient) if in the actor's clinics; as above."""
    clinics = _clinics_for(actor, intent)
    consent = (
        Consent.objects.select_related("patient")
        .filter(pk=consent_id, patient__clinic_id__in=clinics)
        .first()
    )
    if consent is None:
        raise NotFound("consent", consent_id)
    _audit_read(actor, "consent", consent, consent.patient)
    return consent


@audited_transaction
def pending_adverse_events(*, actor: Actor, limit: int = MAX_RESULTS) -> list[AdverseEvent]:
    """Adverse events awaiting adjudication at the actor's clinics: serious first, then
    patient-reported red flags, then the rest; oldest onset first within each (a newly reported
    serious event never waits behind routine ones).

    Only roles that may adjudicate see the queue. Audited as one ``search`` row.
    """
    clinics = _clinics_for(actor, Action.ADVERSE_EVENT_ADJUDICATE)
    return _pending_events(actor, clinics, limit)


#: A patient-reported red flag: the follow-up app's tickler escalation marked urgent (fever,
#: new leg weakness, new bladder or bowel problem). Looked up through the reverse relation by
#: name so that the registry does not import the follow-up app; ``tickler`` is the
#: ``related_name`` of ``followup.TicklerEscalation.adverse_event``.
RED_FLAG = Q(tickler__urgent=True)

#: Queue tiers: serious events, then patient-reported red flags, then the rest.
_TIER = Case(
    When(serious=True, then=Value(0)),
    When(RED_FLAG, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _pending_events(actor: Actor, clinics: frozenset[int], limit: int) -> list[AdverseEvent]:
    """The first ``limit`` pending events of ``clinics`` in queue order (serious, red flag,
    the rest; oldest onset first within each); one ``search`` row. Each event carries
    ``red_flag`` (bool)."""
    # The queue's ids first, scoped by the event's own clinic (partial index
    # adverse_event_pending_clinic: no join to patients, ADR 0023 §12), then the rows of those
    # ids with their patient and episode: joined in one statement, PostgreSQL hashed every
    # patient of the registry to sort a few thousand pending events.
    scoped = AdverseEvent.objects.filter(
        clinic_id__in=clinics,
        status=AdverseEventStatus.PENDING,
        voided_at__isnull=True,  # entered in error: nothing to adjudicate
    ).annotate(tier=_TIER)
    ids = list(
        scoped.order_by("tier", "onset", "id").values_list("pk", flat=True)[
            : max(1, min(limit, MAX_RESULTS))
        ]
    )
    rows = scoped.select_related("patient", "episode").in_bulk(ids)
    events: list[AdverseEvent] = [rows[pk] for pk in ids if pk in rows]
    for event in events:
        event.red_flag = event.tier == 1  # type: ignore[attr-defined]
    record_audit(
        actor=actor,
        action="search",
        object_type="adverseevent",
        new_values={
            "status": AdverseEventStatus.PENDING,
            "adverse_event_ids": [event.pk for event in events],
        },
    )
    return events


@dataclass(frozen=True)
class QueueItem:
    """One adverse event waiting for adjudication, with who reported it and since when."""

    event: AdverseEvent
    reported_by: str  # plain words: "Jo Smith (Coordinator)", "The patient (follow-up ...)"
    reported_on: dt.date
    days_waiting: int
    red_flag: bool = False  # a patient-reported red flag (see RED_FLAG), not yet adjudicated


@dataclass(frozen=True)
class AdjudicationQueue:
    """The first ``len(items)`` of ``total`` pending events; ``serious`` of them are serious
    and ``red_flags`` more are patient-reported red flags."""

    items: list[QueueItem]
    total: int
    serious: int
    red_flags: int = 0


#: Who reported an event when the audit row's role is not a staff role.
_REPORTER_WORDS = {
    "patient": "The patient (follow-up questionnaire)",
    "system": "Imported record",
}


def _reporter(row: dict[str, Any], names: dict[int, str]) -> str:
    """Plain words for the reporter recorded in an event's ``create`` audit row."""
    if row["role"] in _REPORTER_WORDS:
        return _REPORTER_WORDS[row["role"]]
    who = names.get(row["actor_user_id"] or 0) or row["actor_username"]
    return f"{who} ({label('role', row['role'])})"


def _reports(events: list[AdverseEvent]) -> dict[str, dict[str, Any]]:
    """The ``create`` audit row of each event, by event id (as text).

    Filtered on patient ids first, so the ``audit_patient_time`` index keeps this cheap on a
    long trail.
    """
    if not events:
        return {}
    rows = AuditEvent.objects.filter(
        patient_id__in={event.patient_id for event in events},
        action="create",
        object_type="adverseevent",
        object_id__in=[str(event.pk) for event in events],
    ).values("object_id", "occurred_at", "actor_user_id", "actor_username", "role")
    return {row["object_id"]: dict(row) for row in rows}


def _queue_items(events: list[AdverseEvent], *, today: dt.date) -> list[QueueItem]:
    """Queue items for ``events`` (already read and audited): reporter and days waiting.

    The reporter and the report time come from the event's ``create`` audit row, the one
    attributable record of who reported it; without one, the onset stands in for the report.
    """
    reports = _reports(events)
    ids = {row["actor_user_id"] for row in reports.values() if row["actor_user_id"]}
    names = {
        user.pk: (user.get_full_name() or user.get_username())
        for user in get_user_model().objects.filter(pk__in=ids)
    }
    items = []
    for event in events:
        row = reports.get(str(event.pk))
        reported_on = timezone.localdate(row["occurred_at"]) if row else event.onset
        items.append(
            QueueItem(
                event=event,
                reported_by=_reporter(row, names) if row else "Not recorded",
                reported_on=reported_on,
                days_waiting=max(0, (today - reported_on).days),
                red_flag=bool(getattr(event, "red_flag", False)),
            )
        )
    return items


@audited_transaction
def adjudication_queue(
    *, actor: Actor, today: dt.date, limit: int = MAX_RESULTS
) -> AdjudicationQueue:
    """The adjudication queue of :func:`pending_adverse_events` with reporters, days waiting
    and the total (which may exceed ``limit``). Audited as the same one ``search`` row."""
    clinics = _clinics_for(actor, Action.ADVERSE_EVENT_ADJUDICATE)
    events = _pending_events(actor, clinics, limit)
    pending = AdverseEvent.objects.filter(clinic_id__in=clinics, status=AdverseEventStatus.PENDING)
    return AdjudicationQueue(
        items=_queue_items(events, today=today),
        total=pending.count(),
        serious=pending.filter(serious=True).count(),
        red_flags=pending.filter(RED_FLAG, serious=False).count(),
    )


#: The per-patient lists the API serves, by name: (related manager, ordering).
_PATIENT_LISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "diagnoses": ("diagnoses", ("diagnosed_on", "id")),
    "episodes": ("episodes", ("start_date", "id")),
    "adverse_events": ("adverse_events", ("onset", "id")),
    "consents": ("consents", ("signed_on", "id")),
}


@audited_transaction
def patient_items(*, actor: Actor, patient_id: int, kind: str) -> list[Any]:
    """One of a patient's lists (``diagnoses``, ``episodes``, ``adverse_events``), oldest first,
    if the actor may read the patient; one ``read`` audit row naming the list."""
    relation, ordering = _PATIENT_LISTS[kind]
    clinics = verify_actor(actor, Action.PATIENT_READ)
    patient = Patient.objects.filter(pk=patient_id, clinic_id__in=clinics).first()
    if patient is None:
        raise NotFound("patient", patient_id)
    manager: QuerySet[Any] = getattr(patient, relation).all()
    if kind == "episodes":
        manager = manager.select_related("harvest__processing").prefetch_related("injections")
    items = list(manager.order_by(*ordering))
    record_audit(
        actor=actor,
        action="read",
        object_type="patient",
        object_id=patient.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={"view": kind, "ids": [item.pk for item in items]},
    )
    return items
