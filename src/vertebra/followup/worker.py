"""The follow-up worker: opens windows, sends invitations and reminders, fills the call list.

The :class:`~vertebra.followup.models.Reminder` table is the durable queue; no broker is needed.
One pass (:func:`run_once`) given ``now``:

1. **close**: windows that ended before today become ``missed``; the patient goes on the call
   list (``window_closed``) and unsent reminders are cancelled.
2. **open**: windows that include today become ``open`` (one audit row each), and the reminder ladder
   (settings.FOLLOWUP_REMINDER_LADDER, days after opening; ``day0`` is the invitation) is queued
   with ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (time point, step), so queuing is
   idempotent and a step can exist only once. Steps that would fall after the close are skipped.
3. **send**: each due reminder is *claimed* with a conditional
   ``UPDATE ... SET status='sending' WHERE id=... AND status='scheduled'`` and sent only when
   that changed exactly one row. Two workers racing for a row: one gets rowcount 1, the other 0.
   A completed questionnaire cancels its reminders in the submission's transaction, so the
   claim of a cancelled reminder changes no row. Delivery is at most once: a worker that dies
   between claim and "sent" leaves the row ``sending``; it is reported, never resent.
4. **escalate**: open windows whose last reminder went out ``FOLLOWUP_CALL_AFTER_LAST_DAYS``
   ago without an answer go on the call list (``no_response``).

Before these, **heal**: an episode found without a follow-up schedule gets one (logged and
audited, :func:`heal_schedules`). After them, every committed audit row not sealed yet is
sealed (the sealer's backstop, ADR 0021: rows the sealer after their commit did not reach),
and, when due (``AUDIT_VERIFY_EVERY_HOURS``), the audit trail is verified, checkpointed and, if it is not intact, the registry admins alerted
(:mod:`vertebra.registry.auditjob`). Last, queued FHIR Bulk Data exports are run
(:func:`vertebra.fhirbulk.jobs.run_pending`). Beside the passes, :func:`run_forever` keeps
the analysis snapshot current (:func:`refresh_snapshot`, every ``SNAPSHOT_REFRESH_SECONDS``).
Consent: invitations, reminders and calls go only to patients holding an active
registry-participation consent today (:func:`consented`). A reminder of a patient without one
stays queued (a consent signed while the window is open lets it go out); one claimed at the
moment a consent is withdrawn is cancelled, never sent. Withdrawal through
:func:`vertebra.followup.services.withdraw_consent_and_stop_invitations` also cancels the
queued ones in its own transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.template.loader import render_to_string
from django.utils import timezone

from vertebra.fhirbulk.jobs import run_pending as run_bulk_exports
from vertebra.followup.counts import compact as compact_counts
from vertebra.followup.models import (
    CallListEntry,
    FollowUpTimePoint,
    Reminder,
    ReminderStatus,
    TimePointStatus,
)
from vertebra.followup.services import WORKER_ACTOR, backfill_schedules, issue_link
from vertebra.registry.audit import deferred_audit, record_audit, seal_pending
from vertebra.registry.auditjob import run_scheduled_verification
from vertebra.registry.counts import compact_patient_counts
from vertebra.registry.models import Consent, ConsentKind
from vertebra.registry.pathway import active_consent
from vertebra.registry.services import lock_patient

logger = logging.getLogger(__name__)

DEFAULT_LADDER = (0, 3, 7)
#: Attempts before a reminder whose e-mail could not be handed to the mail server is "failed".
MAX_ATTEMPTS = 3


@dataclass
class RunReport:
    """What one pass did (counts), for logs and tests."""

    closed: int = 0
    opened: int = 0
    queued: int = 0
    sent: int = 0
    failed: int = 0
    called: int = 0
    healed: int = 0
    audit_verified: bool = False
    sealed: int = 0  # audit rows sealed by the backstop (ADR 0021)
    exports: int = 0  # FHIR Bulk Data export jobs run
    sent_ids: list[int] = field(default_factory=list)


def ladder() -> tuple[int, ...]:
    """The reminder ladder in days after the window opens, sorted, without duplicates."""
    days = getattr(settings, "FOLLOWUP_REMINDER_LADDER", DEFAULT_LADDER)
    steps = tuple(sorted({int(d) for d in days}))
    if not steps or steps[0] < 0:
        raise ValueError("FOLLOWUP_REMINDER_LADDER must list days >= 0, e.g. [0, 3, 7]")
    return steps


def _midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(
        dt.datetime.combine(day, dt.time.min), timezone.get_default_timezone()
    )


def worker_id() -> str:
    """Host, process and thread: who claimed a reminder (for the operator, not for logic)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:80]


