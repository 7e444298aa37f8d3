"""Django admin for the registry's reference data, restricted to registry admins.

* Clinics, allogeneic lots and memberships are editable by superusers and users holding the
  ``registry_admin`` role (they also need ``is_staff`` to sign in to the admin at all). Every
  change made here is audited (same transaction, old and new values), like a service write.
* The audit trail is visible to the same people and read-only: no add, change or delete.
* Patient data is not in the admin: it is reached only through the scoped, audited pages.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from vertebra.core.labels import label
from vertebra.registry.audit import record_audit, snapshot
from vertebra.registry.models import (
    AllogeneicLot,
    ApiToken,
    AuditAlert,
    AuditEvent,
    Clinic,
    Membership,
    Role,
)
from vertebra.registry.permissions import Actor


def is_registry_admin(user: Any) -> bool:
    """Superusers, and active staff holding the registry admin role."""
    if not (user.is_active and user.is_staff):
        return False
    return bool(
        user.is_superuser or Membership.objects.filter(user=user, role=Role.REGISTRY_ADMIN).exists()
    )


def _admin_actor(request: HttpRequest) -> Actor:
    user = request.user
    role = Role.REGISTRY_ADMIN.value if not getattr(user, "is_superuser", False) else "superuser"
    return Actor(user=user, role=role, clinic_ids=frozenset(), request_id="admin")


class RegistryAdminOnly(admin.ModelAdmin):
    """Reference data: registry admins only; every save and delete audited."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_registry_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_registry_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_registry_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_registry_admin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_registry_admin(request.user)

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        """Save, and audit the change in the admin's transaction (old → new values)."""
        old = snapshot(type(obj)._default_manager.get(pk=obj.pk)) if change and obj.pk else None
        super().save_model(request, obj, form, change)
        new = snapshot(obj)
        if old is not None:
            changed = [name for name in new if old.get(name) != new[name]]
            old, new = {n: old.get(n) for n in changed}, {n: new[n] for n in changed}
        record_audit(
            actor=_admin_actor(request),
            action="update" if change else "create",
            object_type=obj._meta.model_name or "",
            object_id=obj.pk,
            old_values=old,
            new_values=new,
            reason="admin",
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        """Delete (where foreign keys allow), auditing the values removed."""
        values, pk = snapshot(obj), obj.pk
        super().delete_model(request, obj)
        record_audit(
            actor=_admin_actor(request),
            action="delete",
            object_type=obj._meta.model_name or "",
            object_id=pk,
            old_values=values,
            reason="admin",
        )

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk delete would bypass delete_model's audit
        return actions


@admin.register(Clinic)
class ClinicAdmin(RegistryAdminOnly):
    list_display = ("name", "regulatory_status", "nct_id", "lab_accreditation")
    search_fields = ("name", "nct_id")


@admin.register(AllogeneicLot)
class AllogeneicLotAdmin(RegistryAdminOnly):
    list_display = ("lot_number", "product", "released", "released_on")
    list_filter = ("released",)
    search_fields = ("lot_number", "product")


@admin.register(Membership)
class MembershipAdmin(RegistryAdminOnly):
    list_display = ("user", "role", "clinic")
    list_filter = ("role", "clinic")
    search_fields = ("user__username",)
    autocomplete_fields = ("clinic",)


@admin.register(ApiToken)
class ApiTokenAdmin(RegistryAdminOnly):
    """Tokens are issued with ``vertebra manage issue_token``; here they can be seen and
    revoked (set "revoked at"), never created, and the hash is not shown."""

    list_display = (
        "prefix",
        "user",
        "role",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("role",)
    fields = (
        "user",
        "role",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    readonly_fields = ("user", "role", "prefix", "created_at", "last_used_at", "expires_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, read-only for registry admins (the database refuses changes too)."""

    list_display = (
        "seq",
        "occurred_at",
        "actor_username",
        "role",
        "action",
        "object_type",
        "object_id",
        "clinic_id",
        "patient_id",
    )
    list_filter = ("action", "role", "object_type")
    search_fields = ("actor_username", "object_id", "request_id")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_registry_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_registry_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditAlert)
class AuditAlertAdmin(admin.ModelAdmin):
    """Failed verifications of the audit trail (raised by the worker), read-only for registry
    admins; each was also e-mailed to them (ADR 0008)."""

    list_display = (
        "raised_at",
        "checked_by",
        "first_seq",
        "first_problem",
        "problem_count",
        "verify_seq",
        "emailed_to",
    )
    fields = (
        "raised_at",
        "checked_by",
        "first_seq",
        "first_problem",
        "problem_count",
        "message",
        "verify_seq",
        "emailed_to",
    )
    readonly_fields = fields

    @admin.display(description="Checked by", ordering="source")
    def checked_by(self, alert: AuditAlert) -> str:
        return label("audit_source", alert.source)

    @admin.display(description="First problem", ordering="first_kind")
    def first_problem(self, alert: AuditAlert) -> str:
        return label("audit_problem", alert.first_kind)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_registry_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_registry_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
