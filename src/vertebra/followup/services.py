"""Follow-up services: schedules, secure patient links and idempotent questionnaire submission.

Contracts
---------
* Time is always a parameter (``today`` / ``now``); nothing here reads the clock, so tests can
  replay any date and the worker can be driven by a simulated clock.
* Every write runs in one transaction with its audit rows
  (:func:`vertebra.registry.audit.record_audit`). Patients and the worker have no staff account;
  they act through :func:`patient_actor` / :data:`WORKER_ACTOR`, whose audit rows name them
  (``patient:<id>``, ``system:followup-worker``) with no user id.
* Raw link tokens are returned once by :func:`issue_link` and never stored, logged or audited:
  only their SHA-256 reaches the database.
* :func:`submit_responses` is idempotent on its key, and at most one answer set per time point
  is ever stored: the time point row is locked, and ``Submission`` is unique per time point and
  per key, so even racing requests cannot store two.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from vertebra.core.instruments import (
    InvalidAnswerError,
    UnknownInstrumentError,
    get_definition,
    score,
)
from vertebra.core.psfs_activities import (
    MAX_ACTIVITIES,
    ActivityNameError,
    clean_activity_names,
    rating_item,
)
from vertebra.core.schedule import Protocol, build_schedule, default_protocol
from vertebra.followup.errors import (
    AlreadyCompleted,
    BadIdempotencyKey,
    LinkExpired,
    LinkNotFound,
    LinkReplaced,
    LinkRevoked,
    LinkUsed,
    SubmissionInvalid,
    WindowNotOpen,
)
from vertebra.followup.models import (
    CallListEntry,
    FollowUpSchedule,
    FollowUpTimePoint,
    LinkRetirement,
    PatientLink,
    PsfsActivities,
    QuestionnaireResponse,
    Reminder,
    ReminderStatus,
    Submission,
    TicklerEscalation,
    TimePointStatus,
)
from vertebra.registry.audit import (
    audited_transaction,
    deferred_audit,
    record_audit,
    retrying,
)
from vertebra.registry.errors import NotFound
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventCategory,
    AdverseEventStatus,
    Consent,
    ConsentKind,
    Patient,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.services import lock_patient

#: Role names written to the audit trail for the non-staff principals.
PATIENT_ROLE = "patient"
SYSTEM_ROLE = "system"

#: Default instruments per time point (overridable with settings.FOLLOWUP_INSTRUMENTS).
#: Baseline has no "change since treatment" or adverse-event questions: nothing to compare yet.
#: STarT Back is asked once, at baseline: it stratifies prognosis (Hill et al. 2008), it is not
#: an outcome, and the outcome reports adjust for it. The PSFS (issue 18) is asked at every
#: time point: named at the first, re-rated by name at the others.
DEFAULT_INSTRUMENTS: Mapping[str, Sequence[str]] = {
    "baseline": (
        "nrs_back",
        "nrs_leg",
        "odi",
        "promis_pf_4a",
        "promis_pi_4a",
        "startback",
        "opioid_use",
        "work_status",
        "psfs",
    ),
    "default": (
        "nrs_back",
        "nrs_leg",
        "odi",
        "promis_pf_4a",
        "promis_pi_4a",
        "opioid_use",
        "work_status",
        "psfs",
        "global_rating_of_change",
        "satisfaction",
        "ae_tickler",
    ),
}

#: Tickler item → adverse-event category of the pending event it creates.
TICKLER_CATEGORIES: Mapping[str, str] = {
    "new_harvest_site_pain": AdverseEventCategory.HARVEST_SITE,
    "fever_or_infection_signs": AdverseEventCategory.INFECTION,
    "new_leg_weakness_or_numbness": AdverseEventCategory.NEUROLOGICAL,
    "new_bladder_or_bowel_problem": AdverseEventCategory.NEUROLOGICAL,
    "hospital_or_er_visit": AdverseEventCategory.OTHER,
    "other_new_problem": AdverseEventCategory.OTHER,
}

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: Longest token accepted for lookup; token_urlsafe(32) is 43 characters.
_MAX_TOKEN_LENGTH = 100


# --------------------------------------------------------------------------------------------
# Principals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A non-staff actor (patient, worker): enough of a user for the audit trail, no account."""

    username: str
    pk: None = None
    is_active: bool = True

    def get_username(self) -> str:
        return self.username


def patient_actor(patient_id: int, *, request_id: str = "") -> Actor:
    """The Actor for a patient acting through the portal (audit rows say ``patient:<id>``)."""
    return Actor(
        user=Principal(f"patient:{patient_id}"),
        role=PATIENT_ROLE,
        clinic_ids=frozenset(),
        request_id=request_id,
    )


WORKER_ACTOR = Actor(
    user=Principal("system:followup-worker"), role=SYSTEM_ROLE, clinic_ids=frozenset()
)


def _is_system(actor: Actor) -> bool:
    return actor.role == SYSTEM_ROLE and isinstance(actor.user, Principal)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def instruments_for(time_point_key: str) -> list[str]:
    """The instrument ids asked at ``time_point_key`` (settings.FOLLOWUP_INSTRUMENTS)."""
    table: Mapping[str, Sequence[str]] = getattr(
        settings, "FOLLOWUP_INSTRUMENTS", DEFAULT_INSTRUMENTS
    )
    chosen = table.get(time_point_key, table.get("default", DEFAULT_INSTRUMENTS["default"]))
    return [get_definition(i).id for i in chosen]  # fails loudly on an unknown id


def status_on(opens: dt.date, closes: dt.date, today: dt.date) -> str:
    """The status of a not-completed time point on ``today``: pending, open or missed."""
    if today < opens:
        return TimePointStatus.PENDING
    if today <= closes:
        return TimePointStatus.OPEN
    return TimePointStatus.MISSED


def _check_staff(actor: Actor, episode: TreatmentEpisode) -> None:
    """Staff may schedule only episodes of their clinics (NotFound otherwise); the worker may."""
    if _is_system(actor):
        return
    clinics = verify_actor(actor, Action.EPISODE_START)
    if episode.patient.clinic_id not in clinics:
        raise NotFound("treatment_episode", episode.pk)


