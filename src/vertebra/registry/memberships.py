"""Granting and revoking staff roles: the one audited path, used by the Django admin too.

Contracts
---------
* Only registry admins (``membership.manage``) and superusers grant or revoke; each call is
  one transaction with one audit row (``create`` / ``delete``, object type ``membership``,
  the user, role and clinic, and the non-blank reason).
* **Nobody grants a role to themselves** (OWASP ASVS 8.2 least privilege; a registry admin
  must not give itself clinician access to a clinic's patients): the grant is refused with
  PermissionDeniedError and the refusal is audited as ``denied``. Another registry admin must
  make the grant, so every gain of access involves a second person.
* A clinic role names a clinic; researcher and registry-admin roles are registry-wide
  (ValidationError otherwise, as the table's constraint says). Granting a role the user
  already holds there is a ValidationError, not a second row.
* Revoking one's own role is allowed (it only removes access).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from vertebra.registry.audit import audited_transaction, record_audit, snapshot
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import REGISTRY_WIDE_ROLES, Clinic, Membership, Role
from vertebra.registry.permissions import Action, Actor, verify_actor

__all__ = ["SUPERUSER_ROLE", "check_grant", "grant_membership", "revoke_membership"]

#: The role an acting superuser is recorded with (a superuser may hold no membership).
SUPERUSER_ROLE = "superuser"


def _authorise(actor: Actor) -> None:
    """Registry admins (verified against the database) and active superusers may manage."""
    if actor.role == SUPERUSER_ROLE:
        if not (actor.user.is_active and actor.user.is_superuser):
            raise PermissionDeniedError(
                "Only registry admins manage roles.", action=Action.MEMBERSHIP_MANAGE.value
            )
        return
    verify_actor(actor, Action.MEMBERSHIP_MANAGE)


def _refuse_self(actor: Actor, user_id: int) -> None:
    if actor.user.pk == user_id:
        raise PermissionDeniedError(
            "You cannot grant a role to yourself: another registry admin must make this grant.",
            action=Action.MEMBERSHIP_MANAGE.value,
        )


@audited_transaction
def check_grant(*, actor: Actor, user_id: int) -> None:
    """Raise PermissionDeniedError (audited ``denied``) if ``actor`` may not grant a role to
    user ``user_id``: not a registry admin, or the user is the actor. For forms that want to
    say so before anything is saved; :func:`grant_membership` checks the same again."""
    _authorise(actor)
    _refuse_self(actor, user_id)


@audited_transaction
def grant_membership(
    *, actor: Actor, user_id: int, role: str, clinic_id: int | None = None, reason: str
) -> Membership:
    """Give user ``user_id`` ``role`` at ``clinic_id`` (None: registry-wide); see the module
    contract. Returns the new membership."""
    _authorise(actor)
    _refuse_self(actor, user_id)
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why this person needs this role."})
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if (role in REGISTRY_WIDE_ROLES) != (clinic_id is None):
        message = (
            "This role is registry-wide: leave the clinic empty."
            if role in REGISTRY_WIDE_ROLES
            else "A clinic role needs a clinic."
        )
        raise ValidationError({"clinic": message})
    user: Any = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise NotFound("user", user_id)
    if clinic_id is not None and not Clinic.objects.filter(pk=clinic_id).exists():
        raise NotFound("clinic", clinic_id)
    held = Membership.objects.filter(user_id=user_id, role=role)
    held = (
        held.filter(clinic__isnull=True) if clinic_id is None else held.filter(clinic_id=clinic_id)
    )
    if held.exists():
        raise ValidationError({"role": "The user already holds this role there."})
    membership = Membership.objects.create(user_id=user_id, role=role, clinic_id=clinic_id)
    record_audit(
        actor=actor,
        action="create",
        object_type="membership",
        object_id=membership.pk,
        clinic_id=clinic_id,
        new_values=snapshot(membership),
        reason=reason.strip(),
    )
    return membership


@audited_transaction
def revoke_membership(*, actor: Actor, membership_id: int, reason: str) -> None:
    """Remove a membership (the user loses the role there at their next request)."""
    _authorise(actor)
    membership = Membership.objects.select_for_update().filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("membership", membership_id)
    values = snapshot(membership)
    membership.delete()
    record_audit(
        actor=actor,
        action="delete",
        object_type="membership",
        object_id=membership_id,
        clinic_id=values.get("clinic_id"),
        old_values=values,
        reason=(reason or "").strip() or "revoked",
    )
