"""Scheduled verification of the audit trail, and the alert when it is not intact.

Contracts
---------
* :func:`run_scheduled_verification` verifies the chain against the checkpoint file at most
  every ``settings.AUDIT_VERIFY_EVERY_HOURS`` (default 24; 0 turns it off), records the
  ``verify`` audit row, and writes a signed checkpoint of that row (``verified`` true only if
  the chain was intact). The worker calls it on every pass; the last verified checkpoint in
  the file says when it last ran, so several workers do not repeat it.
* When the chain is not intact, :func:`raise_audit_alert` stores an :class:`AuditAlert`
  (audited) that registry admins see, e-mails every active registry admin with an address,
  and logs an ERROR line. The e-mail names rows and problem kinds only, never patient data.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from vertebra.core.labels import label
from vertebra.registry.audit import (
    ChainReport,
    record_audit,
    retrying,
    system_actor,
    verify_and_record,
    write_checkpoint,
)
from vertebra.registry.auditseal import keyring, read_checkpoints
from vertebra.registry.models import AuditAlert, AuditEvent, Role

logger = logging.getLogger("vertebra.audit")

WORKER_NAME = "audit-worker"


def latest_verification() -> AuditEvent | None:
    """The newest ``verify`` / ``audit_chain`` audit row (any source), for the registry admin's
    page: ``occurred_at``, ``actor_username`` and ``new_values`` (``intact``, ``rows``,
    ``first_problem``, ``problems``, ...; see :meth:`ChainReport.summary`)."""
    return (
        AuditEvent.objects.filter(action="verify", object_type="audit_chain")
        .order_by("-id")
        .first()
    )


def open_alerts(limit: int = 20) -> list[AuditAlert]:
    """The newest stored alerts (failed verifications), newest first."""
    return list(AuditAlert.objects.order_by("-raised_at")[:limit])


def last_verified_at() -> dt.datetime | None:
    """When the newest trustworthy checkpoint with ``verified`` set was written, if any."""
    ring = keyring()
    times = [
        checkpoint.when
        for checkpoint in read_checkpoints().checkpoints
        if checkpoint.verified and checkpoint.signature_ok(ring)
    ]
    return max(times, default=None)


def verification_due(now: dt.datetime) -> bool:
    """True when scheduled verification is on and the last one is older than the interval."""
    hours = int(getattr(settings, "AUDIT_VERIFY_EVERY_HOURS", 24))
    if hours <= 0:
        return False
    last = last_verified_at()
    return last is None or last <= now - dt.timedelta(hours=hours)


def run_scheduled_verification(
    now: dt.datetime | None = None, *, force: bool = False
) -> ChainReport | None:
    """Verify, record, checkpoint and (if needed) alert, when due (or ``force``); else None."""
    now = now or timezone.now()
    if not force and not verification_due(now):
        return None
    actor = system_actor(WORKER_NAME)
    report, row = verify_and_record(actor=actor, source="worker")
    write_checkpoint(actor=actor, head=row, verified=report.intact)
    if not report.intact:
        raise_audit_alert(report, row, source="worker")
    return report


def _admin_addresses() -> list[str]:
    users = (
        get_user_model()
        .objects.filter(is_active=True, memberships__role=Role.REGISTRY_ADMIN)
        .exclude(email="")
    )
    return sorted(set(users.values_list("email", flat=True)))


def raise_audit_alert(report: ChainReport, verify_row: AuditEvent, *, source: str) -> AuditAlert:
    """Store the alert (with its audit row), e-mail the registry admins, log an ERROR."""
    first = report.problems[0]
    lines = [problem.message for problem in report.problems[:20]]
    more = len(report.problems) - len(lines)
    message = "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))
    addresses = _admin_addresses()
    sent = 0
    if addresses:
        try:
            sent = send_mail(
                subject=f"Vertebra: the audit trail failed verification (row {first.seq}: "
                f"{label('audit_problem', first.kind)})",
                message=(
                    f"The scheduled verification of the audit trail found {len(report.problems)} "
                    f"problem(s). The first is at row {first.seq}: "
                    f"{label('audit_problem', first.kind)} ({first.kind}).\n\n{message}\n\n"
                    "Do not change the database. Keep the checkpoint file and the logs, and "
                    "follow the incident steps in docs/adr/0008-audit-trail-mac-checkpoints.md."
                ),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=addresses,
                fail_silently=False,
            )
            sent = len(addresses) if sent else 0
        except Exception as exc:  # SMTP and socket errors: the stored alert still stands
            logger.error("audit alert e-mail not sent: %s", type(exc).__name__)
    actor = system_actor(WORKER_NAME if source == "worker" else f"audit-{source}")

    def store() -> AuditAlert:
        with transaction.atomic():
            alert = AuditAlert.objects.create(
                raised_at=timezone.now(),
                source=source,
                first_seq=first.seq,
                first_kind=first.kind,
                problem_count=len(report.problems),
                message=message,
                verify_seq=verify_row.pk,
                emailed_to=sent,
            )
            record_audit(
                actor=actor,
                action="create",
                object_type="audit_alert",
                object_id=alert.pk,
                new_values={
                    "first_seq": first.seq,
                    "first_kind": first.kind,
                    "problem_count": len(report.problems),
                    "verify_seq": verify_row.pk,
                    "emailed_to": sent,
                },
            )
            return alert

    alert = retrying(store, what="raise_audit_alert")
    logger.error(
        "AUDIT TRAIL ALERT %s: %d problem(s), first at row %d (%s); %d admin(s) e-mailed",
        alert.pk,
        len(report.problems),
        first.seq,
        first.kind,
        sent,
    )
    return alert