def create_schedule_for_episode(
    episode: TreatmentEpisode,
    actor: Actor,
    today: dt.date,
    protocol: Protocol | None = None,
    *,
    reason: str = "",
) -> FollowUpSchedule:
    """Create the follow-up schedule of ``episode`` (idempotent: an existing one is returned).

    Time points come from :func:`vertebra.core.schedule.build_schedule` on the episode's start
    date. Windows already closed on ``today`` (a back-filled episode) are ``missed`` and never
    reminded; the others are ``pending`` or ``open``, and the worker sends the invitations.
    One audit row (``create`` followup_schedule, with ``reason`` if given) records the protocol
    and the windows. Runs in the caller's transaction when there is one (an episode and its
    schedule commit together: :func:`start_episode_with_follow_up`); alone, in its own,
    retried on a transient failure. Lock order: the patient row first.
    """
    return retrying(
        lambda: _create_schedule(episode, actor, today, protocol, reason),
        what="create_schedule_for_episode",
    )


def _create_schedule(
    episode: TreatmentEpisode,
    actor: Actor,
    today: dt.date,
    protocol: Protocol | None,
    reason: str,
) -> FollowUpSchedule:
    proto = protocol or default_protocol()
    now = timezone.now()
    with transaction.atomic():
        lock_patient(episode.patient_id)
        episode = TreatmentEpisode.objects.select_related("patient").get(pk=episode.pk)
        _check_staff(actor, episode)
        existing = FollowUpSchedule.objects.filter(episode=episode).first()
        if existing is not None:
            return existing
        schedule = FollowUpSchedule.objects.create(
            episode=episode,
            protocol_id=proto.id,
            protocol_version=proto.version,
            treatment_date=episode.start_date,
            created_at=now,
            updated_at=now,
        )
        points = [
            FollowUpTimePoint(
                schedule=schedule,
                patient=episode.patient,
                clinic_id=episode.patient.clinic_id,
                key=tp.id,
                label=tp.label,
                months=tp.months,
                target=tp.target,
                opens=tp.opens,
                closes=tp.closes,
                instruments=instruments_for(tp.id),
                status=status_on(tp.opens, tp.closes, today),
            )
            for tp in _placed(episode.start_date, proto)
        ]
        FollowUpTimePoint.objects.bulk_create(points)
        record_audit(
            actor=actor,
            action="create",
            object_type="followup_schedule",
            object_id=schedule.pk,
            clinic_id=episode.patient.clinic_id,
            patient_id=episode.patient_id,
            new_values={
                "episode_id": episode.pk,
                "protocol": f"{proto.id} {proto.version}",
                "treatment_date": episode.start_date,
                "time_points": {p.key: [p.opens, p.closes, p.status] for p in points},
            },
            reason=reason,
        )
        return schedule


def _placed(start: dt.date, proto: Protocol) -> list[Any]:
    """The protocol's time points from ``start``; a date so far out that a window falls off
    the calendar (year 1 or 9999) is refused as a ValidationError on ``start_date``, so the
    episode is refused with it rather than stored without a schedule or failing with a 500."""
    try:
        return list(build_schedule(start, proto))
    except OverflowError:
        raise ValidationError(
            {"start_date": "No follow-up schedule can be placed from this date: check the year."}
        ) from None


#: The audit reason of a schedule created for an episode found without one.
HEALED_REASON = "healed: the episode had no follow-up schedule"


def backfill_schedules(
    today: dt.date, actor: Actor = WORKER_ACTOR, *, reason: str = HEALED_REASON
) -> list[int]:
    """Create schedules for every episode that has none; return those episodes' ids.

    Since an episode and its schedule commit together, this finds only episodes written by
    something else (an old version, SQL, a restore); each schedule's audit row says so.
    """
    healed: list[int] = []
    # A voided episode (entered in error) gets no follow-up.
    missing = TreatmentEpisode.objects.filter(
        followup_schedule__isnull=True, voided_at__isnull=True
    )
    for episode in missing.order_by("pk"):
        create_schedule_for_episode(episode, actor, today, reason=reason)
        healed.append(episode.pk)
    return healed


def reschedule(
    episode: TreatmentEpisode, new_date: dt.date, actor: Actor, reason: str, today: dt.date
) -> FollowUpSchedule:
    """Move the schedule to a new treatment date; completed time points are kept as they are.

    Every not-completed time point gets its new window and the status it has on ``today``.
    Unsent reminders of moved time points are dropped (the worker re-queues the ladder for open
    windows; steps already sent stay sent, so no step is ever sent twice) and unused links
    expire at the new window close. The episode's own start date is the registry's business;
    this only moves the follow-up. Needs a reason, kept in the audit row with old → new windows.
    """
    if not reason or not reason.strip():
        raise ValueError("Give a reason for moving the follow-up schedule.")
    with transaction.atomic():
        lock_patient(episode.patient_id)  # lock order: patient first
        episode = TreatmentEpisode.objects.select_related("patient").get(pk=episode.pk)
        _check_staff(actor, episode)
        schedule = FollowUpSchedule.objects.select_for_update().get(episode=episode)
        protocol = _protocol_of(schedule)
        placed = {tp.id: tp for tp in _placed(new_date, protocol)}
        old: dict[str, Any] = {"treatment_date": schedule.treatment_date}
        new: dict[str, Any] = {"treatment_date": new_date}
        for point in schedule.time_points.select_for_update().exclude(
            status=TimePointStatus.COMPLETED
        ):
            spec = placed.get(point.key)
            if spec is None:
                continue
            old[point.key] = [point.opens, point.closes, point.status]
            point.target, point.opens, point.closes = spec.target, spec.opens, spec.closes
            point.status = status_on(spec.opens, spec.closes, today)
            point.save(update_fields=["target", "opens", "closes", "status"])
            new[point.key] = [point.opens, point.closes, point.status]
            Reminder.objects.filter(
                time_point=point, status=ReminderStatus.SCHEDULED
            ).delete()  # queue rows, not clinical data: never sent, safe to drop
            PatientLink.objects.filter(time_point=point, used_at__isnull=True).update(
                expires_at=window_end(point.closes)
            )
        schedule.treatment_date = new_date
        schedule.updated_at = timezone.now()
        schedule.save(update_fields=["treatment_date", "updated_at"])
        record_audit(
            actor=actor,
            action="update",
            object_type="followup_schedule",
            object_id=schedule.pk,
            clinic_id=episode.patient.clinic_id,
            patient_id=episode.patient_id,
            old_values=old,
            new_values=new,
            reason=reason.strip(),
        )
        return schedule


