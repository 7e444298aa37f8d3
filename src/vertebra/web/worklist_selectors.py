"""Reads for each staff role's home (worklist): what is waiting for this person today.

Contracts
---------
* One public function per role, each taking the :class:`Actor` and ``today``; each checks the
  actor's permission first (``verify_actor``) and scopes every query to the clinics the actor
  verifiably holds the role at. Registry-wide roles (registry admin, researcher) see no
  identified patient data here: counts and reference data only.
* Reads that show patients write one ``read`` audit row (``object_type`` ``worklist``) naming
  the patients shown, in the same transaction (``audited_transaction``); refusals write a
  ``denied`` row.
* Lists are bounded (:data:`LIST_LIMIT`); every list comes with its total, so a page can say
  "the first 50 of 212". Results are evaluated values, not lazy querysets.
* These pages sit one floor above ``registry``/``followup``/``outcomes`` (they read all three),
  so they live in ``web``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet

from vertebra.core.labels import format_date, label
from vertebra.followup.counts import status_counts
from vertebra.followup.models import CallListEntry, FollowUpTimePoint, TimePointStatus
from vertebra.registry import selectors as registry_selectors
from vertebra.registry.audit import audited_transaction, record_audit
from vertebra.registry.counts import patient_counts, patients_in
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventStatus,
    AllogeneicLot,
    AuditEvent,
    AuditSeal,
    Clinic,
    Membership,
    Patient,
    Processing,
    Sterility,
    TreatmentEpisode,
)
from vertebra.registry.permissions import Action, Actor, verify_actor

#: The most rows any one worklist shows (its total is always given beside it).
LIST_LIMIT = 50

#: Counts of patients with something due stop here ("more than 1,000"): the exact figure
#: needs every open time point of the scope (200,000 for a network at 1,000,000 patients).
COUNT_UP_TO = 1000

#: Urgency of a reason a patient is on the clinician's list (lower is more urgent).
SERIOUS_AE, RED_FLAG_AE, PENDING_AE, STERILITY, OVERDUE, DUE = range(6)

#: The flag shown (in words, beside the colour) for the most urgent reasons.
BADGES = {SERIOUS_AE: "Serious", RED_FLAG_AE: "Red flag"}


@dataclass(frozen=True)
class Reason:
    """Why a patient is on a worklist, in words, with the date it dates from."""

    urgency: int
    text: str
    since: dt.date

    @property
    def badge(self) -> str:
        """ "Serious" or "Red flag" for flagged reasons (badge and words, not colour alone)."""
        return BADGES.get(self.urgency, "")

    @property
    def flagged(self) -> bool:
        return bool(self.badge)


@dataclass
class PatientDue:
    """One patient with something due, and every reason why."""

    patient: Patient
    reasons: list[Reason] = field(default_factory=list)

    @property
    def urgency(self) -> int:
        return min(reason.urgency for reason in self.reasons)

    @property
    def oldest(self) -> dt.date:
        return min(reason.since for reason in self.reasons)

    @property
    def flagged(self) -> bool:
        return any(reason.flagged for reason in self.reasons)


@dataclass(frozen=True)
class FollowUpCounts:
    """Open follow-up time points (due, overdue) and completeness with its denominator."""

    due: int
    overdue: int
    completed: int
    denominator: int  # time points answered, or whose window closed unanswered

    @property
    def rate(self) -> str:
        if not self.denominator:
            return "—"
        return f"{100 * self.completed / self.denominator:.0f}%"


@dataclass(frozen=True)
class ClinicianHome:
    queue: registry_selectors.AdjudicationQueue
    patients: list[PatientDue]
    patients_due: int  # patients with anything due (may exceed len(patients))
    patients_due_more: bool  # True: more than ``patients_due`` (= COUNT_UP_TO), not counted on
    patients_total: int  # patients of the actor's clinics (the denominator)
    sterility_pending: int
    followup: FollowUpCounts


@dataclass(frozen=True)
class TimePointDue:
    """An open follow-up time point as the coordinator's list shows it."""

    point: FollowUpTimePoint
    overdue: bool
    days: int  # days overdue, or days left until the target date


@dataclass(frozen=True)
class ReportedEvent:
    """An adverse event this person reported, with its adjudication status (read-only)."""

    event: AdverseEvent
    reported_on: dt.date
    days_waiting: int


