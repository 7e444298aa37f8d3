"""Django admin for the registry's reference data, restricted to registry admins.

* Clinics, allogeneic lots and memberships are editable by superusers and users holding the
  ``registry_admin`` role (they also need ``is_staff`` to sign in to the admin at all). Every
  change made here is audited (same transaction, old and new values), like a service write.
* The audit trail is visible to the same people and read-only: no add, change or delete.
* Patient data is not in the admin: it is reached only through the scoped, audited pages.
  The one clinical screen is the sterility worklist (:class:`ProcessingAdmin`): processed
  products by product id, lab and date (no patient identifiers), for clinicians who also sign in
  to the admin; its actions record the lab's result through the same audited service as the
  patient page (``record_sterility_result``), scoped to the clinician's clinics.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from vertebra.registry import services
from vertebra.registry.audit import record_audit, snapshot
from vertebra.registry.errors import RegistryError
from vertebra.registry.models import (
    AllogeneicLot,
    ApiToken,
    AuditEvent,
    Clinic,
    Membership,
    Processing,
    Role,
    Sterility,
)
from vertebra.registry.permissions import Actor
from vertebra.registry.validation import plausibility_refusals


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


class PlausibleForm(forms.ModelForm):
    """An admin form that applies the plausibility rules of the one validation gate
    (``registry.validation``) beside the model's own validation, as field errors."""

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # builds self.instance (not in the stubs)
        for refusal in plausibility_refusals(self.instance, today=timezone.localdate()):
            if refusal.field in self.fields and refusal.field not in self.errors:
                self.add_error(refusal.field, refusal.message)


class RegistryAdminOnly(admin.ModelAdmin):
    """Reference data: registry admins only; every save and delete audited; plausibility
    rules apply (a lot cannot be released in the future or before 1900)."""

    form = PlausibleForm

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


def _clinician_actor(request: HttpRequest) -> Actor | None:
    """The signed-in admin user acting as a clinician, or None when they are not one."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return None
    try:
        return Actor.for_user(user, Role.CLINICIAN, request_id="admin")
    except RegistryError:
        return None


def _record_sterility(request: HttpRequest, queryset: QuerySet[Processing], result: str) -> None:
    """Record ``result`` for each selected pending product through the audited service."""
    actor = _clinician_actor(request)
    if actor is None:
        messages.error(request, "Only a clinician of the product's clinic records sterility.")
        return
    done, skipped = 0, []
    for processing in queryset.select_related("harvest"):
        if processing.sterility != Sterility.PENDING:
            skipped.append(processing.product_id)
            continue
        try:
            services.record_sterility_result(
                actor=actor, episode_id=processing.harvest.episode_id, sterility=result
            )
        except (RegistryError, ValidationError) as exc:
            messages.error(request, f"{processing.product_id}: {exc}")
        else:
            done += 1
    if done:
        messages.success(request, f"Sterility recorded as {result} for {done} product(s).")
    if skipped:
        messages.warning(
            request,
            "Not changed (a result is already recorded; correct it on the patient's page, with "
            f"a reason): {', '.join(skipped)}.",
        )


@admin.register(Processing)
class ProcessingAdmin(admin.ModelAdmin):
    """Sterility worklist: clinicians record the lab's result for pending products.

    Read-only rows (no add, change or delete here); the two actions go through
    ``record_sterility_result``, which checks the clinician's clinic and audits the change.
    """

    list_display = ("product_id", "lab", "processed_on", "method", "sterility")
    list_filter = ("sterility", "method")
    search_fields = ("product_id", "lab")
    fields = ("product_id", "lab", "processed_on", "method", "sterility")
    readonly_fields = fields
    actions = ("record_pass", "record_fail")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Processing]:
        actor = _clinician_actor(request)
        clinics = actor.clinic_ids if actor is not None else frozenset()
        return (
            super().get_queryset(request).filter(harvest__episode__patient__clinic_id__in=clinics)
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _clinician_actor(request) is not None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _clinician_actor(request) is not None

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Record sterility result: pass")
    def record_pass(self, request: HttpRequest, queryset: QuerySet[Processing]) -> None:
        _record_sterility(request, queryset, Sterility.PASS)

    @admin.action(description="Record sterility result: fail")
    def record_fail(self, request: HttpRequest, queryset: QuerySet[Processing]) -> None:
        _record_sterility(request, queryset, Sterility.FAIL)