def _protocol_of(schedule: FollowUpSchedule) -> Protocol:
    """The protocol a schedule was built with (only the shipped default exists for now)."""
    proto = default_protocol()
    if (proto.id, proto.version) != (schedule.protocol_id, schedule.protocol_version):
        raise ValueError(
            f"schedule {schedule.pk} uses protocol {schedule.protocol_id} "
            f"{schedule.protocol_version}, which is not installed"
        )
    return proto


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------


def hash_token(raw: str) -> str:
    """SHA-256 (hex) of a raw token: what the database stores and looks up."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def window_end(closes: dt.date) -> dt.datetime:
    """The moment a window closing on ``closes`` (inclusive) ends: next midnight, local time."""
    return timezone.make_aware(
        dt.datetime.combine(closes + dt.timedelta(days=1), dt.time.min),
        timezone.get_default_timezone(),
    )


def _live_links(point_filter: Q) -> Any:
    """Links not used and not retired (the database allows one per time point)."""
    return PatientLink.objects.filter(point_filter, used_at__isnull=True, retired_at__isnull=True)


def issue_link(time_point: FollowUpTimePoint, now: dt.datetime) -> str:
    """Create a link to ``time_point`` and return its raw token (shown once, never stored).

    The token is ``secrets.token_urlsafe(32)``: 256 bits from the OS CSPRNG. The link expires
    when the window closes. The time point's previous live link, if any, is retired
    (``replaced``) in the same transaction: one live link per time point, so each reminder's
    link replaces the last one (the constraint ``followup_one_live_link`` holds it). The audit
    row names the link ids, never a token or its hash.
    """
    raw = secrets.token_urlsafe(32)
    with transaction.atomic():
        lock_patient(time_point.patient_id)  # lock order: patient first
        # Serialise issuers of the same time point (two workers, a resend): lock its row next,
        # as every follow-up write does before the audit chain.
        list(
            FollowUpTimePoint.objects.select_for_update()
            .filter(pk=time_point.pk)
            .values_list("pk", flat=True)
        )
        live = _live_links(Q(time_point_id=time_point.pk))
        replaced = sorted(live.values_list("pk", flat=True))
        live.update(retired_at=now, retired_reason=LinkRetirement.REPLACED)
        link = PatientLink.objects.create(
            time_point=time_point,
            token_hash=hash_token(raw),
            created_at=now,
            expires_at=window_end(time_point.closes),
        )
        record_audit(
            actor=WORKER_ACTOR,
            action="issue_link",
            object_type="patient_link",
            object_id=link.pk,
            patient_id=time_point.patient_id,
            new_values={
                "time_point": str(time_point.public_id),
                "expires_at": link.expires_at,
                "replaces": replaced,
            },
            occurred_at=now,
        )
    return raw


def open_link(raw: str, now: dt.datetime) -> FollowUpTimePoint:
    """The time point a raw token opens, if it may still be answered.

    Raises LinkNotFound (unknown or malformed token: 404), LinkUsed (the questionnaire was
    answered: 410), LinkReplaced (a newer link was sent: 410), LinkRevoked (staff withdrew it:
    410) or LinkExpired (the window has closed: 410). Read-only.
    """
    if not raw or len(raw) > _MAX_TOKEN_LENGTH:
        raise LinkNotFound()
    link = (
        PatientLink.objects.select_related("time_point").filter(token_hash=hash_token(raw)).first()
    )
    if link is None:
        raise LinkNotFound()
    point = link.time_point
    if link.used_at is not None or point.status == TimePointStatus.COMPLETED:
        raise LinkUsed()
    if link.retired_at is not None:
        if link.retired_reason == LinkRetirement.REVOKED:
            raise LinkRevoked()
        raise LinkReplaced()
    if now >= link.expires_at or point.status == TimePointStatus.MISSED:
        raise LinkExpired()
    return point


@audited_transaction
def revoke_links(
    *,
    actor: Actor,
    patient_id: int,
    reason: str,
    now: dt.datetime,
    time_point_id: str | None = None,
) -> int:
    """Withdraw the patient's live links (all, or one time point's by its public id); return
    how many were withdrawn (0 is fine: nothing was live).

    Staff who may update the patient (``patient.update``) at the patient's clinic; another
    clinic's patient, or a time point not of this patient, is NotFound, exactly as a patient
    that does not exist. A reason is required (ValueError without one); it is kept in the audit
    row with the ids of the links withdrawn. A withdrawn link answers 410 "withdrawn"; the
    worker's next reminder, or a resend, issues a fresh one.
    """
    if not reason or not reason.strip():
        raise ValueError("Give a reason for withdrawing the patient's links.")
    clinics = verify_actor(actor, Action.PATIENT_UPDATE)
    patient = (
        Patient.objects.select_for_update().filter(pk=patient_id, clinic_id__in=clinics).first()
    )
    if patient is None:
        raise NotFound("patient", patient_id)
    scope = Q(time_point__patient_id=patient.pk)
    if time_point_id is not None:
        public_id = _uuid_or_none(time_point_id)
        point = (
            FollowUpTimePoint.objects.filter(public_id=public_id, patient_id=patient.pk).first()
            if public_id is not None
            else None
        )
        if point is None:
            raise NotFound("followup_timepoint", time_point_id)
        scope &= Q(time_point_id=point.pk)
    live = _live_links(scope)
    withdrawn = list(live.order_by("pk").values_list("pk", "time_point__key"))
    live.update(retired_at=now, retired_reason=LinkRetirement.REVOKED)
    record_audit(
        actor=actor,
        action="revoke_links",
        object_type="patient_link",
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
        new_values={
            "links": [pk for pk, _ in withdrawn],
            "time_points": sorted({key for _, key in withdrawn}),
        },
        reason=reason.strip()[:500],
        occurred_at=now,
    )
    return len(withdrawn)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Submission
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    """The stored submission and whether this call stored it (False: an idempotent replay)."""

    submission: Submission
    created: bool


def _score_all(
    point: FollowUpTimePoint, answers_by_instrument: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Score every instrument of ``point``; raise SubmissionInvalid naming each problem."""
    errors: dict[str, str] = {}
    results: dict[str, Any] = {}
    extra = set(answers_by_instrument) - set(point.instruments)
    for instrument_id in sorted(extra):
        errors[instrument_id] = f"{instrument_id} is not asked at this time point"
    for instrument_id in point.instruments:
        answers = answers_by_instrument.get(instrument_id)
        if answers is None:
            errors[instrument_id] = f"{get_definition(instrument_id).title}: not answered yet"
            continue
        try:
            results[instrument_id] = score(instrument_id, dict(answers))
        except InvalidAnswerError as exc:
            errors[instrument_id] = str(exc)
    if errors:
        raise SubmissionInvalid(errors)
    return results