# --- 0. heal ----------------------------------------------------------------------------------


def heal_schedules(now: dt.datetime) -> int:
    """Give every treatment episode without a follow-up schedule its schedule; return how many.

    An episode and its schedule commit together, so this finds only episodes written some
    other way (an older version, SQL, a restore). Each is logged (WARNING) and audited
    (``create`` followup_schedule by the worker, reason :data:`HEALED_REASON`).
    """
    healed = backfill_schedules(timezone.localdate(now))
    for episode_id in healed:
        logger.warning(
            "follow-up worker: episode %s had no follow-up schedule; created it (healed)",
            episode_id,
        )
    return len(healed)


# --- 1. close ---------------------------------------------------------------------------------


def close_windows(now: dt.datetime) -> int:
    """Mark windows that ended before today ``missed`` and put them on the call list."""
    today = timezone.localdate(now)
    count = 0
    ids = FollowUpTimePoint.objects.filter(
        status__in=[TimePointStatus.PENDING, TimePointStatus.OPEN],
        closes__lt=today,
        schedule__episode__voided_at__isnull=True,  # a voided episode is no one's call
    ).values_list("pk", "patient_id")
    for point_id, patient_id in list(ids):
        with transaction.atomic():
            lock_patient(patient_id)  # lock order: patient first, then the time point
            # Conditional update: a patient who submits in the same instant keeps "completed".
            changed = FollowUpTimePoint.objects.filter(
                pk=point_id, status__in=[TimePointStatus.PENDING, TimePointStatus.OPEN]
            ).update(status=TimePointStatus.MISSED)
            if not changed:
                continue
            point = FollowUpTimePoint.objects.select_related("patient").get(pk=point_id)
            Reminder.objects.filter(time_point=point, status=ReminderStatus.SCHEDULED).update(
                status=ReminderStatus.CANCELLED
            )
            _call(point, CallListEntry.Reason.WINDOW_CLOSED, now)
            record_audit(
                actor=WORKER_ACTOR,
                action="update",
                object_type="followup_time_point",
                object_id=point.pk,
                clinic_id=point.patient.clinic_id,
                patient_id=point.patient_id,
                old_values={"status": "open"},
                new_values={"status": TimePointStatus.MISSED},
                reason="window closed without an answer",
                occurred_at=now,
            )
            count += 1
    return count


def consented(today: dt.date) -> Exists:
    """Condition on time points: the patient holds an active registry consent on ``today``."""
    return Exists(
        Consent.objects.filter(
            patient_id=OuterRef("patient_id"), kind=ConsentKind.REGISTRY, signed_on__lte=today
        ).filter(Q(withdrawn_on__isnull=True) | Q(withdrawn_on__gt=today))
    )


def _call(point: FollowUpTimePoint, reason: str, now: dt.datetime) -> bool:
    """Put ``point`` on the call list unless it is already there or the patient holds no
    active registry consent (a call is an invitation too); True if added."""
    if not active_consent(point.patient_id, ConsentKind.REGISTRY, timezone.localdate(now)):
        return False
    _, created = CallListEntry.objects.get_or_create(
        time_point=point, defaults={"reason": reason, "created_at": now}
    )
    return created


# --- 2. open ----------------------------------------------------------------------------------


#: Windows opened per transaction (each with its audit row, inserted in one statement).
OPEN_BATCH = 5_000


def _open_due(today: dt.date, now: dt.datetime) -> int:
    """Turn pending time points whose window includes ``today`` ``open``, at most
    :data:`OPEN_BATCH` per transaction, each with its audit row in that transaction (a status is
    patient data, ADR 0004; the analysis snapshot re-reads the patients the rows name, ADR 0022
    §9); return how many. ``UPDATE ... RETURNING``: two workers never open (and audit) the
    same window twice."""
    table = FollowUpTimePoint._meta.db_table
    pending, open_ = TimePointStatus.PENDING.value, TimePointStatus.OPEN.value
    opened = 0
    while True:
        with transaction.atomic(), deferred_audit():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET status = %s WHERE status = %s AND id IN (SELECT id FROM"
                    f" {table} WHERE status = %s AND opens <= %s AND closes >= %s ORDER BY id"
                    " LIMIT %s) RETURNING id, patient_id, clinic_id",
                    [open_, pending, pending, today, today, OPEN_BATCH],
                )
                rows = cursor.fetchall()
            for point_id, patient_id, clinic_id in rows:
                record_audit(
                    actor=WORKER_ACTOR,
                    action="update",
                    object_type="followup_time_point",
                    object_id=point_id,
                    clinic_id=clinic_id,
                    patient_id=patient_id,
                    old_values={"status": pending},
                    new_values={"status": open_},
                    reason="window opened",
                    occurred_at=now,
                )
        opened += len(rows)
        if len(rows) < OPEN_BATCH:
            return opened