@dataclass(frozen=True)
class CoordinatorHome:
    calls: list[CallListEntry]
    calls_total: int
    points: list[TimePointDue]
    followup: FollowUpCounts
    reported: list[ReportedEvent]
    reported_pending: int
    reported_adjudicated: int


@dataclass(frozen=True)
class StaffMember:
    name: str
    username: str
    role: str
    clinic: str
    active: bool
    last_login: dt.datetime | None


@dataclass(frozen=True)
class ClinicAdminHome:
    clinics: list[Clinic]
    staff: list[StaffMember]
    patients_total: int
    followup: FollowUpCounts


@dataclass(frozen=True)
class ClinicRow:
    clinic: Clinic
    patients: int
    staff: int


@dataclass(frozen=True)
class Verification:
    """The latest audit-chain verification (an ``AuditEvent`` with action ``verify``)."""

    at: dt.datetime
    by: str
    role: str
    problems: list[str]
    checked: int | None  # rows checked, when the verifier recorded it

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RegistryAdminHome:
    clinics: list[ClinicRow]
    memberships_by_role: list[tuple[str, int]]  # (role words, count)
    memberships_total: int
    lots: list[AllogeneicLot]
    lots_total: int
    lots_released: int
    verification: Verification | None
    audit_rows: int


@dataclass(frozen=True)
class ResearcherHome:
    clinics: int
    patients: int
    treated: int


# ----------------------------------------------------------------------------- helpers


def _followup_counts(clinic_ids: frozenset[int], today: dt.date) -> FollowUpCounts:
    """Due/overdue/completeness over the clinics, without reading every time point.

    The same classification as the coordinator page (``followup.staff_views``): an open time
    point is due up to its target date and overdue after it; the completeness denominator is
    the time points answered or missed (open windows never flatter the rate). Completed,
    missed and open come from the trigger-kept counts per clinic (``followup.counts``: a few
    rows per clinic); only the overdue points are counted, from the partial index of each
    clinic's open points by target date (ADR 0023 §10, §12).
    """
    by_status = status_counts(clinic_ids)
    overdue = _counted_in(
        FollowUpTimePoint.objects.filter(status=TimePointStatus.OPEN, target__lt=today),
        "clinic_id",
        clinic_ids,
    ).count()
    completed = by_status.get(TimePointStatus.COMPLETED, 0)
    return FollowUpCounts(
        due=by_status.get(TimePointStatus.OPEN, 0) - overdue,
        overdue=overdue,
        completed=completed,
        denominator=completed + by_status.get(TimePointStatus.MISSED, 0),
    )


def _counted_in(rows: QuerySet[Any], path: str, clinic_ids: frozenset[int]) -> QuerySet[Any]:
    """``rows`` at the clinics, for a COUNT only: unfiltered when the clinics are every clinic
    of the registry (every row has one), which spares a network account's list of hundreds of
    clinic ids (before the rows carried their clinic, ADR 0023 §12, it spared joining each row
    to its patient: 0.8-3 s at 1 M patients, §10). Never used for rows that are shown: a clinic
    created meanwhile could only move a count, not show a patient."""
    every = set(Clinic.objects.values_list("pk", flat=True))
    if every <= clinic_ids:
        return rows
    return rows.filter(**{f"{path}__in": clinic_ids})


def _distinct_up_to(ids: QuerySet[Any], cap: int) -> tuple[int, bool]:
    """(how many distinct values ``ids`` has, False) when at most ``cap``; else (``cap``,
    True). Reads at most ``4 * (cap + 1)`` rows (``ids`` may repeat a value: a patient with an
    open time point and a pending event); counts exactly only if repeats hide more than that.
    """
    window = 4 * (cap + 1)
    rows = list(ids[:window])
    distinct = len(set(rows))
    if len(rows) < window:  # every row was read: exact
        return (distinct, False) if distinct <= cap else (cap, True)
    if distinct > cap:
        return cap, True
    exact = len(set(ids))  # (pathological: thousands of repeats) read them all
    return (exact, False) if exact <= cap else (cap, True)


def _audit_shown(actor: Actor, role_home: str, patient_ids: set[int]) -> None:
    """One ``read`` row naming the patients a worklist showed."""
    record_audit(
        actor=actor,
        action="read",
        object_type="worklist",
        new_values={"home": role_home, "patient_ids": sorted(patient_ids)},
    )