def submit_responses(
    time_point: FollowUpTimePoint,
    answers_by_instrument: Mapping[str, Mapping[str, Any]],
    idempotency_key: str,
    now: dt.datetime,
    *,
    request_id: str = "",
    psfs_names: Sequence[str] | None = None,
) -> SubmitResult:
    """Store one answer set for ``time_point``, exactly once.

    * Same key again → the stored submission (``created=False``), whatever the answers: the
      client repeats a request it already made (double click, retry, second tab).
    * A different key for a completed time point → AlreadyCompleted; nothing is stored.
    * Window not open on ``now`` → WindowNotOpen; invalid or missing answers → SubmissionInvalid.

    In one transaction: the responses (scored by the core scorers, with instrument version),
    the time point marked completed, its links used, its unsent reminders cancelled, its call-list
    entry resolved, a pending adverse event per tickler "yes", and the audit rows.

    PSFS: the first time the episode answers it, ``psfs_names`` (1..5 activities in the
    patient's words) are cleaned and stored for the episode (:class:`PsfsActivities`, with an
    audit record); later time points re-rate the stored names and ``psfs_names`` is ignored.
    Either way each rated ``activity_<k>`` must have a k-th name (SubmissionInvalid otherwise).
    """
    if not isinstance(idempotency_key, str) or not _KEY_RE.match(idempotency_key):
        raise BadIdempotencyKey()
    try:
        scored = _score_all(time_point, answers_by_instrument)
    except SubmissionInvalid:
        # A replay (the portal forgets its drafts once they are stored) or a point answered
        # with another key: say so, rather than complain about the answers. Valid answers go
        # on to the transaction, which answers a replay or refuses a second answer set under
        # the time point's lock (:func:`_store`): no query before it on the usual path.
        replay = _earlier(time_point, idempotency_key)
        if replay is not None:
            return replay
        raise

    def store() -> SubmitResult:
        with transaction.atomic(), deferred_audit():
            return _store(
                time_point,
                answers_by_instrument,
                scored,
                idempotency_key,
                now,
                request_id,
                psfs_names,
            )

    try:
        return retrying(store, what="submit_responses")
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer as a replay.
        replay = _replay(time_point, idempotency_key)
        if replay is not None:
            return replay
        raise


def _earlier(point: FollowUpTimePoint, key: str) -> SubmitResult | None:
    """The earlier submission with ``key`` at ``point`` (a replay), if any; AlreadyCompleted
    when ``point`` was answered with another key or ``key`` was used for another point. One
    query; for answers that are not a valid set, to say what really happened."""
    earlier = list(
        Submission.objects.filter(Q(idempotency_key=key) | Q(time_point_id=point.pk))[:2]
    )
    for submission in earlier:
        if submission.idempotency_key == key and submission.time_point_id == point.pk:
            return SubmitResult(submission, created=False)
    if earlier:
        raise AlreadyCompleted()
    return None


def _replay(point: FollowUpTimePoint, key: str) -> SubmitResult | None:
    """The earlier submission with this key, if any; a key reused for another time point is
    refused as if the time point were answered (it can only be a forged or corrupted form)."""
    existing = Submission.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.time_point_id != point.pk:
        raise AlreadyCompleted()
    return SubmitResult(existing, created=False)


def _store(
    time_point: FollowUpTimePoint,
    answers_by_instrument: Mapping[str, Mapping[str, Any]],
    scored: Mapping[str, Any],
    key: str,
    now: dt.datetime,
    request_id: str,
    psfs_names: Sequence[str] | None = None,
) -> SubmitResult:
    # Lock order: the patient row first, then the time point. Concurrent submissions for the
    # point queue here, and the loser sees the winner's committed "completed" status below.
    point = _lock_for_submit(time_point)
    if point.status == TimePointStatus.COMPLETED:
        existing = Submission.objects.get(time_point=point)
        if existing.idempotency_key == key:
            return SubmitResult(existing, created=False)
        raise AlreadyCompleted()
    today = timezone.localdate(now)
    if point.status == TimePointStatus.MISSED or not point.opens <= today <= point.closes:
        raise WindowNotOpen()
    actor = patient_actor(point.patient_id, request_id=request_id)
    if "psfs" in scored:
        _settle_psfs_names(point, answers_by_instrument["psfs"], psfs_names, actor, now)
    submission, responses = _write_submission(
        point,
        actor=actor,
        key=key,
        scored=scored,
        answers={i: (answers_by_instrument[i], now) for i in scored},
        submitted_at=now,
        now=now,
    )
    for response in responses:
        if response.instrument_id == "ae_tickler":
            _escalate_tickler(point, response, actor, now)
    return SubmitResult(submission, created=True)


