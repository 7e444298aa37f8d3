"""Follow-up data model: schedules, time points, patient links, responses, reminders, call list.

Contracts
---------
* Models hold data and invariants only; every write goes through :mod:`vertebra.followup.services`
  or the worker (:mod:`vertebra.followup.worker`), which write the audit rows.
* The guarantees that matter are database constraints, so they hold under concurrency:

  - one :class:`Submission` per time point (``OneToOne``) and per idempotency key (``unique``):
    two tabs, a double click or a retry can never store two answer sets;
  - one :class:`QuestionnaireResponse` per (time point, instrument);
  - one :class:`Reminder` per (time point, step): a step can never be queued, hence sent, twice;
  - one :class:`CallListEntry` per time point.
* A :class:`PatientLink` stores only the SHA-256 of its token; the raw token exists only in the
  e-mail that carries it.
* Portal URLs never carry sequential ids: time points are addressed by ``public_id`` (UUID4).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from vertebra.registry.models import AdverseEvent, Correctable, Patient, TreatmentEpisode


class FollowUpSchedule(models.Model):
    """The follow-up schedule of one treatment episode, built from a versioned protocol."""

    episode = models.OneToOneField(
        TreatmentEpisode, on_delete=models.PROTECT, related_name="followup_schedule"
    )
    protocol_id = models.CharField(max_length=60)
    protocol_version = models.CharField(max_length=40)
    treatment_date = models.DateField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Schedule {self.pk} ({self.protocol_id} {self.protocol_version})"


class TimePointStatus(models.TextChoices):
    PENDING = "pending", "Not open yet"
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    MISSED = "missed", "Missed"
    # The episode was voided (entered in error): nothing more is asked or reminded.
    CANCELLED = "cancelled", "Cancelled"


class FollowUpTimePoint(models.Model):
    """One time point of a schedule, with its window (``opens``..``closes``, inclusive)."""

    # No index of its own: the (schedule, key) unique constraint's index serves schedule lookups.
    schedule = models.ForeignKey(
        FollowUpSchedule, on_delete=models.PROTECT, related_name="time_points", db_index=False
    )
    # Denormalised from schedule.episode.patient: every portal and clinic query scopes by it.
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="time_points")
    # Denormalised from patient.clinic (ADR 0023 §12): the homes read a clinic's open time
    # points from the partial indexes below instead of joining every open time point of the
    # registry to its patient (0.1-0.3 s per query at 1,000,000 patients). Right by
    # construction: a patient's clinic never changes (the registry's rule, relied on by
    # TimePointCount too), and every writer (services, the cohort loader's COPY, the FHIR
    # importer's bulk path) sets it from the patient. Nullable in SQLite's table only
    # (followup 0009: a NOT NULL there would need a table remake, which drops the count
    # triggers of 0008); NOT NULL in PostgreSQL. No index of its own: the partial indexes lead
    # with it (a clinic is never deleted while it has patients).
    clinic = models.ForeignKey(
        "registry.Clinic", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    key = models.CharField(max_length=40)  # protocol time point id, e.g. "month_3"
    label = models.CharField(max_length=80)
    months = models.FloatField()
    target = models.DateField()
    opens = models.DateField()
    closes = models.DateField()
    instruments = models.JSONField()  # instrument ids asked at this time point, in order
    status = models.CharField(
        max_length=12, choices=TimePointStatus.choices, default=TimePointStatus.PENDING
    )
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["schedule_id", "opens"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "key"], name="followup_tp_unique_key"),
            models.CheckConstraint(
                name="followup_tp_window_in_order",
                condition=Q(opens__lte=models.F("target")) & Q(target__lte=models.F("closes")),
            ),
            models.CheckConstraint(
                name="followup_tp_completed_iff_completed_at",
                condition=Q(status="completed", completed_at__isnull=False)
                | (~Q(status="completed") & Q(completed_at__isnull=True)),
            ),
        ]
        indexes = [
            models.Index(fields=["status", "opens"], name="followup_tp_status_opens"),
            # The worklists' open time points by target date (a small part of the table: the
            # partial index stays small and is walked in order, ADR 0023).
            models.Index(
                fields=["target", "id"], condition=Q(status="open"), name="followup_tp_open_target"
            ),
            # One clinic's (or a few clinics') open time points in target order, with the
            # patient for the "patients with something due" count (index-only on PostgreSQL).
            models.Index(
                fields=["clinic", "target", "id"],
                include=["patient"],
                condition=Q(status="open"),
                name="followup_tp_open_clinic",
            ),
        ]

    def __str__(self) -> str:
        return f"Time point {self.pk} ({self.key})"


class TimePointCount(models.Model):
    """How many time points of a clinic's patients are in a status: a running sum of signed
    deltas, written by database triggers on ``followup_followuptimepoint`` (migration
    ``followup 0008``), never by Python, so every path that writes time points (services,
    worker, loader's COPY, importer, corrections) keeps it right in the same transaction.

    Rows are only ever inserted (+n / -n), so concurrent submissions never wait on one
    another's counter row; :func:`vertebra.followup.counts.compact` (the worker, each pass)
    folds them into one row per (clinic, status). The sum for a clinic and status is exact at
    any moment; it assumes, as the registry does, that a patient's clinic never changes.
    """

    clinic = models.ForeignKey(
        "registry.Clinic", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    status = models.CharField(max_length=12, choices=TimePointStatus.choices)
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["clinic", "status"], name="followup_tpcount_clinic")]

    def __str__(self) -> str:
        return f"{self.status} {self.n:+d} at clinic {self.clinic_id}"


class LinkRetirement(models.TextChoices):
    REPLACED = "replaced", "Replaced by a newer link"
    REVOKED = "revoked", "Withdrawn by the care team"


class PatientLink(models.Model):
    """A secure link to one time point's questionnaire. Only the token's SHA-256 is stored.

    At most one *live* link (not used, not retired) per time point, enforced by the database:
    issuing a new link retires the previous one (``replaced``), and staff can withdraw links
    (``revoked``), e.g. when an e-mail went to the wrong address.
    """

    time_point = models.ForeignKey(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="links"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_reason = models.CharField(max_length=12, choices=LinkRetirement.choices, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["time_point"],
                condition=Q(used_at__isnull=True, retired_at__isnull=True),
                name="followup_one_live_link",
            ),
            models.CheckConstraint(
                name="followup_link_retired_with_reason",
                condition=Q(retired_at__isnull=True, retired_reason="")
                | (Q(retired_at__isnull=False) & ~Q(retired_reason="")),
            ),
        ]

    def __str__(self) -> str:
        return f"Link {self.pk}"  # never the hash: str() ends up in logs


class Submission(models.Model):
    """One submitted answer set for a time point, keyed by the client's idempotency key."""

    time_point = models.OneToOneField(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="submission"
    )
    idempotency_key = models.CharField(max_length=64)
    reference = models.CharField(max_length=16)  # shown to the patient
    submitted_at = models.DateTimeField()
    # Answers staff entered for the patient (collected on paper, by phone, or imported): only
    # these may be corrected by staff; what a patient answered in the portal is theirs.
    entered_by_staff = models.BooleanField(default=False, db_default=False)

    class Meta:
        # Constraints rather than unique=True: on PostgreSQL the field option adds a second,
        # LIKE-pattern index per column that no query uses and every submission pays for.
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="followup_submission_key_unique"
            ),
            models.UniqueConstraint(fields=["reference"], name="followup_submission_ref_unique"),
        ]