def open_windows(now: dt.datetime) -> tuple[int, int]:
    """Open windows that include today (audited, :func:`_open_due`) and queue their ladders;
    return (opened, queued)."""
    today = timezone.localdate(now)
    opened = _open_due(today, now)
    queued = 0
    steps = ladder()
    open_points = FollowUpTimePoint.objects.filter(
        status=TimePointStatus.OPEN, opens__lte=today, closes__gte=today
    ).exclude(reminders__step_index=len(steps) - 1)  # fully queued ones need nothing
    for point in open_points:
        rows = [
            Reminder(
                time_point=point,
                step=f"day{days}",
                step_index=index,
                scheduled_for=_midnight(point.opens + dt.timedelta(days=days)),
            )
            for index, days in enumerate(steps)
            if point.opens + dt.timedelta(days=days) <= point.closes
        ]
        before = Reminder.objects.filter(time_point=point).count()
        Reminder.objects.bulk_create(rows, ignore_conflicts=True)
        queued += Reminder.objects.filter(time_point=point).count() - before
    return opened, queued


# --- 3. send ----------------------------------------------------------------------------------


def due_reminders(now: dt.datetime) -> list[int]:
    """Ids of reminders due at ``now`` for open windows, oldest first."""
    today = timezone.localdate(now)
    consenting = FollowUpTimePoint.objects.filter(consented(today)).values("pk")
    return list(
        Reminder.objects.filter(
            status=ReminderStatus.SCHEDULED,
            scheduled_for__lte=now,
            time_point__status=TimePointStatus.OPEN,
            time_point__closes__gte=today,
            time_point__in=consenting,
            # Never a reminder about an episode entered in error.
            time_point__schedule__episode__voided_at__isnull=True,
        )
        .order_by("scheduled_for", "pk")
        .values_list("pk", flat=True)
    )


def claim(reminder_id: int, now: dt.datetime, who: str) -> bool:
    """Claim one reminder for sending; True for exactly one caller, ever.

    ``UPDATE reminder SET status='sending' WHERE id=%s AND status='scheduled'``: the database
    decides the race. On PostgreSQL a concurrent claimer blocks on the row lock and then
    re-checks the condition against the committed row; on SQLite every write transaction is
    IMMEDIATE, so claims are serialised. Either way exactly one UPDATE changes the row.
    The condition is on the reminder row only, on purpose: a join to the time point would be
    re-checked by PostgreSQL against a stale snapshot of the joined row. Completion and window
    close cancel the reminder rows themselves, so this condition covers them.
    """
    with transaction.atomic():
        changed = Reminder.objects.filter(pk=reminder_id, status=ReminderStatus.SCHEDULED).update(
            status=ReminderStatus.SENDING, claimed_at=now, claimed_by=who
        )
    return changed == 1


def send_reminder(reminder_id: int, now: dt.datetime) -> bool:
    """Send a claimed reminder with a fresh link; mark it sent (True) or back off / fail."""
    reminder = Reminder.objects.select_related("time_point__patient").get(pk=reminder_id)
    point = reminder.time_point
    patient = point.patient
    if point.status != TimePointStatus.OPEN or timezone.localdate(now) > point.closes:
        _mark(reminder, ReminderStatus.CANCELLED, now, "the window is no longer open")
        return False
    if not active_consent(patient.pk, ConsentKind.REGISTRY, timezone.localdate(now)):
        # Withdrawn (or never given) between listing and claiming: never send.
        _mark(reminder, ReminderStatus.CANCELLED, now, "no active registry-participation consent")
        return False
    if not patient.email:
        _mark(reminder, ReminderStatus.FAILED, now, "the patient has no e-mail address")
        with transaction.atomic():
            _call(point, CallListEntry.Reason.NO_RESPONSE, now)
        return False
    token = issue_link(point, now)
    try:
        message = build_message(reminder, token)
        message.send(fail_silently=False)
    except Exception as exc:  # SMTP and socket errors: the mail server did not take it
        retry = reminder.attempts + 1 < MAX_ATTEMPTS
        _mark(
            reminder,
            ReminderStatus.SCHEDULED if retry else ReminderStatus.FAILED,
            now,
            f"{type(exc).__name__}: {exc}"[:300],
        )
        logger.warning("follow-up reminder %s not sent: %s", reminder.pk, type(exc).__name__)
        return False
    _mark(reminder, ReminderStatus.SENT, now, "")
    logger.info("follow-up reminder %s (%s) sent", reminder.pk, reminder.step)
    return True