def _lock_for_submit(time_point: FollowUpTimePoint) -> FollowUpTimePoint:
    """Lock the patient's row, then the time point's, and return a copy of ``time_point``
    with what may have changed since the caller read it re-read under the lock: status,
    completion, window, and the episode's id and stored PSFS activities (``psfs_episode_id``,
    ``psfs_stored_names``, as :func:`portal_time_point` reads them).
    The rest of a time point (instruments, key, label, patient, clinic) never changes.

    One round trip on PostgreSQL (the two locking statements sent together, run in order, so
    the lock order holds); SQLite (one writer at a time) reads the point only. Raises
    ``FollowUpTimePoint.DoesNotExist`` when the point is not the patient's.
    """
    tables = {
        name: connection.ops.quote_name(model._meta.db_table)
        for name, model in (
            ("patient", Patient),
            ("point", FollowUpTimePoint),
            ("schedule", FollowUpSchedule),
            ("psfs", PsfsActivities),
        )
    }
    read = (
        "SELECT t.status, t.completed_at, t.target, t.opens, t.closes, s.episode_id, "
        f"(SELECT a.names FROM {tables['psfs']} a WHERE a.episode_id = s.episode_id) "
        f"FROM {tables['point']} t JOIN {tables['schedule']} s ON s.id = t.schedule_id "
        "WHERE t.id = %s AND t.patient_id = %s"
    )
    params: list[Any] = [time_point.pk, time_point.patient_id]
    with connection.cursor() as cursor:
        if connection.features.has_select_for_update:
            cursor.execute(
                f"SELECT id FROM {tables['patient']} WHERE id = %s FOR UPDATE; "
                f"{read} FOR UPDATE OF t",
                [time_point.patient_id, *params],
            )
            cursor.nextset()
        else:
            cursor.execute(read, params)
        row = cursor.fetchone()
    if row is None:
        raise FollowUpTimePoint.DoesNotExist(f"time point {time_point.pk} of this patient")
    status, completed_at, target, opens, closes, episode_id, names = row
    point = copy.copy(time_point)
    point.status = status
    # SQLite hands back stored UTC times naive (Django's converters are not applied to a
    # raw cursor); dates come back as dates on both.
    if isinstance(completed_at, dt.datetime) and timezone.is_naive(completed_at):
        completed_at = completed_at.replace(tzinfo=dt.UTC)
    point.completed_at = completed_at
    point.target, point.opens, point.closes = (_date(v) for v in (target, opens, closes))
    point.psfs_episode_id = episode_id  # type: ignore[attr-defined]
    # JSON comes back as text (Django loads jsonb as text; SQLite stores text).
    stored = json.loads(names) if isinstance(names, str) else names
    point.psfs_stored_names = stored  # type: ignore[attr-defined]
    return point


def _date(value: Any) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def portal_time_point(public_id: str, patient_id: int) -> FollowUpTimePoint | None:
    """The time point ``public_id`` of patient ``patient_id`` (else None), with its episode's
    id and stored PSFS activities (``psfs_episode_id``, ``psfs_stored_names``: no query more for
    :func:`psfs_names_for_point`): what every portal request reads first. A raw query of the model (Django's field converters still apply):
    compiling the equivalent queryset costs three times the query itself, on every request.
    """
    public = _uuid_or_none(public_id)
    if public is None:
        return None
    field = FollowUpTimePoint._meta.get_field("public_id")
    value = field.get_db_prep_value(public, connection)  # SQLite keeps UUIDs as hex text
    found = FollowUpTimePoint.objects.raw(_portal_point_sql(), [value, patient_id])
    return next(iter(found), None)


@functools.cache
def _portal_point_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(
        f"t.{quote(str(f.column))}" for f in FollowUpTimePoint._meta.concrete_fields
    )
    points, schedules, psfs = (
        quote(model._meta.db_table)
        for model in (FollowUpTimePoint, FollowUpSchedule, PsfsActivities)
    )
    return (
        f"SELECT {columns}, s.episode_id AS psfs_episode_id, "
        f"(SELECT a.names FROM {psfs} a WHERE a.episode_id = s.episode_id) AS psfs_stored_names "
        f"FROM {points} t JOIN {schedules} s ON s.id = t.schedule_id "
        "WHERE t.public_id = %s AND t.patient_id = %s"
    )


def psfs_names_for_point(point: FollowUpTimePoint) -> tuple[str, ...]:
    """The PSFS activities stored for ``point``'s episode (empty before they are named); no
    query when ``point`` was read with them (:func:`portal_time_point`)."""
    if hasattr(point, "psfs_stored_names"):
        stored = point.psfs_stored_names
        if isinstance(stored, str):  # a raw read: JSON as text
            stored = json.loads(stored)
        return tuple(stored or ())
    stored = (
        PsfsActivities.objects.filter(episode__followup_schedule__id=point.schedule_id)
        .values_list("names", flat=True)
        .first()
    )
    return tuple(stored or ())


def _settle_psfs_names(
    point: FollowUpTimePoint,
    answers: Mapping[str, Any],
    offered: Sequence[str] | None,
    actor: Actor,
    now: dt.datetime,
    named_at: dt.datetime | None = None,
) -> tuple[str, ...]:
    """The names ``answers`` rate: the episode's stored ones, or else ``offered``, cleaned and
    stored here with their audit record (the caller holds the transaction and the patient lock;
    ``named_at``: when they were named, default ``now``; an import passes when answered).
    SubmissionInvalid when the names are refused or a rating has no activity to rate; a named
    activity left unrated is allowed (the score is the mean of those rated)."""
    names = psfs_names_for_point(point)
    new = not names
    if new:
        try:
            names = clean_activity_names(list(offered or ()))
        except ActivityNameError as exc:
            raise SubmissionInvalid({"psfs": str(exc)}) from None
    unnamed = [
        k
        for k in range(len(names) + 1, MAX_ACTIVITIES + 1)
        if answers.get(rating_item(k)) is not None
    ]
    if unnamed:
        raise SubmissionInvalid({"psfs": "Please rate only the activities you named."})
    if new:
        episode_id = getattr(point, "psfs_episode_id", None) or (
            FollowUpSchedule.objects.values_list("episode_id", flat=True).get(pk=point.schedule_id)
        )
        stored = PsfsActivities.objects.create(
            episode_id=episode_id, names=list(names), named_at=named_at or now, time_point=point
        )
        record_audit(
            actor=actor,
            action="create",
            object_type="psfs_activities",
            object_id=stored.pk,
            clinic_id=point.clinic_id,
            patient_id=point.patient_id,
            new_values={"episode": episode_id, "time_point": point.key, "names": list(names)},
            occurred_at=now,
        )
    return names