def _timepoint_words(point: FollowUpTimePoint, today: dt.date) -> Reason:
    """ "6 months follow-up overdue by 9 days (target 27 Nov 2026)" or "... due by <date>"."""
    name = label("timepoint", point.key)
    if today > point.target:
        days = (today - point.target).days
        text = f"{name} follow-up overdue by {_days(days)} (target {format_date(point.target)})"
        return Reason(OVERDUE, text, point.target)
    return Reason(DUE, f"{name} follow-up due by {format_date(point.target)}", point.target)


def _days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def _event_words(item: registry_selectors.QueueItem) -> Reason:
    """An adverse event waiting for adjudication, in words (the page flags serious ones and
    patient-reported red flags)."""
    event = item.event
    what = label("ae_category", event.category)
    text = f"Adverse event to adjudicate: {what} (onset {format_date(event.onset)})"
    urgency = SERIOUS_AE if event.serious else RED_FLAG_AE if item.red_flag else PENDING_AE
    return Reason(urgency, text, event.onset)


# ----------------------------------------------------------------------------- clinician


@audited_transaction
def clinician_home(*, actor: Actor, today: dt.date) -> ClinicianHome:
    """Patients with something due (serious adverse events first, then patient-reported red
    flags, other events to adjudicate, pending sterility, overdue and due follow-up; oldest
    first within each) and the adjudication queue."""
    clinics = verify_actor(actor, Action.ADVERSE_EVENT_ADJUDICATE)
    queue = registry_selectors.adjudication_queue(actor=actor, today=today)
    due: dict[int, PatientDue] = {}

    def add(patient: Patient, reason: Reason) -> None:
        due.setdefault(patient.pk, PatientDue(patient)).reasons.append(reason)

    for item in queue.items:
        add(item.event.patient, _event_words(item))
    pending_sterility = Processing.objects.filter(
        harvest__episode__patient__clinic_id__in=clinics, sterility=Sterility.PENDING
    )
    for processing in pending_sterility.select_related("harvest__episode__patient").order_by(
        "processed_on", "id"
    )[:LIST_LIMIT]:
        add(
            processing.harvest.episode.patient,
            Reason(STERILITY, f"Sterility result pending for product {processing.product_id} "
                   f"(processed {format_date(processing.processed_on)})", processing.processed_on),
        )  # fmt: skip
    # Scoped by the time point's own clinic (partial index followup_tp_open_clinic), not by a
    # join of every open time point to its patient (ADR 0023 §12); the same for the events.
    open_points = FollowUpTimePoint.objects.filter(
        clinic_id__in=clinics, status=TimePointStatus.OPEN
    )
    for point in open_points.select_related("patient").order_by("target", "id")[: LIST_LIMIT * 2]:
        add(point.patient, _timepoint_words(point, today))
    patients = sorted(due.values(), key=lambda p: (p.urgency, p.oldest, p.patient.pk))
    for entry in patients:
        entry.reasons.sort(key=lambda r: (r.urgency, r.since))
    shown = patients[:LIST_LIMIT]
    # Patients with anything due: the UNION (distinct) of the three reasons' patient ids, each
    # read from its own small set (open points, pending events, pending sterility). Testing
    # three EXISTS per patient of the scope took seconds at 100,000 patients (ADR 0023).
    pending_events = AdverseEvent.objects.filter(
        clinic_id__in=clinics, status=AdverseEventStatus.PENDING
    )
    # Counted only (the patients shown come from the scoped reads above).
    with_something = (
        _counted_in(
            FollowUpTimePoint.objects.filter(status=TimePointStatus.OPEN),
            "clinic_id",
            clinics,
        )
        .order_by()
        .values_list("patient_id", flat=True)
        .union(
            pending_events.order_by().values_list("patient_id", flat=True),
            pending_sterility.order_by().values_list("harvest__episode__patient_id", flat=True),
            all=True,
        )
    )
    due_count, due_more = _distinct_up_to(with_something, COUNT_UP_TO)
    _audit_shown(actor, "clinician", {entry.patient.pk for entry in shown})
    return ClinicianHome(
        queue=queue,
        patients=shown,
        patients_due=due_count,
        patients_due_more=due_more,
        patients_total=patients_in(clinics),
        sterility_pending=pending_sterility.count(),
        followup=_followup_counts(clinics, today),
    )


