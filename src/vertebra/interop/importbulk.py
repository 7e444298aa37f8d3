"""The bulk path of ``vertebra import fhir``: many patients per transaction, same rows, same audit.

Why: through the services a patient costs ≈ 100 ms of CPU and ≈ 240 queries (BENCHMARKS.md,
FHIR import), 3-4x the issue's budget; the time is Django query building and per-row
``full_clean`` queries, not the importer. See docs/adr/0016-bulk-import.md.

Contracts
---------
* **Same rows, same audit records.** For every patient it writes, the rows are the ones the
  careful path (:class:`vertebra.interop.importer._Writer` through the services) writes, and
  each created object gets the ``create`` record its service would append (same actor, role,
  clinic, patient, object type and id, ``new_values`` = the service's snapshot), hash-chained
  and MAC-signed (ADR 0004/0008) in the batch's own transaction, after the audit-chain lock.
* **Bulk part, then the services.** Patients, consents, diagnoses, prior treatments, treatment
  episodes with their follow-up schedules, the pathway (harvests, processings, injections),
  clinical and adverse events, and imported answers (submissions and scored responses, the
  time points completed) are written per table per batch by COPY on PostgreSQL
  (executemany on SQLite), through the cohort loader's ``FrameWriter``, with the values
  ``bulk_create`` would send and ids reserved from each table's own sequence
  (``cohort.bulk.reserve_ids``: never MAX(id), the registry is live). Consent
  withdrawals (updates, rare) then go through ``withdraw_consent`` as on the careful path, in
  the same transaction; lots are registered before any patient, as on the careful path.
* **Never accepts what the services refuse.** Before anything is written, each patient is
  checked in memory against the services' rules for the bulk part (field validation, the
  plausibility rules of ``core.plausibility`` with the bounds the services would read, dates
  not in the future, MME dose, schedule placement, scoring in this registry's instrument
  version). A patient who fails any check is handed back to the careful path, which refuses
  it with the service's own reason. If anything raises inside a batch (a database constraint,
  a service refusing a pathway step), the batch is rolled back whole and its patients go
  through the careful path one by one: a refusal costs speed, never correctness, and never
  leaves half a patient.
* Permissions: the actor's permissions for every action the services check are verified once
  per batch (``verify_actor``), inside the batch's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Model
from django.utils import timezone

from vertebra.cohort.bulk import (
    FrameWriter,
    db_datetime_text,
    instances_frame,
    mark_saved,
    prepare_instances,
    reserve_ids,
)
from vertebra.core import plausibility as rules_
from vertebra.core.fhir.parse import ImportedConsent, ImportedEpisode, ImportedResponse
from vertebra.core.fhir.parse_pathway import (
    ImportedAdverseEvent,
    ImportedClinicalEvent,
    ImportedHarvest,
    ImportedInjection,
    ImportedProduct,
    ProductLink,
)
from vertebra.core.psfs_activities import (
    MAX_ACTIVITIES,
    ActivityNameError,
    clean_activity_names,
    rating_item,
)
from vertebra.core.schedule import default_protocol
from vertebra.followup import services as followup_services
from vertebra.followup.errors import FollowUpError
from vertebra.followup.models import (
    FollowUpSchedule,
    FollowUpTimePoint,
    PsfsActivities,
    QuestionnaireResponse,
    Submission,
    TimePointStatus,
)
from vertebra.registry import services as registry_services
from vertebra.registry.audit import (
    SEAL_COLUMNS,
    chain_seals,
    compute_hash,
    lock_chain,
    seal_head,
    snapshot,
    to_json_value,
)
from vertebra.registry.auditseal import keyring
from vertebra.registry.errors import RegistryError
from vertebra.registry.models import (
    ALLOGENEIC_SOURCES,
    AdverseEvent,
    AdverseEventStatus,
    AllogeneicLot,
    Arm,
    AuditEvent,
    AuditSeal,
    CellSource,
    ClinicalEvent,
    Consent,
    ConsentKind,
    Diagnosis,
    Harvest,
    Injection,
    InjectionTarget,
    Patient,
    PriorTreatment,
    Processing,
    Sterility,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.validation import _amount, _bound, _date

__all__ = ["BATCH_PATIENTS", "BatchAudit", "PreparedPatient", "prepare", "write_batch"]

#: Patients per transaction: large enough that per-batch costs (lock, chain head, one INSERT
#: per table) vanish, small enough that a rolled-back batch costs little to redo carefully.
BATCH_PATIENTS = 250

#: The permissions the services of the bulk part check (verified once per batch).
_ACTIONS = (
    Action.PATIENT_CREATE,
    Action.CONSENT_RECORD,
    Action.DIAGNOSIS_RECORD,
    Action.PRIOR_TREATMENT_RECORD,
    Action.EPISODE_START,
    Action.CLINICAL_EVENT_RECORD,
    Action.ADVERSE_EVENT_REPORT,
    Action.HARVEST_RECORD,
    Action.PROCESSING_RECORD,
    Action.INJECTION_RECORD,
)
#: Checked too when an adverse event of the batch is graded (``record_adverse_event``).
_GRADING = Action.ADVERSE_EVENT_ADJUDICATE


class NotBulk(Exception):
    """A patient the bulk path will not write (a check failed): the careful path decides."""


# ------------------------------------------------------------------------------ audit


class BatchAudit:
    """Appends audit records exactly as :func:`vertebra.registry.audit.record_audit` does, for
    many objects at once (each hashed and MAC-signed), all inserted by :meth:`flush` together
    with their seals (ADR 0021): the caller holds the chain lock, so the seal chain's head is
    read once, here.

    Must be flushed before anything else seals (on SQLite a service's ``record_audit`` seals
    its row at once, reading the seal chain's head from the table).
    """

    def __init__(self, actor: Actor, occurred_at: dt.datetime) -> None:
        self._ring = keyring()
        self._head = seal_head()
        self._rows: list[dict[str, Any]] = []
        self.written = 0
        self._constants = {
            "occurred_at": occurred_at.astimezone(dt.UTC),
            "actor_user_id": actor.user.pk,
            "actor_username": actor.user.get_username(),
            "role": actor.role,
            "request_id": actor.request_id,
        }

    def create(
        self,
        object_type: str,
        object_id: object,
        *,
        clinic_id: int | None,
        patient_id: int | None,
        new_values: Any,
        reason: str = "",
        occurred_at: dt.datetime | None = None,
    ) -> None:
        """One ``create`` record (the fields ``record_audit`` would store); ``occurred_at``
        defaults to the batch's instant."""
        fields: dict[str, Any] = {
            **self._constants,
            **({"occurred_at": occurred_at.astimezone(dt.UTC)} if occurred_at else {}),
            "clinic_id": clinic_id,
            "patient_id": patient_id,
            "action": "create",
            "object_type": object_type,
            "object_id": "" if object_id is None else str(object_id),
            "old_values": None,
            "new_values": to_json_value(new_values),
            "reason": reason,
        }
        fields["hash"] = compute_hash(fields)
        fields["mac"] = self._ring.row_mac(fields["hash"])
        fields["mac_key"] = self._ring.current_id
        self._rows.append(fields)

    def flush(self) -> None:
        """Insert the records made since the last flush, and their seals (in that order), by
        COPY (SQLite: executemany), with ids reserved from the table's sequence: the seals
        need them, and concurrent writers' records take theirs from the same sequence."""
        if not self._rows:
            return
        ids = reserve_ids(AuditEvent, len(self._rows))
        seals, self._head = chain_seals(
            zip(ids, (row["hash"] for row in self._rows), strict=True), self._head, self._ring
        )
        with FrameWriter() as writer:
            writer.write(AuditEvent, self._frame(ids))
            writer.write(AuditSeal, pd.DataFrame.from_records(seals, columns=list(SEAL_COLUMNS)))
        self.written += len(self._rows)
        self._rows = []

    def _frame(self, ids: list[int]) -> pd.DataFrame:
        """The records as stored (what ``AuditEvent(**fields)`` would insert: JSON as its text,
        the time as the database's text, no in-row chain)."""
        rows = self._rows
        json_text = _JSON_TEXT

        def column(name: str) -> list[Any]:
            return [row[name] for row in rows]

        return pd.DataFrame(
            {
                "id": ids,
                "seq": [None] * len(rows),
                "occurred_at": [db_datetime_text(row["occurred_at"]) for row in rows],
                **{name: column(name) for name in _AUDIT_PLAIN},
                **{
                    name: [None if v is None else json_text(v) for v in column(name)]
                    for name in ("old_values", "new_values")
                },
                "prev_hash": [None] * len(rows),
            },
            dtype=object,
        )


#: The audit columns stored as they are made (text and integers).
_AUDIT_PLAIN = (
    "actor_user_id", "actor_username", "role", "clinic_id", "patient_id", "action", "object_type",
    "object_id", "reason", "request_id", "hash", "mac", "mac_key",
)  # fmt: skip
#: How Django stores a JSONField value (``adapt_json_value``: ``json.dumps``, no encoder).
_JSON_TEXT = json.dumps


class _Inserts:
    """The rows of one batch, table by table in the order added (parents first): ids reserved
    from each table's sequence as rows are added (so that rows can refer to each other, and be
    audited, before anything is written), then all written by COPY in :meth:`write`.

    Each table is added once per batch (:func:`reserve_ids` on SQLite counts on the rows of one
    reservation being inserted before the next).
    """

    def __init__(self) -> None:
        self._tables: list[tuple[type[Model], list[Model], bool]] = []

    def add(self, model: type[Model], rows: Sequence[Model], *, ids: bool = True) -> None:
        """Queue ``rows`` of ``model``, prepared as ``bulk_create`` prepares them (``auto_now``
        stamps, related ids) and with their ids set, unless ``ids`` is false (nobody refers to
        them: the database numbers them on insert)."""
        assert all(model is not m for m, _, _ in self._tables), model
        prepare_instances(model, rows)
        if ids:
            for row, pk in zip(rows, reserve_ids(model, len(rows)), strict=True):
                row.pk = pk
        self._tables.append((model, list(rows), ids))

    def write(self) -> None:
        """Insert every queued row, in order, in the current transaction (the connection is
        the writer's until it is done)."""
        with FrameWriter() as writer:
            for model, rows, ids in self._tables:
                writer.write(model, instances_frame(model, rows, with_id=ids))
        for _, rows, _ in self._tables:
            mark_saved(rows)
        self._tables = []


# ---------------------------------------------------------------------------- prepare


@dataclass
class _Point:
    """Answers of one time point of one episode, scored."""

    episode_ref: str
    key: str
    scored: dict[str, Any]  # instrument id -> core ScoreResult
    given: dict[str, followup_services.ImportedAnswers]
    psfs_names: tuple[str, ...] | None = None  # the episode's PSFS activities, named here

    @property
    def submitted_at(self) -> dt.datetime:
        """The latest answer: when the submission counts as made (``record_imported_answers``)."""
        return max(g.authored for g in self.given.values())


@dataclass
class PreparedPatient:
    """One patient's bulk-part rows, built and checked in memory (not yet written)."""

    clinic_id: int
    patient: Patient
    consents: list[tuple[Consent, dt.date | None]]  # with the withdrawal date, if any
    diagnoses: list[Diagnosis]
    priors: list[PriorTreatment]
    episodes: list[tuple[str, TreatmentEpisode, list[Any]]]  # (source ref, episode, placed)
    points: list[_Point]
    events: list[tuple[str | None, Model]] = field(default_factory=list)  # (episode ref, row)
    harvests: list[tuple[str, Harvest]] = field(default_factory=list)  # (episode ref, row)
    processings: list[tuple[str, Processing]] = field(default_factory=list)
    injections: list[tuple[str, Injection, Processing | None]] = field(default_factory=list)
    extra: Any = None  # the caller's handle (the bundle)
    episode_ids: dict[str, int] = field(default_factory=dict)


def _checked(instance: Model, refusals: Sequence[rules_.Refusal | None]) -> None:
    """Field validation (``full_clean`` without the queries: foreign keys point at rows of this
    batch or the actor, and the database enforces unique and check constraints) and the
    plausibility refusals computed by the caller; NotBulk when anything fails."""
    exclude = [f.name for f in instance._meta.concrete_fields if f.is_relation]
    try:
        instance.clean_fields(exclude=exclude)
        instance.clean()
    except ValidationError as exc:
        raise NotBulk(str(exc)) from None
    problems = [r for r in refusals if r is not None]
    if problems:
        raise NotBulk(problems[0].message)


def _not_future(value: dt.date | None, today: dt.date) -> None:
    """The services' ``_not_future`` (signature, diagnosis, birth dates)."""
    if value is not None and value > today:
        raise NotBulk("in the future")


def prepare(
    *,
    clinic_id: int,
    actor: Actor,
    patient_fields: dict[str, Any],
    consents: Sequence[ImportedConsent],
    diagnoses: Sequence[dict[str, Any]],
    priors: Sequence[dict[str, Any]],
    episodes: Sequence[ImportedEpisode],
    responses: Sequence[ImportedResponse],
    clinical_events: Sequence[ImportedClinicalEvent],
    adverse_events: Sequence[ImportedAdverseEvent],
    now: dt.datetime,
) -> PreparedPatient:
    """The bulk-part rows of one patient, checked as the services would check them in the
    careful path's order (consents, diagnoses, priors, episodes, clinical and adverse events,
    answers); NotBulk when the careful path must decide. Pure apart from the rule files: no
    database access."""
    today = timezone.localdate()
    born: dt.date = patient_fields["date_of_birth"]
    _not_future(born, today)
    stripped = ("mrn", "given_name", "family_name", "email", "phone")  # as register_patient
    patient = Patient(
        clinic_id=clinic_id,
        **{k: (v.strip() if k in stripped else v) for k, v in patient_fields.items()},
    )
    _checked(patient, [_date(patient, "date_of_birth", "date of birth", today)])
    birth = _bound("the day after the date of birth", born, strict=True)
    made_consents = []
    for given in consents:
        _not_future(given.signed_on, today)
        consent = Consent(
            kind=given.kind, form_version=given.form_version.strip(), signed_on=given.signed_on,
            recorded_by=actor.user,
        )  # fmt: skip
        _checked(consent, [_date(consent, "signed_on", "signature date", today, after=[birth])])
        made_consents.append((consent, given.withdrawn_on))
    made_diagnoses = []
    for fields in diagnoses:
        _not_future(fields["diagnosed_on"], today)
        diagnosis = Diagnosis(**{**fields, "icd10": fields["icd10"].strip().upper()})
        # No episode exists yet when the careful path records diagnoses: no upper bound.
        _checked(diagnosis, [_date(diagnosis, "diagnosed_on", "diagnosis date", today,
                                   after=[birth])])  # fmt: skip
        made_diagnoses.append(diagnosis)
    made_priors = []
    for fields in priors:
        try:
            mme = registry_services.prior_treatment_mme(
                fields["kind"], fields["medication_name"], fields["daily_dose"]
            )
        except ValidationError as exc:
            raise NotBulk(str(exc)) from None
        prior = PriorTreatment(
            **{**fields, "medication_name": fields["medication_name"].strip(), "mme_per_day": mme}
        )
        _checked(prior, [
            _date(prior, "started_on", "start date", today, after=[birth]),
            _date(prior, "ended_on", "end date", today,
                  after=[birth, _bound("the start date", prior.started_on)]),
        ])  # fmt: skip
        made_priors.append(prior)
    first_diagnosis = min((d.diagnosed_on for d in made_diagnoses), default=None)
    made_episodes = []
    proto = default_protocol()
    for given_episode in episodes:
        try:
            cost = registry_services.episode_cost_values(given_episode.cost)
        except ValidationError as exc:
            raise NotBulk(str(exc)) from None
        episode = TreatmentEpisode(
            arm=given_episode.arm, start_date=given_episode.start_date, **cost
        )
        _checked(episode, [
            _date(episode, "start_date", "episode start date", today, after=[
                birth, _bound("the first diagnosis", first_diagnosis)]),
            *rules_.check_episode_cost(
                _amount(episode.price), _amount(episode.patient_paid), episode.currency,
                episode.billed_to, episode.cost_note),
        ])  # fmt: skip
        try:
            placed = followup_services._placed(given_episode.start_date, proto)
        except ValidationError as exc:
            raise NotBulk(str(exc)) from None
        made_episodes.append((given_episode.source_ref, episode, placed))
    starts = {ref: e.start_date for ref, e, _ in made_episodes}
    return PreparedPatient(
        clinic_id=clinic_id, patient=patient, consents=made_consents, diagnoses=made_diagnoses,
        priors=made_priors, episodes=made_episodes,
        points=_points(responses, {ref: placed for ref, _, placed in made_episodes}, now),
        events=[*_clinical_events(clinical_events, birth, starts, today),
                *_adverse_events(adverse_events, birth, starts, today, actor)],
    )  # fmt: skip


def _episode_start(ref: str | None, starts: dict[str, dt.date]) -> rules_.Bound | None:
    """The episode-start bound of an event (``_episode_of``: the patient's own episode)."""
    if ref is None:
        return None
    if ref not in starts:
        raise NotBulk("refers to an episode that is not this patient's")
    return _bound("the episode start", starts[ref])


def _clinical_events(
    given: Sequence[ImportedClinicalEvent],
    birth: rules_.Bound | None,
    starts: dict[str, dt.date],
    today: dt.date,
) -> list[tuple[str | None, Model]]:
    """Subsequent surgeries and repeat injections as ``record_clinical_event`` builds them."""
    made: list[tuple[str | None, Model]] = []
    for event in given:
        _not_future(event.occurred_on, today)
        row = ClinicalEvent(kind=event.kind, occurred_on=event.occurred_on,
                            details=event.details.strip())  # fmt: skip
        after = [birth, _episode_start(event.episode_ref, starts)]
        _checked(row, [_date(row, "occurred_on", "event date", today, after=after)])
        made.append((event.episode_ref, row))
    return made


def _adverse_events(
    given: Sequence[ImportedAdverseEvent],
    birth: rules_.Bound | None,
    starts: dict[str, dt.date],
    today: dt.date,
    actor: Actor,
) -> list[tuple[str | None, Model]]:
    """Adverse events as ``record_adverse_event`` builds them (adjudicated by the importing
    clinician now when graded), after the importer's own check that an adjudicated event is
    fully graded and a pending one is not."""
    made: list[tuple[str | None, Model]] = []
    for event in given:
        graded = event.ctcae_grade is not None and bool(event.relatedness)
        if event.adjudicated != graded:
            raise NotBulk("adjudication and grading disagree")
        _not_future(event.onset, today)
        row = AdverseEvent(
            description=event.description.strip(), category=event.category, onset=event.onset,
            serious=event.serious, ctcae_grade=event.ctcae_grade, relatedness=event.relatedness,
            expected=event.expected, outcome=event.outcome, resolved_on=event.resolved_on,
            status=AdverseEventStatus.ADJUDICATED if graded else AdverseEventStatus.PENDING,
            adjudicated_by=actor.user if graded else None,
            adjudicated_at=timezone.now() if graded else None,
        )  # fmt: skip
        after = [birth, _episode_start(event.episode_ref, starts)]
        _checked(row, [
            _date(row, "onset", "onset date", today, after=after),
            _date(row, "resolved_on", "resolution date", today,
                  after=[_bound("the onset", row.onset)]),
            *rules_.check_adverse_event(row.ctcae_grade, bool(row.serious), row.outcome),
        ])  # fmt: skip
        made.append((event.episode_ref, row))
    return made


def _points(
    responses: Sequence[ImportedResponse], placed: dict[str, list[Any]], now: dt.datetime
) -> list[_Point]:
    """Answers grouped by (episode, time point) and scored as ``record_imported_answers``
    scores them; NotBulk for anything the careful path refuses (second response of an
    instrument at a point, a time point not in the protocol, answers that do not score)."""
    grouped: dict[tuple[str, str], dict[str, followup_services.ImportedAnswers]] = defaultdict(dict)
    for response in responses:
        if response.episode_ref not in placed:
            raise NotBulk("response of an episode not in the import")
        key = (response.episode_ref, response.time_point_key)
        if response.instrument_id in grouped[key]:
            raise NotBulk("a second response of an instrument at one time point")
        grouped[key][response.instrument_id] = followup_services.ImportedAnswers(
            instrument_version=response.instrument_version,
            answers=dict(response.answers),
            authored=response.authored,
            psfs_names=response.psfs_names,
        )
    points = []
    named: dict[str, tuple[str, ...]] = {}  # episode ref -> its PSFS activities
    for (episode_ref, point_key), given in grouped.items():
        if point_key not in {tp.id for tp in placed[episode_ref]}:
            raise NotBulk("time point not in this registry's follow-up protocol")
        try:
            scored = _scored(given, now)
        except FollowUpError as exc:
            raise NotBulk(str(exc)) from None
        psfs = given.get("psfs")
        names = None
        if psfs is not None and psfs.psfs_names and "psfs" in scored:
            names = _psfs_names(named, episode_ref, psfs)
        points.append(_Point(episode_ref, point_key, scored, given, names))
    return points


#: Scores of answer sets already scored in this process: (instrument, version, answers) ->
#: the core's frozen ScoreResult. An export repeats answer sets (an NRS has 11), and scoring
#: was ~9 % of a bulk import's CPU (ADR 0016). Cleared when full.
_SCORES: dict[tuple[Any, ...], Any] = {}
SCORES_MAX = 200_000


def _score_key(
    instrument_id: str, given: followup_services.ImportedAnswers
) -> tuple[Any, ...] | None:
    """The cache key of one instrument's answers (None: a value that cannot be a key). Each
    value's type is part of it: ``True``, ``1`` and ``1.0`` are equal in Python, not to a scorer."""
    try:
        items = tuple(sorted((k, type(v).__name__, v) for k, v in given.answers.items()))
        hash(items)
    except TypeError:
        return None
    return (instrument_id, given.instrument_version, items)


def _scored(
    given: dict[str, followup_services.ImportedAnswers], now: dt.datetime
) -> dict[str, Any]:
    """``followup.services._score_imported(given, now)``, with the scores of answer sets it
    scored before taken from :data:`_SCORES`. Only successes are remembered, and only answers
    given by ``now`` are taken from it, so every refusal is the service's own."""
    keys = {instrument: _score_key(instrument, g) for instrument, g in given.items()}
    hits = {
        instrument: _SCORES.get(key)
        for instrument, key in keys.items()
        if key is not None and given[instrument].authored <= now
    }
    if len(hits) == len(given) and all(hit is not None for hit in hits.values()):
        return hits
    scored = followup_services._score_imported(given, now)
    if len(_SCORES) + len(scored) > SCORES_MAX:
        _SCORES.clear()
    for instrument, key in keys.items():
        if key is not None:
            _SCORES[key] = scored[instrument]
    return scored


def _psfs_names(
    named: dict[str, tuple[str, ...]],
    episode_ref: str,
    psfs: followup_services.ImportedAnswers,
) -> tuple[str, ...] | None:
    """The PSFS activities first named at this point (None: the episode's are named already),
    checked as ``followup.services._settle_psfs_names`` checks them; NotBulk when it would
    refuse (names not acceptable, a rating of an activity not named)."""
    stored = named.get(episode_ref)
    new = stored is None
    if stored is None:
        try:
            stored = clean_activity_names(list(psfs.psfs_names or ()))
        except ActivityNameError as exc:
            raise NotBulk(str(exc)) from None
    count = len(stored)
    if any(
        psfs.answers.get(rating_item(k)) is not None for k in range(count + 1, MAX_ACTIVITIES + 1)
    ):
        raise NotBulk("a PSFS rating of an activity not named")
    if not new:
        return None
    named[episode_ref] = stored
    return stored


# ------------------------------------------------------------------------------ write


def _object_type(model: type[Model]) -> str:
    return model._meta.model_name or model.__name__.lower()


def write_batch(
    prepared: Sequence[PreparedPatient],
    *,
    actor: Actor,
    today: dt.date,
    now: dt.datetime,
    source: str,
    rest: Callable[[PreparedPatient], None],
) -> int:
    """Write ``prepared`` patients in one transaction: the bulk part with its audit records,
    then ``rest(patient)`` for each (what the bulk part does not write: consent withdrawals,
    through the services).
    Returns the number of audit records the bulk part wrote. Anything raised rolls the whole
    batch back and propagates (the caller then takes the careful path)."""
    with transaction.atomic():
        lock_chain()
        grading = any(
            isinstance(row, AdverseEvent) and (row.ctcae_grade is not None or row.relatedness)
            for p in prepared
            for _, row in p.events
        )
        actions = (*_ACTIONS, _GRADING) if grading else _ACTIONS
        clinics = frozenset.intersection(*(verify_actor(actor, a) for a in actions))
        if any(p.clinic_id not in clinics for p in prepared):
            raise NotBulk("a receiving clinic is not among the actor's clinics")
        audit = BatchAudit(actor, timezone.now())
        inserts = _Inserts()
        _write_registry(prepared, audit, inserts)
        _write_pathway(prepared, audit, inserts)
        _write_follow_up(prepared, audit, inserts, today=today, now=now, source=source)
        inserts.write()
        audit.flush()
        written = audit.written
        for patient in prepared:
            rest(patient)
    return written


def _audit_created(
    audit: BatchAudit, rows: Sequence[tuple[PreparedPatient, Model]], model: type[Model]
) -> None:
    """The ``create`` record ``registry.services._create`` writes for each row."""
    kind = _object_type(model)
    for owner, row in rows:
        audit.create(
            kind, row.pk, clinic_id=owner.clinic_id, patient_id=owner.patient.pk,
            new_values=snapshot(row),
        )  # fmt: skip


def _write_registry(
    prepared: Sequence[PreparedPatient], audit: BatchAudit, inserts: _Inserts
) -> None:
    """Patients, then their consents, diagnoses, prior treatments and episodes."""
    inserts.add(Patient, [p.patient for p in prepared])
    _audit_created(audit, [(p, p.patient) for p in prepared], Patient)
    tables: list[tuple[type[Model], list[tuple[PreparedPatient, Model]]]] = [
        (Consent, [(p, c) for p in prepared for c, _ in p.consents]),
        (Diagnosis, [(p, d) for p in prepared for d in p.diagnoses]),
        (PriorTreatment, [(p, t) for p in prepared for t in p.priors]),
        (TreatmentEpisode, [(p, e) for p in prepared for _, e, _ in p.episodes]),
    ]
    for model, rows in tables:
        for owner, row in rows:
            row.patient_id = owner.patient.pk  # type: ignore[attr-defined]
        inserts.add(model, [row for _, row in rows])
        _audit_created(audit, rows, model)
    for p in prepared:
        p.episode_ids = {ref: int(e.pk) for ref, e, _ in p.episodes}
    for p in prepared:
        for ref, row in p.events:
            row.patient_id = p.patient.pk  # type: ignore[attr-defined]
            if isinstance(row, AdverseEvent):  # the clinic on the row (ADR 0023 §12)
                row.clinic_id = p.clinic_id
            row.episode_id = None if ref is None else p.episode_ids[ref]  # type: ignore[attr-defined]
    event_models: tuple[type[Model], ...] = (ClinicalEvent, AdverseEvent)  # careful order
    for model in event_models:
        rows = [(p, row) for p in prepared for _, row in p.events if isinstance(row, model)]
        inserts.add(model, [row for _, row in rows])
        _audit_created(audit, rows, model)


def _write_follow_up(
    prepared: Sequence[PreparedPatient],
    audit: BatchAudit,
    inserts: _Inserts,
    *,
    today: dt.date,
    now: dt.datetime,
    source: str,
) -> None:
    """Each episode's schedule (as ``create_schedule_for_episode``) and each answered time
    point's submission and responses (as ``record_imported_answers``), with their records."""
    proto = default_protocol()
    stamp = timezone.now()
    schedules: list[tuple[PreparedPatient, TreatmentEpisode, FollowUpSchedule, list[Any]]] = []
    for p in prepared:
        for _, episode, placed in p.episodes:
            schedule = FollowUpSchedule(
                episode_id=episode.pk, protocol_id=proto.id, protocol_version=proto.version,
                treatment_date=episode.start_date, created_at=stamp, updated_at=stamp,
            )  # fmt: skip
            schedules.append((p, episode, schedule, placed))
    inserts.add(FollowUpSchedule, [s for _, _, s, _ in schedules])
    answered = {
        (p.episode_ids[point.episode_ref], point.key): point for p in prepared for point in p.points
    }
    points: list[FollowUpTimePoint] = []
    by_key: dict[tuple[int, str], FollowUpTimePoint] = {}
    for p, episode, schedule, placed in schedules:
        made = []
        for tp in placed:
            point = FollowUpTimePoint(
                schedule_id=schedule.pk, patient_id=p.patient.pk, clinic_id=p.clinic_id,
                key=tp.id, label=tp.label,
                months=tp.months, target=tp.target, opens=tp.opens, closes=tp.closes,
                instruments=followup_services.instruments_for(tp.id),
                status=followup_services.status_on(tp.opens, tp.closes, today),
            )  # fmt: skip
            made.append(point)
            by_key[(int(episode.pk), tp.id)] = point
        audit.create(
            "followup_schedule", schedule.pk, clinic_id=p.clinic_id, patient_id=p.patient.pk,
            new_values={
                "episode_id": episode.pk,
                "protocol": f"{proto.id} {proto.version}",
                "treatment_date": episode.start_date,
                "time_points": {t.key: [t.opens, t.closes, t.status] for t in made},
            },
        )  # fmt: skip
        points.extend(made)
    for key, answers in answered.items():  # completed at the latest answer (_complete)
        by_key[key].status = TimePointStatus.COMPLETED
        by_key[key].completed_at = answers.submitted_at
    inserts.add(FollowUpTimePoint, points)
    _write_psfs_names(prepared, answered, by_key, audit, inserts, now=now)
    _write_answers(prepared, answered, by_key, audit, inserts, now=now, source=source)


def _write_psfs_names(
    prepared: Sequence[PreparedPatient],
    answered: dict[tuple[int, str], _Point],
    by_key: dict[tuple[int, str], FollowUpTimePoint],
    audit: BatchAudit,
    inserts: _Inserts,
    *,
    now: dt.datetime,
) -> None:
    """Each episode's PSFS activities at the point that names them, with the record
    ``followup.services._settle_psfs_names`` writes (named when answered, as on import)."""
    clinic_of = {p.patient.pk: p.clinic_id for p in prepared}
    named = [(key, point) for key, point in answered.items() if point.psfs_names]
    rows = [
        PsfsActivities(
            episode_id=key[0],
            names=list(point.psfs_names or ()),
            named_at=point.given["psfs"].authored,
            time_point_id=by_key[key].pk,
        )
        for key, point in named
    ]
    inserts.add(PsfsActivities, rows)
    for (key, point), row in zip(named, rows, strict=True):
        patient_id = by_key[key].patient_id
        audit.create(
            "psfs_activities", row.pk, clinic_id=clinic_of[patient_id], patient_id=patient_id,
            new_values={"episode": key[0], "time_point": point.key, "names": row.names},
            occurred_at=now,
        )  # fmt: skip


def _write_answers(
    prepared: Sequence[PreparedPatient],
    answered: dict[tuple[int, str], _Point],
    by_key: dict[tuple[int, str], FollowUpTimePoint],
    audit: BatchAudit,
    inserts: _Inserts,
    *,
    now: dt.datetime,
    source: str,
) -> None:
    """Submissions and responses of imported answers, one audit record per submission (the
    one ``followup.services._write_submission`` writes with a ``source``)."""
    clinic_of = {p.patient.pk: p.clinic_id for p in prepared}
    submissions = []
    for key, group in answered.items():
        submissions.append(Submission(
            time_point_id=by_key[key].pk, idempotency_key=f"import-{secrets.token_hex(16)}",
            reference=secrets.token_hex(5).upper(), submitted_at=group.submitted_at,
            entered_by_staff=True,
        ))  # fmt: skip
    inserts.add(Submission, submissions)
    responses: list[QuestionnaireResponse] = []
    for submission, (key, answers) in zip(submissions, answered.items(), strict=True):
        point = by_key[key]
        made = [
            QuestionnaireResponse(
                submission_id=submission.pk,
                time_point_id=point.pk,
                instrument_id=instrument,
                instrument_version=result.version,
                answers=dict(answers.given[instrument].answers),
                score=result.score,
                band=result.band or "",
                extras=result.to_dict()["extras"],
                submitted_at=answers.given[instrument].authored,
            )
            for instrument, result in answers.scored.items()
        ]
        responses.extend(made)
        audit.create(
            "followup_submission", submission.pk, clinic_id=clinic_of[point.patient_id],
            patient_id=point.patient_id,
            new_values={
                "time_point": point.key,
                "reference": submission.reference,
                "responses": {
                    r.instrument_id: {
                        "version": r.instrument_version, "answers": r.answers, "score": r.score,
                        "band": r.band, "answered": r.submitted_at,
                    }
                    for r in made
                },
                "source": source,
            },
            occurred_at=now,
        )  # fmt: skip
    inserts.add(QuestionnaireResponse, responses, ids=False)  # audited in the submission's record


# ---------------------------------------------------------------------------- pathway


@dataclass(frozen=True)
class PathwayInput:
    """One patient's pathway as the importer parsed it, and how to resolve its links."""

    harvests: Sequence[ImportedHarvest]
    products: Sequence[ImportedProduct]
    injections: Sequence[ImportedInjection]  # in the careful path's order (date, then line)
    product_system: str  # the ``sid/product`` identifier system
    lot_of: Callable[[ProductLink | None], AllogeneicLot | None]  # a lot of this registry


def _consented(p: PreparedPatient, on: dt.date) -> None:
    """``consent_missing``: a treatment consent signed on or before ``on`` (withdrawals are
    recorded after every step, so none is withdrawn yet when the careful path checks)."""
    if not any(c.kind == ConsentKind.TREATMENT and c.signed_on <= on for c, _ in p.consents):
        raise NotBulk("no treatment consent on the step's date")


def prepare_pathway(p: PreparedPatient, given: PathwayInput, actor: Actor) -> None:
    """Harvests, processings and injections as ``record_harvest``, ``record_processing`` and
    ``record_injection`` build them in the careful path's order, with their chain-of-custody,
    consent and plausibility checks restated on the patient's own rows (a new patient's
    products and harvests can only be this import's); NotBulk for anything else."""
    today = timezone.localdate()
    arms = {ref: e.arm for ref, e, _ in p.episodes}
    starts = {ref: e.start_date for ref, e, _ in p.episodes}
    harvest_of: dict[str, Harvest] = {}
    harvest_dates: dict[dt.date, list[str]] = defaultdict(list)

    def cell_therapy(ref: str | None) -> str:
        if ref is None or ref not in arms or arms[ref] != Arm.CELL_THERAPY:
            raise NotBulk("not a cell-therapy episode of this patient")
        return ref

    for h in given.harvests:
        ref = cell_therapy(h.episode_ref)
        if ref in harvest_of:
            raise NotBulk("a second harvest on one episode")
        lot = given.lot_of(h.lot) if h.source in ALLOGENEIC_SOURCES else None
        if h.source in ALLOGENEIC_SOURCES and lot is None:
            raise NotBulk("allogeneic lot not in this registry")
        _not_future(h.harvested_on, today)
        _consented(p, h.harvested_on)
        harvest = Harvest(source=h.source, allogeneic_lot=lot, volume_ml=h.volume_ml,
                          harvested_on=h.harvested_on, operator=actor.user)  # fmt: skip
        label = dict(CellSource.choices).get(h.source, h.source)
        _checked(harvest, [
            _date(harvest, "harvested_on", "harvest date", today,
                  after=[_bound("the episode start", starts[ref])]),
            rules_.check_harvest_volume(harvest.volume_ml, harvest.source, label),
        ])  # fmt: skip
        harvest_of[ref] = harvest
        harvest_dates[h.harvested_on].append(ref)
        p.harvests.append((ref, harvest))
    by_ref = {product.source_ref: product for product in given.products}
    used_in: dict[str, str] = {}  # product id -> episode ref (``_product_episodes``)
    for shot in given.injections:
        link = shot.product
        if link is None or shot.episode_ref not in arms:
            continue
        if link.system == given.product_system and link.value:
            used_in.setdefault(link.value, shot.episode_ref)
        elif link.reference is not None and link.reference in by_ref:
            used_in.setdefault(by_ref[link.reference].product_id, shot.episode_ref)
    processing_of: dict[str, Processing] = {}  # product id -> row
    for product in given.products:
        used = used_in.get(product.product_id)
        if used is None:
            candidates = harvest_dates.get(product.harvested_on) if product.harvested_on else None
            if not candidates or len(candidates) != 1:
                raise NotBulk("cannot tell which harvest the product was processed from")
            used = candidates[0]
        ref = cell_therapy(used)
        source = harvest_of.get(ref)
        if source is None or any(r == ref for r, _ in p.processings):
            raise NotBulk("no harvest to process, or processed twice")
        harvest = source
        if product.processed_on < harvest.harvested_on:
            raise NotBulk("processed before the harvest")
        _not_future(product.processed_on, today)
        _consented(p, product.processed_on)
        processing = Processing(
            harvest=harvest, method=product.method, lab=product.lab.strip(),
            processed_on=product.processed_on, product_id=product.product_id.strip(),
            tnc_per_ml=product.tnc_per_ml, cfu_f_per_ml=product.cfu_f_per_ml,
            cd34_pct=product.cd34_pct, viability_pct=product.viability_pct,
            sterility=product.sterility, adjunct_prp=product.adjunct_prp,
            adjunct_hyaluronic_acid=product.adjunct_hyaluronic_acid,
        )  # fmt: skip
        if processing.product_id in processing_of:
            raise NotBulk("one product id twice")
        limits = rules_.rules()
        _checked(processing, [
            _date(processing, "processed_on", "processing date", today,
                  after=[_bound("the harvest date", harvest.harvested_on)]),
            rules_.check_range("tnc_per_ml", "TNC", processing.tnc_per_ml,
                               limits.tnc_million_per_ml),
            rules_.check_range("cfu_f_per_ml", "CFU-F", processing.cfu_f_per_ml,
                               limits.cfu_f_per_ml),
        ])  # fmt: skip
        processing_of[processing.product_id] = processing
        p.processings.append((ref, processing))
    for shot in given.injections:
        _injection(p, given, shot, cell_therapy(shot.episode_ref), starts, by_ref,
                   processing_of, actor, today)  # fmt: skip


def _injection(
    p: PreparedPatient,
    given: PathwayInput,
    shot: ImportedInjection,
    ref: str,
    starts: dict[str, dt.date],
    by_ref: dict[str, ImportedProduct],
    processing_of: dict[str, Processing],
    actor: Actor,
    today: dt.date,
) -> None:
    """One injection as ``record_injection`` builds and checks it (see prepare_pathway)."""
    link = shot.product
    if link is None:
        raise NotBulk("the injection names no product")
    processing: Processing | None = None
    lot: AllogeneicLot | None = None
    if link.system == given.product_system and link.value:
        processing = processing_of.get(link.value.strip())
    elif link.reference is not None and link.reference in by_ref:
        processing = processing_of.get(by_ref[link.reference].product_id.strip())
    else:
        lot = given.lot_of(link)
        if lot is None:
            raise NotBulk("lot not in this registry")
    after = [_bound("the episode start", starts[ref])]
    if processing is not None:
        source_lot = processing.harvest.allogeneic_lot
        if processing.sterility != Sterility.PASS or (
            source_lot is not None and not source_lot.released
        ):
            raise NotBulk("product not sterile-passed, or its lot not released")
        if shot.injected_on < processing.processed_on:
            raise NotBulk("injected before processing")
        after.append(_bound("the processing date", processing.processed_on))
    elif lot is not None:
        if not lot.released or lot.released_on is None or shot.injected_on < lot.released_on:
            raise NotBulk("lot not released by the injection date")
        after.append(_bound("the lot's release date", lot.released_on))
    else:
        raise NotBulk("product not processed from this patient's harvest in this import")
    if shot.injected_on < starts[ref]:
        raise NotBulk("injected before the episode start")
    _not_future(shot.injected_on, today)
    _consented(p, shot.injected_on)
    try:
        levels = registry_services._levels(list(shot.levels))
    except ValidationError as exc:
        raise NotBulk(str(exc)) from None
    injection = Injection(
        processing=processing, allogeneic_lot=lot, levels=levels, target=shot.target,
        guidance=shot.guidance, volume_ml=shot.volume_ml, cell_dose=shot.cell_dose,
        adjunct_prp=shot.adjunct_prp, injected_on=shot.injected_on, operator=actor.user,
    )  # fmt: skip
    label = dict(InjectionTarget.choices).get(injection.target, injection.target)
    _checked(injection, [
        _date(injection, "injected_on", "injection date", today, after=after),
        rules_.check_injection_volume(injection.volume_ml, injection.target, label, len(levels)),
        rules_.check_range("cell_dose", "cell dose", injection.cell_dose,
                           rules_.rules().cell_dose_million),
    ])  # fmt: skip
    p.injections.append((ref, injection, processing))


def _write_pathway(
    prepared: Sequence[PreparedPatient], audit: BatchAudit, inserts: _Inserts
) -> None:
    """Harvests, then processings, then injections, each with its ``create`` record."""
    harvests = []
    for p in prepared:
        for ref, harvest in p.harvests:
            harvest.episode_id = p.episode_ids[ref]
            harvests.append((p, harvest))
    inserts.add(Harvest, [h for _, h in harvests])
    _audit_created(audit, harvests, Harvest)
    processings = []
    for p in prepared:
        for _, processing in p.processings:
            processing.harvest_id = processing.harvest.pk
            processings.append((p, processing))
    inserts.add(Processing, [r for _, r in processings])
    _audit_created(audit, processings, Processing)
    injections = []
    for p in prepared:
        for ref, injection, product in p.injections:
            injection.episode_id = p.episode_ids[ref]
            injection.processing_id = None if product is None else product.pk
            injections.append((p, injection))
    inserts.add(Injection, [i for _, i in injections])
    _audit_created(audit, injections, Injection)


#: What a batch may raise that sends its patients to the careful path.
BATCH_FAILURES = (ValidationError, RegistryError, FollowUpError, DatabaseError, NotBulk)
