"""Each staff role's home (``/clinic/home/``): the worklist a person lands on after sign-in.

Contracts
---------
* The home shown is chosen from the permission matrix, not from role names: the first entry of
  :data:`HOMES` whose action the current role may perform. Switching role (``registry:choose-
  role``) lands on the new role's home.
* Reads go through :mod:`vertebra.web.worklist_selectors` (scoped and audited); the one write,
  "Verify now", calls :func:`vertebra.registry.audit.verify_audit_chain_as` (POST + CSRF),
  which checks the permission and records the verification in the audit trail.
* A signed-in account without a staff role goes to the patient portal if it is a patient's,
  and otherwise gets the plain 403 page; refusals are rendered by ``registry.views.clinic_view``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from vertebra.registry.audit import verify_audit_chain_as
from vertebra.registry.models import AuditEvent, Clinic
from vertebra.registry.permissions import Action, Actor, is_allowed
from vertebra.registry.views import clinic_view, held_roles
from vertebra.web import worklist_selectors as worklists
from vertebra.web.staff_nav import admin_can_view

#: Which home a role gets: the first action (in this order) the permission matrix allows it.
HOMES: tuple[tuple[Action, str, Callable[..., Any]], ...] = (
    (Action.ADVERSE_EVENT_ADJUDICATE, "clinician", worklists.clinician_home),
    (Action.PATIENT_CREATE, "coordinator", worklists.coordinator_home),
    (Action.PATIENT_READ, "clinic_admin", worklists.clinic_admin_home),
    (Action.AUDIT_VERIFY, "registry_admin", worklists.registry_admin_home),
    (Action.DEIDENTIFIED_READ, "researcher", worklists.researcher_home),
)

#: How many adverse events the clinician's home lists before "see the whole queue".
HOME_QUEUE_ROWS = 10

#: The longest audit trail "Verify now" checks inside a page request. Verification reads every
#: record (about 7,000 records/s measured on the demo database), and the server ends a request
#: after 60 s (cli/server.py); longer trails are left to the scheduled verification, whose
#: result the home shows.
VERIFY_IN_REQUEST_MAX_ROWS = 200_000


def home_for(role: str) -> tuple[str, Callable[..., Any]] | None:
    """The (template name, selector) of ``role``'s home, or None for a role with no home."""
    for action, name, selector in HOMES:
        if is_allowed(role, action):
            return name, selector
    return None


def staff_home(request: HttpRequest) -> HttpResponse:
    """Where ``LOGIN_REDIRECT_URL`` points: the role's worklist; patients go to the portal."""
    user = request.user
    if user.is_authenticated and not held_roles(user) and hasattr(user, "patient_account"):
        return redirect("followup:home")
    return _staff_home(request)


@clinic_view
@require_GET
def _staff_home(request: HttpRequest, actor: Actor) -> HttpResponse:
    home = home_for(actor.role)
    if home is None:  # a role with no action at all: nothing to show but the plain refusal
        return render(
            request,
            "registry/denied.html",
            {"message": "Your role gives access to no page yet; ask your clinic administrator."},
            status=403,
        )
    name, selector = home
    today = timezone.localdate()
    data = selector(actor=actor, today=today)
    context: dict[str, Any] = {"home": data, "today": today, "actor": actor}
    if name == "clinician":
        context["home_queue"] = replace(data.queue, items=data.queue.items[:HOME_QUEUE_ROWS])
    if name == "registry_admin":
        context["verify_in_page"] = data.audit_rows <= VERIFY_IN_REQUEST_MAX_ROWS
        context["admin_links"] = {
            model: reverse(f"admin:registry_{model}_changelist")
            for model in ("clinic", "membership", "allogeneiclot", "auditevent")
            if admin_can_view(request, f"registry.{model}")
        }
    if name == "clinic_admin":
        context["clinic_names"] = ", ".join(c.name for c in data.clinics)
    elif actor.clinic_ids:
        context["clinic_names"] = ", ".join(
            Clinic.objects.filter(pk__in=actor.clinic_ids)
            .order_by("name")
            .values_list("name", flat=True)
        )
    return render(request, f"vertebra/homes/{name}.html", context)


@clinic_view
@require_POST
def verify_audit_now(request: HttpRequest, actor: Actor) -> HttpResponse:
    """Verify the audit chain now (registry admins); the result is itself audited."""
    rows = AuditEvent.objects.count()  # the records the check is about to read
    if rows > VERIFY_IN_REQUEST_MAX_ROWS:
        messages.error(
            request,
            f"The audit trail holds {rows:,} records, too many to check within a page request; "
            "the scheduled verification on the server checks it, and its result is shown here.",
        )
        return redirect(reverse("staff-home") + "#audit")
    started = time.monotonic()
    problems = verify_audit_chain_as(actor=actor)
    seconds = time.monotonic() - started
    if problems:
        messages.error(
            request,
            f"The audit trail has {len(problems)} problem{'s' if len(problems) != 1 else ''}: "
            f"{problems[0].message}. Checked {rows:,} records in {seconds:.1f} s.",
        )
    else:
        messages.success(
            request,
            f"The audit trail is intact: {rows:,} records checked in {seconds:.1f} s.",
        )
    return redirect(reverse("staff-home") + "#audit")