def _write_submission(
    point: FollowUpTimePoint,
    *,
    actor: Actor,
    key: str,
    scored: Mapping[str, Any],
    answers: Mapping[str, tuple[Mapping[str, Any], dt.datetime]],
    submitted_at: dt.datetime,
    now: dt.datetime,
    source: str = "",
) -> tuple[Submission, list[QuestionnaireResponse]]:
    """Store one scored answer set at ``point`` (locked by the caller, not yet completed).

    ``answers`` maps each scored instrument to (answers, when answered). Writes the
    submission, one response per instrument with its score and instrument version, completes
    the point (:func:`_complete`) and appends one audit record; with a ``source`` (answers
    collected elsewhere) the record names it and when each instrument was answered.
    """
    submission = Submission.objects.create(
        time_point=point,
        idempotency_key=key,
        reference=secrets.token_hex(5).upper(),
        submitted_at=submitted_at,
        entered_by_staff=bool(source),
    )
    # One INSERT for all responses (a submission has up to 8): each statement is a round trip.
    responses = QuestionnaireResponse.objects.bulk_create(
        [
            QuestionnaireResponse(
                submission=submission,
                time_point=point,
                instrument_id=instrument_id,
                instrument_version=result.version,
                answers=dict(answers[instrument_id][0]),
                score=result.score,
                band=result.band or "",
                extras=result.to_dict()["extras"],
                submitted_at=answers[instrument_id][1],
            )
            for instrument_id, result in scored.items()
        ]
    )
    _complete(point, submitted_at)
    recorded: dict[str, Any] = {
        "time_point": point.key,
        "reference": submission.reference,
        "responses": {
            r.instrument_id: {
                "version": r.instrument_version,
                "answers": r.answers,
                "score": r.score,
                "band": r.band,
                **({"answered": r.submitted_at} if source else {}),
            }
            for r in responses
        },
    }
    if source:
        recorded["source"] = source
    record_audit(
        actor=actor,
        action="create",
        object_type="followup_submission",
        object_id=submission.pk,
        clinic_id=point.clinic_id,
        patient_id=point.patient_id,
        new_values=recorded,
        occurred_at=now,
    )
    return submission, responses


def _complete(point: FollowUpTimePoint, now: dt.datetime) -> None:
    """Mark completed, use up links, cancel unsent reminders, resolve the call-list entry."""
    point.status = TimePointStatus.COMPLETED
    point.completed_at = now
    point.save(update_fields=["status", "completed_at"])
    _close_follow_ons(point.pk, now)


#: The resolution of a call-list entry whose time point was answered.
ANSWERED_RESOLUTION = "Answered the questionnaire"


def _close_follow_ons(point_id: int, now: dt.datetime) -> None:
    """Use up the point's links, cancel its unsent reminders, resolve its call-list entry.

    On PostgreSQL the three UPDATEs go to the server as one round trip (each submission pays
    for every statement's trip, ADR 0021 §7); elsewhere they are three ORM updates.
    """
    if connection.vendor != "postgresql":
        PatientLink.objects.filter(time_point_id=point_id, used_at__isnull=True).update(used_at=now)
        Reminder.objects.filter(time_point_id=point_id, status=ReminderStatus.SCHEDULED).update(
            status=ReminderStatus.CANCELLED
        )
        CallListEntry.objects.filter(time_point_id=point_id, resolved_at__isnull=True).update(
            resolved_at=now, resolution=ANSWERED_RESOLUTION
        )
        return
    links, reminders, calls = (
        connection.ops.quote_name(model._meta.db_table)
        for model in (PatientLink, Reminder, CallListEntry)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {links} SET used_at = %s WHERE time_point_id = %s AND used_at IS NULL; "
            f"UPDATE {reminders} SET status = %s WHERE time_point_id = %s AND status = %s; "
            f"UPDATE {calls} SET resolved_at = %s, resolution = %s "
            "WHERE time_point_id = %s AND resolved_at IS NULL",
            [
                now,
                point_id,
                str(ReminderStatus.CANCELLED),
                point_id,
                str(ReminderStatus.SCHEDULED),
                now,
                ANSWERED_RESOLUTION,
                point_id,
            ],
        )


def _escalate_tickler(
    point: FollowUpTimePoint, response: QuestionnaireResponse, actor: Actor, now: dt.datetime
) -> None:
    """One pending adverse event per "yes", for clinician adjudication; red flags are also put
    at the top of the call list (reason ``urgent_tickler``)."""
    definition = get_definition("ae_tickler")
    urgent_items = set(definition.scoring.params.get("urgent_items", ()))
    episode = point.schedule.episode
    any_urgent = False
    for item in definition.items:
        if response.answers.get(item.id) != 1:
            continue
        urgent = item.id in urgent_items
        any_urgent = any_urgent or urgent
        event = AdverseEvent.objects.create(
            patient_id=point.patient_id,
            clinic_id=point.clinic_id,
            episode=episode,
            description=f"Patient-reported at {point.label} follow-up: {item.text}",
            category=TICKLER_CATEGORIES.get(item.id, AdverseEventCategory.OTHER),
            onset=timezone.localdate(now),
            status=AdverseEventStatus.PENDING,
        )
        TicklerEscalation.objects.create(
            response=response, item_id=item.id, urgent=urgent, adverse_event=event
        )
        record_audit(
            actor=actor,
            action="create",
            object_type="adverseevent",
            object_id=event.pk,
            clinic_id=point.clinic_id,
            patient_id=point.patient_id,
            new_values={
                "source": "ae_tickler",
                "item": item.id,
                "urgent": urgent,
                "status": event.status,
                "category": event.category,
                "onset": event.onset,
            },
            occurred_at=now,
        )
    if any_urgent:
        CallListEntry.objects.update_or_create(
            time_point=point,
            defaults={
                "reason": CallListEntry.Reason.URGENT_TICKLER,
                "created_at": now,
                "resolved_at": None,
                "resolution": "",
            },
        )