# ----------------------------------------------------------------------------- coordinator


def _reported_by(actor: Actor, clinics: frozenset[int], today: dt.date) -> list[ReportedEvent]:
    """Adverse events whose ``create`` audit row names this user, newest report first."""
    rows = (
        AuditEvent.objects.filter(
            actor_user_id=actor.user.pk, action="create", object_type="adverseevent"
        )
        .order_by("-occurred_at")
        .values_list("object_id", "occurred_at")[:500]
    )
    reported_at = {int(object_id): when for object_id, when in rows if object_id.isdigit()}
    events = AdverseEvent.objects.select_related("patient").filter(
        pk__in=list(reported_at), clinic_id__in=clinics
    )
    result = []
    for event in events:
        on = reported_at[event.pk].date()
        result.append(ReportedEvent(event, on, max(0, (today - on).days)))
    pending_first = sorted(
        result,
        key=lambda r: (
            r.event.status != AdverseEventStatus.PENDING,
            -r.event.serious,
            r.reported_on,
        ),
    )
    return pending_first


@audited_transaction
def coordinator_home(*, actor: Actor, today: dt.date) -> CoordinatorHome:
    """The call list, open follow-ups (overdue first, the longest overdue first; then due by
    target date), and the adverse events this person reported with their status."""
    clinics = verify_actor(actor, Action.PATIENT_READ)
    unresolved = CallListEntry.objects.filter(
        time_point__clinic_id__in=clinics, resolved_at__isnull=True
    )
    calls = list(
        unresolved.select_related("time_point__patient").order_by("-reason", "created_at")[
            :LIST_LIMIT
        ]
    )
    open_points = FollowUpTimePoint.objects.filter(
        clinic_id__in=clinics, status=TimePointStatus.OPEN
    ).select_related("patient")
    points = [
        TimePointDue(
            point,
            overdue=today > point.target,
            days=abs((today - point.target).days),
        )
        for point in open_points.order_by("target", "id")[:LIST_LIMIT]
    ]
    reported = _reported_by(actor, clinics, today)
    pending = [r for r in reported if r.event.status == AdverseEventStatus.PENDING]
    shown_reported = pending + [r for r in reported if r not in pending][:10]
    _audit_shown(
        actor,
        "coordinator",
        {c.time_point.patient_id for c in calls}
        | {p.point.patient_id for p in points}
        | {r.event.patient_id for r in shown_reported},
    )
    return CoordinatorHome(
        calls=calls,
        calls_total=unresolved.count(),
        points=points,
        followup=_followup_counts(clinics, today),
        reported=shown_reported,
        reported_pending=len(pending),
        reported_adjudicated=len(reported) - len(pending),
    )


# ----------------------------------------------------------------------------- clinic admin


@audited_transaction
def clinic_admin_home(*, actor: Actor, today: dt.date) -> ClinicAdminHome:
    """The clinic's staff (memberships), its settings and the follow-up completeness figure.

    No patient is named, so nothing patient-level is audited here.
    """
    clinics = verify_actor(actor, Action.PATIENT_READ)
    memberships = (
        Membership.objects.filter(clinic_id__in=clinics)
        .select_related("user", "clinic")
        .order_by("clinic__name", "role", "user__username")
    )
    staff = [
        StaffMember(
            name=m.user.get_full_name() or m.user.get_username(),
            username=m.user.get_username(),
            role=label("role", m.role),
            clinic=m.clinic.name if m.clinic else "",
            active=m.user.is_active,
            last_login=m.user.last_login,
        )
        for m in memberships[:200]
    ]
    return ClinicAdminHome(
        clinics=list(Clinic.objects.filter(pk__in=clinics).order_by("name")),
        staff=staff,
        patients_total=patients_in(clinics),
        followup=_followup_counts(clinics, today),
    )


# ----------------------------------------------------------------------------- registry admin