class QuestionnaireResponse(Correctable):
    """One instrument's answers at one time point, scored by the core scorers.

    Staff-entered answers may be corrected (re-scored, with the instrument version) or voided
    through :mod:`vertebra.registry.corrections` (type ``followup-answers``)."""

    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="responses")
    # No index of its own: the (time_point, instrument_id) constraint's index serves lookups.
    time_point = models.ForeignKey(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="responses", db_index=False
    )
    instrument_id = models.CharField(max_length=60)
    instrument_version = models.CharField(max_length=20)
    answers = models.JSONField()
    score = models.FloatField(null=True, blank=True)
    band = models.CharField(max_length=40, blank=True)
    extras = models.JSONField(default=dict, blank=True)
    submitted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["time_point", "instrument_id"], name="followup_response_unique"
            )
        ]


class TimePointScores(models.Model):
    """The analysed scores of one time point's live responses, one column per instrument the
    analyses read (``vertebra.outcomes.selectors.SCORE_COLUMNS`` and ``BAND_COLUMNS``) plus the
    STarT Back band answered there: kept by database triggers on the response table
    (migration ``followup 0010``, ADR 0020 §6), never by Python, so every path that writes
    responses (services, corrections, the loader's COPY, the importer) keeps it right in the
    same transaction.

    A row exists while the time point has at least one live (not voided) response of those
    instruments; its values equal pivoting those responses (``tests/followup/
    test_kept_scores.py``). The registry read takes the scores from here instead of
    aggregating every response (31.5 M rows at 1,000,000 patients).
    """

    time_point = models.OneToOneField(
        FollowUpTimePoint,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    odi = models.FloatField(null=True)
    nrs_back = models.FloatField(null=True)
    nrs_leg = models.FloatField(null=True)
    promis_pf = models.FloatField(null=True)
    promis_pi = models.FloatField(null=True)
    mme = models.FloatField(null=True)
    psfs = models.FloatField(null=True)
    work_status_band = models.CharField(max_length=40, null=True)
    # The STarT Back answer (band, when answered, response id): the baseline risk group is the
    # patient's earliest answered one, by (answered, id), as in the ORM reference.
    startback_band = models.CharField(max_length=40, null=True)
    startback_at = models.DateTimeField(null=True)
    startback_id = models.BigIntegerField(null=True)

    def __str__(self) -> str:
        return f"Scores of time point {self.time_point_id}"


class ReminderStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Claimed by a worker"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class Reminder(models.Model):
    """One step of the reminder ladder for one time point: the durable e-mail queue.

    ``step`` is ``day<N>`` (N days after the window opens; ``day0`` is the invitation).
    A worker claims a row with ``UPDATE ... WHERE status='scheduled'`` and sends only if it
    changed exactly one row, so two workers can never both send the same step.
    """

    time_point = models.ForeignKey(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="reminders"
    )
    step = models.CharField(max_length=16)
    step_index = models.PositiveSmallIntegerField()
    scheduled_for = models.DateTimeField()
    status = models.CharField(
        max_length=12, choices=ReminderStatus.choices, default=ReminderStatus.SCHEDULED
    )
    claimed_by = models.CharField(max_length=80, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["time_point", "step"], name="followup_reminder_once")
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_for"], name="followup_reminder_due"),
        ]