@audited_transaction
def start_episode_with_follow_up(
    *,
    actor: Actor,
    patient_id: int,
    arm: str,
    start_date: dt.date,
    today: dt.date | None = None,
    cost: Mapping[str, Any] | None = None,
) -> TreatmentEpisode:
    """Start a treatment episode and create its follow-up schedule, in one transaction (what
    staff pages, the API and the FHIR import call when an episode is recorded).

    The episode and its schedule (each with its audit row) commit together or not at all, so
    an episode without a schedule cannot come from here; a refusal is audited once, naming
    ``start_episode``. ``cost``: the episode's optional cost fields (see
    :func:`vertebra.registry.services.start_episode`). The worker heals episodes written any other way
    (:func:`backfill_schedules`).
    """
    from vertebra.registry import services as registry_services

    episode = registry_services.start_episode(
        actor=actor, patient_id=patient_id, arm=arm, start_date=start_date, cost=cost
    )
    create_schedule_for_episode(episode, actor, today or timezone.localdate())
    return episode


@audited_transaction
def withdraw_consent_and_stop_invitations(
    *,
    actor: Actor,
    consent_id: int,
    withdrawn_on: dt.date,
    reason: str = "",
    today: dt.date | None = None,
) -> Consent:
    """Withdraw a consent (the registry's ``withdraw_consent``) and, for a registry
    consent withdrawn on or before ``today``, cancel every queued invitation and reminder of
    the patient in the same transaction, so none goes out after the withdrawal.

    The cancellation is audited as one row (how many reminders, why); the worker also checks
    the consent before each send, so nothing is sent even for a withdrawal written elsewhere.
    """
    from vertebra.registry import services as registry_services

    consent = registry_services.withdraw_consent(
        actor=actor, consent_id=consent_id, withdrawn_on=withdrawn_on, reason=reason
    )
    today = today or timezone.localdate()
    if consent.kind == ConsentKind.REGISTRY and withdrawn_on <= today:
        cancelled = Reminder.objects.filter(
            time_point__patient_id=consent.patient_id, status=ReminderStatus.SCHEDULED
        ).update(status=ReminderStatus.CANCELLED, last_error="registry consent withdrawn")
        if cancelled:
            record_audit(
                actor=actor,
                action="update",
                object_type="followup_reminder",
                clinic_id=consent.patient.clinic_id,
                patient_id=consent.patient_id,
                new_values={"cancelled_reminders": cancelled, "status": "cancelled"},
                reason="registry consent withdrawn",
            )
    return consent


# --------------------------------------------------------------------------------------------
# Corrections and voids of an episode, with its follow-up (ADR 0009)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MovedTimePoint:
    """One time point of a schedule whose window moved (or was kept, when already answered)."""

    key: str
    label: str
    old_opens: dt.date
    old_closes: dt.date
    new_opens: dt.date
    new_closes: dt.date
    kept: bool  # completed: answers and window kept as they were


@dataclass(frozen=True)
class EpisodeCorrection:
    """The corrected episode and what happened to its follow-up schedule."""

    episode: TreatmentEpisode
    moved: tuple[MovedTimePoint, ...] = ()


def correct_episode_with_follow_up(
    *,
    actor: Actor,
    episode_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    reason: str,
    today: dt.date | None = None,
) -> EpisodeCorrection:
    """Correct a treatment episode (the registry's generic correction) and, when its treatment
    date moved, recompute its follow-up schedule from the new date in the same transaction.

    Completed time points keep their answers and windows; the others get new windows and the
    status they have on ``today`` (:func:`reschedule`). The refusals of the registry correction
    apply (PermissionDeniedError, NotFound, StaleEditError, ValidationError, ...); permission and
    existence are checked first, in their own audited transaction, so a refusal is on the trail.
    """
    from vertebra.registry import corrections

    corrections.get_for_correction(actor=actor, record_type="episodes", object_id=episode_id)
    today = today or timezone.localdate()
    with transaction.atomic():
        episode = corrections.apply_correction(
            actor=actor,
            record_type="episodes",
            object_id=episode_id,
            expected_version=expected_version,
            changes=changes,
            reason=reason,
        )
        schedule = FollowUpSchedule.objects.filter(episode=episode).first()
        if schedule is None or schedule.treatment_date == episode.start_date:
            return EpisodeCorrection(episode)
        before = {p.key: p for p in schedule.time_points.all()}
        reschedule(episode, episode.start_date, actor, reason, today)
        moved = tuple(
            MovedTimePoint(
                key=point.key,
                label=point.label,
                old_opens=before[point.key].opens,
                old_closes=before[point.key].closes,
                new_opens=point.opens,
                new_closes=point.closes,
                kept=point.status == TimePointStatus.COMPLETED,
            )
            for point in schedule.time_points.order_by("months")
            if point.key in before
        )
        return EpisodeCorrection(episode, moved)


