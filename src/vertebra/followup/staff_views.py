"""The coordinator's follow-up page (``/p/staff/``): staff only, scoped to their clinics.

Shows, per time point: due, overdue, completed, missed and the completeness rate with its
denominator; the call list; and the adverse events reported through ticklers that wait for a
clinician's adjudication. Every view writes an audit row naming the patients shown.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vertebra.followup.models import (
    CallListEntry,
    FollowUpTimePoint,
    PatientLink,
    TicklerEscalation,
)
from vertebra.followup.services import revoke_links
from vertebra.registry.audit import record_audit
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AdverseEventStatus, Role
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.selectors import get_patient_for
from vertebra.registry.services import lock_patient

#: Staff roles that may use the page, in the order tried when a user holds several.
STAFF_ROLES = (Role.COORDINATOR, Role.CLINICIAN, Role.CLINIC_ADMIN)


@dataclass
class Row:
    """Counts for one time point (e.g. "3 months") across the actor's clinics."""

    key: str
    label: str
    months: float
    pending: int = 0
    due: int = 0
    overdue: int = 0
    completed: int = 0
    missed: int = 0
    patients: set[int] = field(default_factory=set)

    @property
    def denominator(self) -> int:
        """Time points that could have been answered by now: answered, or window closed."""
        return self.completed + self.missed

    @property
    def rate(self) -> str:
        if not self.denominator:
            return "—"
        return f"{100 * self.completed / self.denominator:.0f}%"


def staff_actor(request: HttpRequest) -> Actor:
    """The Actor for a signed-in staff user, in the first staff role they hold."""
    for role in STAFF_ROLES:
        try:
            return Actor.for_user(request.user, role)
        except PermissionDeniedError:
            continue
    raise Http404("Not a staff member of a clinic")


def _classify(point: FollowUpTimePoint, today: dt.date) -> str:
    """pending / due (open, on or before target) / overdue (open, past target) / ..."""
    if point.status == "open":
        return "due" if today <= point.target else "overdue"
    return str(point.status)


def dashboard_rows(clinic_ids: frozenset[int], today: dt.date) -> list[Row]:
    """Per time point counts for the patients of ``clinic_ids`` on ``today``."""
    rows: OrderedDict[str, Row] = OrderedDict()
    points = (
        FollowUpTimePoint.objects.filter(patient__clinic_id__in=clinic_ids)
        .exclude(status="cancelled")  # a voided episode's follow-up is no one's work (ADR 0009)
        .order_by("months")
    )
    for point in points.only("key", "label", "months", "status", "target", "patient_id"):
        row = rows.setdefault(point.key, Row(point.key, point.label, point.months))
        kind = _classify(point, today)
        setattr(row, kind, getattr(row, kind) + 1)
        row.patients.add(point.patient_id)
    return list(rows.values())


@login_required
@require_GET
def coordinator(request: HttpRequest) -> HttpResponse:
    """The coordinator's page; other clinics' patients are never counted or shown."""
    actor = staff_actor(request)
    today = timezone.localdate()
    with transaction.atomic():
        clinics = verify_actor(actor, Action.PATIENT_READ)
        rows = dashboard_rows(clinics, today)
        calls = list(
            CallListEntry.objects.filter(
                time_point__patient__clinic_id__in=clinics, resolved_at__isnull=True
            )
            .select_related("time_point__patient")
            .order_by("-reason", "created_at")  # urgent_tickler sorts first
        )
        ticklers = list(
            TicklerEscalation.objects.filter(
                adverse_event__patient__clinic_id__in=clinics,
                adverse_event__status=AdverseEventStatus.PENDING,
                adverse_event__voided_at__isnull=True,
            )
            .select_related("adverse_event__patient", "response__time_point")
            .order_by("-urgent", "adverse_event__onset")
        )
        completed_recent = list(
            FollowUpTimePoint.objects.filter(patient__clinic_id__in=clinics, status="completed")
            .select_related("patient")
            .order_by("-completed_at")[:20]
        )
        shown = sorted(
            {c.time_point.patient_id for c in calls}
            | {t.adverse_event.patient_id for t in ticklers}
            | {p.patient_id for p in completed_recent}
        )
        record_audit(
            actor=actor,
            action="read",
            object_type="followup_dashboard",
            new_values={"clinics": sorted(clinics), "patient_ids": shown},
        )
    totals = _totals(rows)
    return render(
        request,
        "followup/staff/coordinator.html",
        {
            "rows": rows,
            "totals": totals,
            "calls": calls,
            "ticklers": ticklers,
            "completed_recent": completed_recent,
            "today": today,
        },
    )