def _mark(reminder: Reminder, status: str, now: dt.datetime, error: str) -> None:
    with transaction.atomic():
        Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENDING).update(
            status=status,
            sent_at=now if status == ReminderStatus.SENT else None,
            attempts=reminder.attempts + 1,
            last_error=error,
        )
        if status == ReminderStatus.SENT:
            record_audit(
                actor=WORKER_ACTOR,
                action="send_reminder",
                object_type="followup_reminder",
                object_id=reminder.pk,
                patient_id=reminder.time_point.patient_id,
                clinic_id=reminder.time_point.patient.clinic_id,
                new_values={"time_point": reminder.time_point.key, "step": reminder.step},
                occurred_at=now,
            )


def portal_base_url() -> str:
    """Absolute base of links in e-mails (settings.FOLLOWUP_PORTAL_BASE_URL)."""
    return str(getattr(settings, "FOLLOWUP_PORTAL_BASE_URL", "http://localhost:8000")).rstrip("/")


def build_message(reminder: Reminder, token: str) -> EmailMultiAlternatives:
    """The invitation (step 0) or reminder e-mail, plain text with an HTML alternative.

    The token travels in the query string: access logs record the path only (see
    ``vertebra.cli.server``), and the landing page swaps it for a session at once.
    """
    point = reminder.time_point
    context = {
        "link": f"{portal_base_url()}/p/open/?t={token}",
        "label": point.label,
        "closes": point.closes,
        "is_invitation": reminder.step_index == 0,
        "given_name": point.patient.given_name,
    }
    kind = "invitation" if reminder.step_index == 0 else "reminder"
    subject = (
        f"Your {point.label} back-pain questionnaire"
        if kind == "invitation"
        else f"Reminder: your {point.label} back-pain questionnaire"
    )
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"followup/email/{kind}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[point.patient.email],
    )
    message.attach_alternative(
        render_to_string(f"followup/email/{kind}.html", context), "text/html"
    )
    return message


def send_due(now: dt.datetime, who: str | None = None) -> tuple[int, int, list[int]]:
    """Claim and send every due reminder; return (sent, failed, ids sent by this caller)."""
    who = who or worker_id()
    sent: list[int] = []
    failed = 0
    for reminder_id in due_reminders(now):
        if not claim(reminder_id, now, who):
            continue  # another worker has it, or it was cancelled meanwhile
        if send_reminder(reminder_id, now):
            sent.append(reminder_id)
        else:
            failed += 1
    return len(sent), failed, sent


# --- 4. escalate ------------------------------------------------------------------------------


def escalate_silent(now: dt.datetime) -> int:
    """Call-list patients whose last ladder step went out N days ago without an answer."""
    days = int(getattr(settings, "FOLLOWUP_CALL_AFTER_LAST_DAYS", 3))
    cutoff = now - dt.timedelta(days=days)
    last_index = len(ladder()) - 1
    candidates = (
        FollowUpTimePoint.objects.filter(status=TimePointStatus.OPEN, call_list_entry__isnull=True)
        .annotate(last_sent=Max("reminders__sent_at"), top=Max("reminders__step_index"))
        .filter(last_sent__lte=cutoff)
    )
    added = 0
    for point in candidates:
        final_sent = point.reminders.filter(status=ReminderStatus.SENT).aggregate(
            m=Max("step_index")
        )["m"]
        queued = point.reminders.aggregate(m=Max("step_index"))["m"]
        if final_sent is None or final_sent < min(queued or 0, last_index):
            continue  # more reminders to come
        with transaction.atomic():
            added += _call(point, CallListEntry.Reason.NO_RESPONSE, now)
    return added


# --- the pass and the loop --------------------------------------------------------------------