def latest_verification() -> Verification | None:
    """The newest ``verify`` row of the audit chain (written by ``verify_audit_chain_as`` or
    the scheduled verification), or None when the chain was never verified."""
    row = (
        AuditEvent.objects.filter(action="verify", object_type="audit_chain")
        .order_by("-id")
        .values("occurred_at", "actor_user_id", "actor_username", "role", "new_values")
        .first()
    )
    if row is None:
        return None
    values: dict[str, Any] = row["new_values"] if isinstance(row["new_values"], dict) else {}
    problems = [str(p) for p in values.get("problems") or []]
    checked = next(
        (
            values[key]
            for key in ("rows", "rows_checked", "checked")
            if isinstance(values.get(key), int)
        ),
        None,
    )
    user = (
        get_user_model().objects.filter(pk=row["actor_user_id"]).first()
        if row["actor_user_id"]
        else None
    )
    by = (user.get_full_name() or user.get_username()) if user else row["actor_username"]
    return Verification(
        at=row["occurred_at"],
        by=by,
        role=label("role", row["role"]) if row["role"] not in ("system", "") else "Scheduled check",
        problems=problems,
        checked=checked,
    )


def _count_by_clinic(rows: QuerySet[Any]) -> dict[int, int]:
    """clinic id -> how many of ``rows`` (one GROUP BY on the rows' own clinic column)."""
    grouped = rows.order_by().values("clinic_id").annotate(n=Count("id"))
    return {row["clinic_id"]: row["n"] for row in grouped}


@audited_transaction
def registry_admin_home(*, actor: Actor, today: dt.date) -> RegistryAdminHome:
    """Clinics (with patient and staff counts, never patients), memberships by role, allogeneic
    lots, and the last audit-chain verification."""
    verify_actor(actor, Action.AUDIT_VERIFY)
    # Counted for the clinics shown only, each table grouped on its own: joining patients and
    # memberships to every clinic multiplies the rows and counted a million patients (ADR 0023).
    clinics = list(Clinic.objects.order_by("name")[:LIST_LIMIT])
    shown = [c.pk for c in clinics]
    n_patients = patient_counts(shown)  # trigger-kept sums (ADR 0023 §10)
    n_staff = _count_by_clinic(Membership.objects.filter(clinic_id__in=shown))
    by_role = dict(
        Membership.objects.values_list("role").annotate(n=Count("id")).values_list("role", "n")
    )
    lots = AllogeneicLot.objects.order_by("-released_on", "lot_number")
    # Rows of the old in-row chain, sealed rows and the rows committed after the newest sealed
    # one (ADR 0021): index reads and a short range count, never a count of the whole trail.
    old = (
        AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", flat=True)
    )
    head = AuditSeal.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    newest = AuditSeal.objects.order_by("-event_id").values_list("event_id", flat=True).first()
    pending = AuditEvent.objects.filter(seq__isnull=True, id__gt=newest or 0).count()
    last = (old.first() or 0) + head + pending
    return RegistryAdminHome(
        clinics=[ClinicRow(c, n_patients.get(c.pk, 0), n_staff.get(c.pk, 0)) for c in clinics],
        memberships_by_role=[
            (label("role", role), by_role[role]) for role in sorted(by_role, key=str)
        ],
        memberships_total=sum(by_role.values()),
        lots=list(lots[:LIST_LIMIT]),
        lots_total=lots.count(),
        lots_released=lots.filter(released=True).count(),
        verification=latest_verification(),
        audit_rows=last or 0,
    )


# ----------------------------------------------------------------------------- researcher


@audited_transaction
def researcher_home(*, actor: Actor, today: dt.date) -> ResearcherHome:
    """Registry-wide counts only (clinics, patients, patients with a treatment episode)."""
    verify_actor(actor, Action.DEIDENTIFIED_READ)
    # Patients with an episode, counted from the episodes' patient column alone (index-only)
    # rather than DISTINCT over a join of every patient with its episodes (ADR 0023).
    treated = TreatmentEpisode.objects.order_by().values("patient_id").distinct().count()
    clinic_ids = list(Clinic.objects.values_list("pk", flat=True))
    return ResearcherHome(
        clinics=len(clinic_ids),
        patients=patients_in(clinic_ids),
        treated=treated,
    )


__all__ = [
    "ClinicAdminHome",
    "ClinicianHome",
    "CoordinatorHome",
    "RegistryAdminHome",
    "ResearcherHome",
    "clinic_admin_home",
    "clinician_home",
    "coordinator_home",
    "latest_verification",
    "registry_admin_home",
    "researcher_home",
]