class CallListEntry(models.Model):
    """A patient the coordinator should phone about one time point."""

    class Reason(models.TextChoices):
        WINDOW_CLOSED = "window_closed", "Did not answer before the window closed"
        NO_RESPONSE = "no_response", "No answer after the last reminder"
        URGENT_TICKLER = "urgent_tickler", "Reported a possible red flag"

    time_point = models.OneToOneField(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="call_list_entry"
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)


class TicklerEscalation(models.Model):
    """A "yes" on an adverse-event tickler item, escalated as a pending adverse event."""

    response = models.ForeignKey(
        QuestionnaireResponse, on_delete=models.PROTECT, related_name="escalations"
    )
    item_id = models.CharField(max_length=60)
    urgent = models.BooleanField(default=False)
    adverse_event = models.OneToOneField(
        AdverseEvent, on_delete=models.PROTECT, related_name="tickler"
    )


class PsfsActivities(models.Model):
    """The activities a patient named for the PSFS in one treatment episode, in their order.

    Named the first time the episode's questionnaire asks the PSFS and re-rated, by name, at
    every later time point: item ``activity_<k>`` of the psfs answers rates ``names[k-1]``.
    Written only by :func:`vertebra.followup.services.submit_responses` (with its audit record).
    """

    episode = models.OneToOneField(
        TreatmentEpisode, on_delete=models.PROTECT, related_name="psfs_activities"
    )
    names = models.JSONField()  # list of 1..5 cleaned names (vertebra.core.psfs_activities)
    named_at = models.DateTimeField()
    # The time point at which they were named (normally baseline).
    time_point = models.ForeignKey(
        FollowUpTimePoint, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    def __str__(self) -> str:
        return f"PSFS activities {self.pk}"  # never the names: str() ends up in logs