def run_once(now: dt.datetime | None = None, who: str | None = None) -> RunReport:
    """One full pass at ``now`` (default: the clock). Safe to run in several processes at once."""
    now = now or timezone.now()
    if timezone.is_naive(now):
        raise ValueError("now must be timezone-aware")
    report = RunReport()
    report.healed = heal_schedules(now)
    report.closed = close_windows(now)
    report.opened, report.queued = open_windows(now)
    report.sent, report.failed, report.sent_ids = send_due(now, who)
    report.called = escalate_silent(now) + report.closed
    compact_counts()  # fold the count deltas the triggers wrote (ADR 0023 §10)
    compact_patient_counts()
    report.sealed = seal_pending(full=True)  # backstop: every unsealed committed row
    audit = run_scheduled_verification(now)  # at most every AUDIT_VERIFY_EVERY_HOURS
    report.audit_verified = audit is not None
    # FHIR Bulk Data $export jobs queued by the /fhir/ kick-off endpoints (vertebra.fhirbulk).
    report.exports = run_bulk_exports(now, who or worker_id())
    return report


def refresh_snapshot() -> str:
    """Keep the analysis snapshot current (ADR 0022): check its watermark and rebuild it only
    when the registry changed. Returns the outcome (``built``, ``unchanged``, ``busy`` or
    ``failed``); a failure is logged and the pages keep the previous snapshot (labelled out of
    date once it is older than the stated delay)."""
    from vertebra.outcomes import snapshot

    try:
        result = snapshot.refresh()
    except Exception:
        logger.exception("analysis snapshot refresh failed; pages keep the previous one")
        return "failed"
    if result.outcome == "built":
        logger.info("analysis snapshot rebuilt in %.1f s", result.seconds)
    return result.outcome


def serve_snapshot_requests() -> int:
    """Build the filters pages asked the worker for since the last pass
    (:func:`vertebra.outcomes.snapshot.serve_waiting`); a failure is logged, never raised
    (the requests stay and the next poll or refresh tries again). Returns how many."""
    from vertebra.outcomes import snapshot

    try:
        return snapshot.serve_waiting()
    except Exception:
        logger.exception("building the requested snapshot results failed; retrying later")
        return 0


def run_forever(
    interval: float, stop: threading.Event | None = None, *, snapshot_every: float | None = None
) -> None:
    """Run :func:`run_once` every ``interval`` seconds and :func:`refresh_snapshot` every
    ``snapshot_every`` seconds (default ``SNAPSHOT_REFRESH_SECONDS``, the delay the pages
    state) until ``stop`` is set (or Ctrl+C); in between, every
    ``SNAPSHOT_REQUEST_POLL_SECONDS``, build the filters pages asked for
    (:func:`serve_snapshot_requests`), so a page waits for its build, not for the next refresh.

    A failing pass is logged and retried at the next tick: the queue lives in the database,
    so nothing is lost by a crash or restart.
    """
    stop = stop or threading.Event()
    snapshot_every = snapshot_every or float(settings.SNAPSHOT_REFRESH_SECONDS)
    poll = float(settings.SNAPSHOT_REQUEST_POLL_SECONDS)
    next_pass = next_snapshot = next_poll = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= next_snapshot:
            next_snapshot = time.monotonic() + snapshot_every
            refresh_snapshot()  # serves the waiting requests itself
            next_poll = time.monotonic() + poll
        elif time.monotonic() >= next_poll:
            serve_snapshot_requests()
            next_poll = time.monotonic() + poll
        if time.monotonic() >= next_pass:
            next_pass = time.monotonic() + interval
            try:
                report = run_once()
                busy = report.sent or report.opened or report.closed or report.failed
                if busy or report.healed or report.audit_verified or report.exports:
                    logger.info("follow-up worker pass: %s", summary(report))
            except Exception:
                logger.exception("follow-up worker pass failed; retrying in %s s", interval)
        stop.wait(max(0.05, min(next_pass, next_snapshot, next_poll) - time.monotonic()))


def summary(report: RunReport) -> str:
    """One line of counts for logs and the CLI."""
    fields: Sequence[str] = ("opened", "queued", "sent", "failed", "closed", "called", "healed")
    line = ", ".join(f"{name}={getattr(report, name)}" for name in fields)
    line += f", fhir exports={report.exports}" if report.exports else ""
    return line + (", audit trail verified" if report.audit_verified else "")
