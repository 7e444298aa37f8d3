"""Staff navigation driven by the permission matrix: a role sees only links it may follow.

Contracts
---------
* :data:`NAV` is data: each link names the actions of :data:`registry.permissions.PERMISSIONS`
  that open it (any one suffices). A role is shown a link only when the matrix allows one of
  them, so no staff link answers 403; templates never test role names.
* Links into Django's admin additionally need the admin's own view permission for their model
  (the admin enforces it; the nav asks the same question, so it never links to a refusal).
* :func:`staff_navigation` is a template context processor: ``staff_nav`` is ``None`` for
  anonymous users and for accounts without a staff role (patients), so public pages and the
  patient portal show no staff links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from vertebra.core.labels import label
from vertebra.registry.permissions import Action, is_allowed
from vertebra.registry.views import SESSION_ROLE, held_roles


@dataclass(frozen=True)
class NavLink:
    """One staff link: its words, URL name, and the actions that open it (empty: any role)."""

    text: str
    url_name: str
    any_of: frozenset[Action] = frozenset()
    admin_model: str = ""  # "registry.clinic": also needs the admin's view permission


#: The staff links, in the order shown. The first is every role's home (its worklist).
NAV: tuple[NavLink, ...] = (
    NavLink("My work", "staff-home"),
    NavLink("Patients", "registry:patients", frozenset({Action.PATIENT_READ})),
    NavLink("Register a patient", "registry:patient-create", frozenset({Action.PATIENT_CREATE})),
    NavLink(
        "Adverse events to adjudicate",
        "registry:adjudication-queue",
        frozenset({Action.ADVERSE_EVENT_ADJUDICATE}),
    ),
    NavLink("Follow-up", "followup:coordinator", frozenset({Action.PATIENT_READ})),
    NavLink(
        "Outcomes",
        "outcomes:dashboard",
        frozenset({Action.PATIENT_READ, Action.DEIDENTIFIED_READ}),
    ),
    NavLink("Clinic directory", "directory-staff:home", frozenset({Action.DIRECTORY_MANAGE})),
    NavLink(
        "Administration",
        "admin:index",
        frozenset({Action.LOT_MANAGE, Action.AUDIT_VERIFY}),
        admin_model="registry.clinic",
    ),
)


@dataclass(frozen=True)
class ShownLink:
    """A link as the template renders it."""

    text: str
    url: str
    current: bool


@dataclass(frozen=True)
class StaffNav:
    """What the staff part of the page shows for the signed-in user."""

    role: str
    role_label: str
    roles: list[tuple[str, str]]  # (role code, words) of every role held, for the switcher
    links: list[ShownLink]
    home_url: str


def admin_can_view(request: HttpRequest, model_label: str) -> bool:
    """True when Django's admin would show ``model_label`` ("app.model") to this user."""
    from django.apps import apps
    from django.contrib import admin

    model = apps.get_model(model_label)
    model_admin = admin.site._registry.get(model)
    return bool(
        model_admin is not None
        and admin.site.has_permission(request)
        and model_admin.has_view_permission(request)
    )


def links_for(role: str, request: HttpRequest) -> list[ShownLink]:
    """The links of :data:`NAV` that ``role`` may follow (see module contracts)."""
    shown = []
    for link in NAV:
        if link.any_of and not any(is_allowed(role, action) for action in link.any_of):
            continue
        if link.admin_model and not admin_can_view(request, link.admin_model):
            continue
        url = reverse(link.url_name)
        current = request.path == url or (
            url not in ("/clinic/", "/admin/") and request.path.startswith(url)
        )
        shown.append(ShownLink(link.text, url, current))
    return shown


def current_role(request: HttpRequest, roles: list[str]) -> str:
    """The role the user acts in: their choice kept in the session, else the first held."""
    chosen = request.session.get(SESSION_ROLE) if hasattr(request, "session") else None
    return chosen if chosen in roles else roles[0]


def staff_navigation(request: HttpRequest) -> dict[str, Any]:
    """Context processor: ``staff_nav`` (a :class:`StaffNav`, or None for non-staff)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"staff_nav": None}
    roles = held_roles(user)
    if not roles:
        return {"staff_nav": None}
    role = current_role(request, roles)
    return {
        "staff_nav": StaffNav(
            role=role,
            role_label=label("role", role),
            roles=[(held, label("role", held)) for held in roles],
            links=links_for(role, request),
            home_url=reverse("staff-home"),
        )
    }
