"""Who may do what: the role → action matrix as data, the Actor value, and the checks.

The matrix is deliberately least-privilege:

* **clinician** — everything clinical at their clinics, including the cell-therapy pathway
  (harvest, processing, injection) and adverse-event adjudication.
* **coordinator** — intake and follow-up work: registers and corrects patients, consents,
  diagnoses, prior treatments, screening, starts episodes, reports adverse events and clinical
  events. Not the pathway steps (harvest, processing, injection) and not adjudication, which are
  clinical acts that must be attributable to a clinician.
* **clinic_admin** — reads and corrects patient demographics at their clinic; no clinical writes;
  publishes the clinic in the public directory and answers its questions (its consent, ADR 0014).
* **researcher** — de-identified data only: no action here touches identified patient data.
* **registry_admin** — reference data (allogeneic lots and their release) and audit-chain
  verification; no identified patient data (a break-glass path, if ever needed, is separate and
  audited).

Every service and selector calls :func:`verify_actor` and checks the action against
:data:`PERMISSIONS`, then scopes its lookups to the clinics the actor verifiably belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from vertebra.core.labels import has_label, label
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import REGISTRY_WIDE_ROLES, Membership, Role


class Action(StrEnum):
    """An action a service or selector performs; the unit of the permission matrix."""

    PATIENT_READ = "patient.read"
    PATIENT_CREATE = "patient.create"
    PATIENT_UPDATE = "patient.update"
    CONSENT_RECORD = "consent.record"
    DIAGNOSIS_RECORD = "diagnosis.record"
    PRIOR_TREATMENT_RECORD = "prior_treatment.record"
    SCREENING_RECORD = "screening.record"
    EPISODE_START = "episode.start"
    HARVEST_RECORD = "harvest.record"
    PROCESSING_RECORD = "processing.record"
    INJECTION_RECORD = "injection.record"
    ADVERSE_EVENT_REPORT = "adverse_event.report"
    ADVERSE_EVENT_ADJUDICATE = "adverse_event.adjudicate"
    CLINICAL_EVENT_RECORD = "clinical_event.record"
    LOT_MANAGE = "lot.manage"
    AUDIT_VERIFY = "audit.verify"
    MEMBERSHIP_MANAGE = "membership.manage"
    BREAK_GLASS = "audit.break_glass"
    DEIDENTIFIED_READ = "deidentified.read"
    DIRECTORY_MANAGE = "directory.manage"


_INTAKE = frozenset(
    {
        Action.PATIENT_READ,
        Action.PATIENT_CREATE,
        Action.PATIENT_UPDATE,
        Action.CONSENT_RECORD,
        Action.DIAGNOSIS_RECORD,
        Action.PRIOR_TREATMENT_RECORD,
        Action.SCREENING_RECORD,
        Action.EPISODE_START,
        Action.ADVERSE_EVENT_REPORT,
        Action.CLINICAL_EVENT_RECORD,
    }
)

#: The permission matrix: role → the actions it may perform. Data, not code, so that the access
#: matrix test and the documentation read the same table.
PERMISSIONS: Mapping[str, frozenset[Action]] = MappingProxyType(
    {
        Role.CLINICIAN: _INTAKE
        | {
            Action.HARVEST_RECORD,
            Action.PROCESSING_RECORD,
            Action.INJECTION_RECORD,
            Action.ADVERSE_EVENT_ADJUDICATE,
        },
        Role.COORDINATOR: _INTAKE,
        Role.CLINIC_ADMIN: frozenset(
            # directory.manage: publish the clinic in the public directory, answer its questions
            {Action.PATIENT_READ, Action.PATIENT_UPDATE, Action.DIRECTORY_MANAGE}
        ),
        Role.RESEARCHER: frozenset({Action.DEIDENTIFIED_READ}),
        Role.REGISTRY_ADMIN: frozenset(
            {
                Action.LOT_MANAGE,
                Action.AUDIT_VERIFY,
                Action.MEMBERSHIP_MANAGE,  # never for oneself (registry.memberships)
                Action.BREAK_GLASS,  # identified audit values, with a reason, audited
            }
        ),
    }
)


def is_allowed(role: str, action: Action) -> bool:
    """True if ``role`` may perform ``action`` according to :data:`PERMISSIONS`."""
    return action in PERMISSIONS.get(role, frozenset())


#: Order in which roles are named when a refusal says who does an action instead.
_ROLE_ORDER = (
    Role.CLINICIAN,
    Role.COORDINATOR,
    Role.CLINIC_ADMIN,
    Role.REGISTRY_ADMIN,
    Role.RESEARCHER,
)


def _action_words(action: Action) -> str:
    """The verb phrase of ``action`` ("adjudicate adverse events"); an action not yet worded in
    ``labels.yaml`` reads "<verb> the <object>", never its code."""
    if has_label("permission", action.value):
        return label("permission", action.value)
    thing, _, verb = action.value.partition(".")
    return f"{verb.replace('_', ' ')} the {thing.replace('_', ' ')}".strip()


def refusal_message(role: str, action: Action) -> str:
    """A refusal in plain words: what ``role`` cannot do and who does it instead.

    "Coordinators cannot adjudicate adverse events; a clinician at your clinic does this."
    Never contains a permission code or a role code (the words are in ``data/labels.yaml``:
    ``role_plural``, ``permission``, ``role_someone``).
    """
    allowed = [r for r in _ROLE_ORDER if is_allowed(r, action)]
    sentence = f"{label('role_plural', role)} cannot {_action_words(action)}"
    if not allowed:
        return f"{sentence}."
    who = [label("role_someone", r.value) for r in allowed]
    instead = who[0] if len(who) == 1 else ", ".join(who[:-1]) + " or " + who[-1]
    if not set(allowed) & set(REGISTRY_WIDE_ROLES):
        instead += " at the patient's clinic" if role in REGISTRY_WIDE_ROLES else " at your clinic"
    return f"{sentence}; {instead} does this."


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, in one role, over a set of clinics, within one request.

    Build it with :meth:`for_user` (which reads the memberships). Services never trust
    ``clinic_ids`` alone: :func:`verify_actor` re-reads the memberships from the database in the
    service's transaction, so a forged or outdated Actor gains nothing.
    ``request_id`` ties audit rows to the web request or job that caused them.
    """

    user: Any  # django.contrib.auth's User; Any keeps this module free of the auth model import
    role: str
    clinic_ids: frozenset[int]
    request_id: str = ""

    @classmethod
    def for_user(cls, user: Any, role: str, *, request_id: str = "") -> Actor:
        """The Actor for ``user`` acting as ``role`` over every clinic where they hold it.

        Raises PermissionDeniedError if the user is inactive or holds no such membership.
        """
        memberships = Membership.objects.filter(user=user, role=role)
        if not user.is_active or not memberships.exists():
            raise PermissionDeniedError(
                f"You do not hold the {label('role', role).lower()} role at any clinic."
            )
        clinic_ids = frozenset(
            cid for cid in memberships.values_list("clinic_id", flat=True) if cid is not None
        )
        return cls(user=user, role=role, clinic_ids=clinic_ids, request_id=request_id)


def verify_actor(actor: Actor, action: Action) -> frozenset[int]:
    """Check that ``actor`` may perform ``action``; return the clinics they may do it at.

    Raises PermissionDeniedError when the role lacks the action, the user is inactive, or the
    user no longer holds the role. The returned clinic ids are ``actor.clinic_ids`` intersected
    with the memberships in the database (empty for registry-wide roles).
    """
    if not is_allowed(actor.role, action):
        raise PermissionDeniedError(refusal_message(actor.role, action), action=action.value)
    if not actor.user.is_active:
        raise PermissionDeniedError("This account is disabled.", action=action.value)
    rows = Membership.objects.filter(user_id=actor.user.pk, role=actor.role).values_list(
        "clinic_id", flat=True
    )
    held = list(rows)
    if not held:
        raise PermissionDeniedError(
            f"You no longer hold the {label('role', actor.role).lower()} role; ask your clinic "
            "administrator if you should.",
            action=action.value,
        )
    if actor.role in REGISTRY_WIDE_ROLES:
        return frozenset()
    return frozenset(cid for cid in held if cid is not None) & actor.clinic_ids