def cancel_follow_up(episode: TreatmentEpisode, actor: Actor, reason: str, now: dt.datetime) -> int:
    """Stop all follow-up of a voided episode; return how many time points were cancelled.

    Not-completed time points become ``cancelled`` (the worker opens, reminds and escalates only
    pending and open ones), unsent reminders are cancelled, unused links expire now, open
    call-list entries are resolved. Completed answers stay. One audit row, in the caller's
    transaction.
    """
    schedule = FollowUpSchedule.objects.select_for_update().filter(episode=episode).first()
    if schedule is None:
        return 0
    points = list(
        schedule.time_points.select_for_update().exclude(
            status__in=[TimePointStatus.COMPLETED, TimePointStatus.CANCELLED]
        )
    )
    old = {point.key: point.status for point in points}
    ids = [point.pk for point in points]
    FollowUpTimePoint.objects.filter(pk__in=ids).update(status=TimePointStatus.CANCELLED)
    Reminder.objects.filter(time_point_id__in=ids, status=ReminderStatus.SCHEDULED).update(
        status=ReminderStatus.CANCELLED
    )
    PatientLink.objects.filter(time_point_id__in=ids, used_at__isnull=True).update(expires_at=now)
    CallListEntry.objects.filter(time_point_id__in=ids, resolved_at__isnull=True).update(
        resolved_at=now, resolution="Treatment episode voided (entered in error)"
    )
    record_audit(
        actor=actor,
        action="update",
        object_type="followup_schedule",
        object_id=schedule.pk,
        clinic_id=episode.patient.clinic_id,
        patient_id=episode.patient_id,
        old_values=old,
        new_values=dict.fromkeys(old, TimePointStatus.CANCELLED.value),
        reason=reason,
    )
    return len(points)


def void_episode_with_follow_up(
    *,
    actor: Actor,
    episode_id: int,
    expected_version: int,
    reason: str,
    now: dt.datetime | None = None,
) -> tuple[TreatmentEpisode, int]:
    """Void a treatment episode entered in error and stop its follow-up (no more invitations or
    reminders), in one transaction; returns the episode and the number of cancelled time
    points. Refusals as :func:`vertebra.registry.corrections.void_record`."""
    from vertebra.registry import corrections

    corrections.get_for_correction(actor=actor, record_type="episodes", object_id=episode_id)
    with transaction.atomic():
        episode = corrections.apply_void(
            actor=actor,
            record_type="episodes",
            object_id=episode_id,
            expected_version=expected_version,
            reason=reason,
        )
        cancelled = cancel_follow_up(episode, actor, reason.strip(), now or timezone.now())
    return episode, cancelled


# --------------------------------------------------------------------------------------------
# Answers collected elsewhere (FHIR import)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedAnswers:
    """One instrument's answers collected outside the portal: the version the source used,
    the answers (item id -> stored value) and when they were given (aware)."""

    instrument_version: str
    answers: Mapping[str, Any]
    authored: dt.datetime
    #: PSFS only: the episode's activities as the source named them (None: not given).
    psfs_names: Sequence[str] | None = None


def _score_imported(
    answers_by_instrument: Mapping[str, ImportedAnswers], now: dt.datetime
) -> dict[str, Any]:
    """Score each instrument with the core scorers; SubmissionInvalid names every problem
    (unknown instrument, another instrument version, invalid answers, a date in the future)."""
    errors: dict[str, str] = {}
    results: dict[str, Any] = {}
    for instrument_id, given in answers_by_instrument.items():
        try:
            version = get_definition(instrument_id).version
        except UnknownInstrumentError:
            errors[instrument_id] = f"{instrument_id}: not an instrument of this registry"
            continue
        if given.instrument_version != version:
            errors[instrument_id] = (
                f"{instrument_id}: answers are of version {given.instrument_version}, this "
                f"registry scores version {version}"
            )
        elif given.authored > now:
            errors[instrument_id] = f"{instrument_id}: answered in the future ({given.authored})"
        else:
            try:
                results[instrument_id] = score(instrument_id, dict(given.answers))
            except InvalidAnswerError as exc:
                errors[instrument_id] = str(exc)
    if errors:
        raise SubmissionInvalid(errors)
    return results


@audited_transaction
def record_imported_answers(
    *,
    actor: Actor,
    time_point_id: int,
    answers_by_instrument: Mapping[str, ImportedAnswers],
    source: str,
    now: dt.datetime,
) -> Submission:
    """Store answers collected elsewhere (another registry, via FHIR import) at a time point.

    Staff who may schedule the episode's follow-up (``episode.start``) at the patient's clinic
    (NotFound otherwise). Every instrument is scored by the core scorers, in this registry's
    instrument version (SubmissionInvalid otherwise; nothing stored); a time point that already
    has answers is refused (AlreadyCompleted). In one transaction: one Submission, one
    QuestionnaireResponse per instrument (``submitted_at`` = when answered), the time point
    completed at the latest answer, its reminders cancelled and call-list entry resolved, and one
    audit row naming ``source``. No tickler escalation: an imported "yes" is history the source
    registry already handled, not a new report. PSFS answers that come with the activity names
    store them for the episode as the portal does (first time only, with their audit record;
    named when answered) and must rate named activities only (SubmissionInvalid otherwise).
    """
    scored = _score_imported(answers_by_instrument, now)
    patient_id = (
        FollowUpTimePoint.objects.filter(pk=time_point_id)
        .values_list("patient_id", flat=True)
        .first()
    )
    if patient_id is not None:
        lock_patient(patient_id)  # lock order: patient first
    point = (
        FollowUpTimePoint.objects.select_for_update()
        .select_related("schedule__episode__patient")
        .filter(pk=time_point_id)
        .first()
    )
    if point is None:
        raise NotFound("followup_timepoint", time_point_id)
    _check_staff(actor, point.schedule.episode)
    if point.status == TimePointStatus.COMPLETED:
        raise AlreadyCompleted()
    psfs = answers_by_instrument.get("psfs")
    if psfs is not None and psfs.psfs_names and "psfs" in scored:
        # as the portal: stored for the episode the first time (named when answered), then
        # each rated activity must have a name
        _settle_psfs_names(point, psfs.answers, psfs.psfs_names, actor, now, psfs.authored)
    submission, _ = _write_submission(
        point,
        actor=actor,
        key=f"import-{secrets.token_hex(16)}",
        scored=scored,
        answers={i: (given.answers, given.authored) for i, given in answers_by_instrument.items()},
        submitted_at=max(given.authored for given in answers_by_instrument.values()),
        now=now,
        source=source,
    )
    return submission