def _totals(rows: list[Row]) -> dict[str, Any]:
    completed = sum(r.completed for r in rows)
    denominator = sum(r.denominator for r in rows)
    return {
        "due": sum(r.due for r in rows),
        "overdue": sum(r.overdue for r in rows),
        "completed": completed,
        "missed": sum(r.missed for r in rows),
        "denominator": denominator,
        "rate": f"{100 * completed / denominator:.0f}%" if denominator else "—",
    }


@login_required
@require_POST
def resolve_call(request: HttpRequest, entry_id: int) -> HttpResponse:
    """Mark a call-list entry done, with what happened (audited)."""
    actor = staff_actor(request)
    note = (request.POST.get("resolution") or "").strip()[:300] or "Called"
    with transaction.atomic():
        clinics = verify_actor(actor, Action.PATIENT_READ)
        patient_id = (
            CallListEntry.objects.filter(pk=entry_id)
            .values_list("time_point__patient_id", flat=True)
            .first()
        )
        if patient_id is not None:
            lock_patient(patient_id)  # lock order: patient first (registry.audit)
        entry = (
            CallListEntry.objects.select_for_update()
            .select_related("time_point__patient")
            .filter(pk=entry_id, time_point__patient__clinic_id__in=clinics)
            .first()
        )
        if entry is None:
            raise Http404("No such call-list entry")
        if entry.resolved_at is None:
            entry.resolved_at = timezone.now()
            entry.resolution = note
            entry.save(update_fields=["resolved_at", "resolution"])
            record_audit(
                actor=actor,
                action="update",
                object_type="followup_call_list_entry",
                object_id=entry.pk,
                clinic_id=entry.time_point.patient.clinic_id,
                patient_id=entry.time_point.patient_id,
                old_values={"resolved_at": None},
                new_values={"resolved_at": entry.resolved_at, "resolution": note},
            )
    return redirect("followup:coordinator")


@login_required
@require_http_methods(["GET", "POST"])
def revoke_patient_links(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Withdraw a patient's live portal links (e.g. an e-mail went to the wrong address).

    GET shows how many links are live and asks for a reason; POST withdraws them through
    :func:`~vertebra.followup.services.revoke_links` (audited) and returns to the patient's
    page. Another clinic's patient is 404, as one that does not exist.
    """
    actor = staff_actor(request)
    reason = (request.POST.get("reason") or "").strip()
    error = ""
    if request.method == "POST":
        if reason:
            try:
                count = revoke_links(
                    actor=actor, patient_id=patient_id, reason=reason, now=timezone.now()
                )
            except NotFound:
                raise Http404("No such patient") from None
            except PermissionDeniedError as exc:
                raise PermissionDenied(str(exc)) from None
            messages.success(
                request,
                f"{count} portal link{'s' if count != 1 else ''} withdrawn. The next reminder "
                "sends a fresh link."
                if count
                else "There was no live portal link to withdraw.",
            )
            return redirect("registry:patient", patient_id=patient_id)
        error = "Give a reason: it is kept in the audit trail."
    try:
        with transaction.atomic():
            patient = get_patient_for(
                actor=actor, patient_id=patient_id, intent=Action.PATIENT_UPDATE
            )
    except NotFound:
        raise Http404("No such patient") from None
    except PermissionDeniedError as exc:
        raise PermissionDenied(str(exc)) from None
    live = PatientLink.objects.filter(
        time_point__patient=patient, used_at__isnull=True, retired_at__isnull=True
    ).count()
    return render(
        request,
        "followup/staff/revoke_links.html",
        {"patient": patient, "live": live, "reason": reason, "error": error},
        status=400 if error else 200,
    )
