"""Django admin for the registry's reference data, restricted to registry admins.

* Clinics, allogeneic lots and memberships are editable by superusers and users holding the
  ``registry_admin`` role (they also need ``is_staff`` to sign in to the admin at all). Every
  change made here is audited (same transaction, old and new values), like a service write.
* Memberships (who holds which role where) are granted and revoked only through
  :mod:`vertebra.registry.memberships`, with a reason: nobody can grant a role to themselves.
  An existing membership is never edited in place (revoke it and grant another).
* The audit trail is visible to the same people and read-only: no add, change or delete.
  Values of rows about a patient, and identifying fields anywhere, are masked; a registry admin
  who needs them opens the row's break-glass view, which asks for a reason and writes an
  ``break_glass`` audit row before showing them (HIPAA 164.312(a)(2)(ii), least privilege).
* Patient data is not in the admin: it is reached only through the scoped, audited pages.
  The one clinical screen is the sterility worklist (:class:`ProcessingAdmin`): processed
  products by product id, lab and date (no patient identifiers), for clinicians who also sign in
  to the admin; its actions record the lab's result through the same audited service as the
  patient page (``record_sterility_result``), scoped to the clinician's clinics.
  Patients' portal logins are left out of the user list (their e-mail is the patient's).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from vertebra.core.labels import label
from vertebra.registry import services
from vertebra.registry.audit import record_audit, snapshot
from vertebra.registry.errors import PermissionDeniedError, RegistryError
from vertebra.registry.memberships import (
    SUPERUSER_ROLE,
    check_grant,
    grant_membership,
    revoke_membership,
)
from vertebra.registry.models import (
    AllogeneicLot,
    ApiToken,
    AuditAlert,
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
    role = Role.REGISTRY_ADMIN.value if not getattr(user, "is_superuser", False) else SUPERUSER_ROLE
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


class GrantForm(PlausibleForm):
    """Grant a role: who, which role, where, and why. The granting admin is ``acting_user``
    (set by :meth:`MembershipAdmin.get_form`); granting to oneself is refused here already
    (audited), and again by the service on save."""

    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this person needs this role (kept in the audit trail).",
    )
    acting_request: HttpRequest | None = None

    class Meta:
        model = Membership
        fields = ("user", "role", "clinic")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        user = data.get("user")
        if user is not None and self.acting_request is not None:
            try:
                check_grant(actor=_admin_actor(self.acting_request), user_id=user.pk)
            except PermissionDeniedError as exc:
                raise ValidationError(str(exc)) from None
        return data


@admin.register(Membership)
class MembershipAdmin(RegistryAdminOnly):
    """Roles are granted (with a reason, never to oneself) and revoked; never edited."""

    list_display = ("user", "role", "clinic")
    list_filter = ("role", "clinic")
    search_fields = ("user__username",)
    autocomplete_fields = ("clinic",)
    form = GrantForm

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and is_registry_admin(request.user)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":  # staff only: patients' portal logins hold no role
            kwargs["queryset"] = User.objects.filter(patient_account__isnull=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type("BoundGrantForm", (form,), {"acting_request": request})

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        """Grant through the audited service (the only way a membership is created here)."""
        if change:
            raise PermissionDenied("Memberships are not edited: revoke and grant again.")
        assert isinstance(obj, Membership)
        granted = grant_membership(
            actor=_admin_actor(request),
            user_id=obj.user_id,
            role=obj.role,
            clinic_id=obj.clinic_id,
            reason=form.cleaned_data["reason"],
        )
        obj.pk = granted.pk

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        """Revoke through the audited service."""
        assert obj.pk is not None
        revoke_membership(actor=_admin_actor(request), membership_id=obj.pk, reason="admin")


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
        "id",
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
    exclude = ("old_values", "new_values")
    readonly_fields = ("old_values_masked", "new_values_masked", "identified_values")

    @admin.display(description="Old values")
    def old_values_masked(self, obj: AuditEvent) -> Any:
        return mask_audit_values(obj.old_values, patient_row=obj.patient_id is not None)

    @admin.display(description="New values")
    def new_values_masked(self, obj: AuditEvent) -> Any:
        return mask_audit_values(obj.new_values, patient_row=obj.patient_id is not None)

    @admin.display(description="Identified values")
    def identified_values(self, obj: AuditEvent) -> str:
        if not _masks_something(obj):
            return "Nothing is masked in this row."
        url = reverse("admin:registry_auditevent_reveal", args=[obj.pk])
        return format_html(
            '<a href="{}">Show the identified values</a> (asks for a reason; audited)', url
        )

    def get_urls(self) -> list[URLPattern]:
        reveal = path(
            "<int:event_id>/reveal/",
            self.admin_site.admin_view(self.reveal_view),
            name="registry_auditevent_reveal",
        )
        return [reveal, *super().get_urls()]

    def reveal_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        """Break glass: a reason, then one audited look at the row's identified values.

        GET asks for the reason; POST with a reason of at least 10 characters writes an
        ``break_glass`` audit row (who, which row, the patient, the reason) and shows the
        values in that response only (nothing kept in the session).
        """
        if not is_registry_admin(request.user):
            raise PermissionDenied
        event = get_object_or_404(AuditEvent, pk=event_id)
        form = BreakGlassForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "event": event,
            "form": form,
            "title": f"Identified values of audit row {event.pk}",
            "revealed": False,
        }
        if request.method == "POST" and form.is_valid():
            with transaction.atomic():
                record_audit(
                    actor=_admin_actor(request),
                    action="break_glass",
                    object_type="auditevent",
                    object_id=event.pk,
                    clinic_id=event.clinic_id,
                    patient_id=event.patient_id,
                    reason=form.cleaned_data["reason"],
                )
            context.update(revealed=True, old_values=event.old_values, new_values=event.new_values)
        response = TemplateResponse(
            request,
            "admin/registry/auditevent/reveal.html",
            context,
            status=400 if request.method == "POST" and not form.is_valid() else 200,
        )
        response["Cache-Control"] = "no-store"
        return response

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


# --------------------------------------------------------------------------- masking


#: Keys whose values identify a person wherever they appear in an audit row (Safe Harbor
#: identifiers the registry stores): masked even in rows that are not about a patient.
IDENTIFYING_KEYS = frozenset(
    {"mrn", "given_name", "family_name", "date_of_birth", "email", "phone", "username"}
)
MASK = "•••• masked"


def mask_audit_values(values: Any, *, patient_row: bool) -> Any:
    """``values`` with what a registry admin may not read replaced by :data:`MASK`.

    In a row about a patient (``patient_id`` set) every value is masked: the keys show what
    changed, not to what. Elsewhere only :data:`IDENTIFYING_KEYS` are masked. Nested
    mappings and lists are masked the same way.
    """
    if isinstance(values, dict):
        return {
            key: (
                MASK
                if (patient_row and not isinstance(item, dict | list)) or key in IDENTIFYING_KEYS
                else mask_audit_values(item, patient_row=patient_row)
            )
            for key, item in values.items()
        }
    if isinstance(values, list):
        return [mask_audit_values(item, patient_row=patient_row) for item in values]
    return MASK if patient_row and values is not None else values


def _masks_something(event: AuditEvent) -> bool:
    patient_row = event.patient_id is not None
    return any(
        mask_audit_values(values, patient_row=patient_row) != values
        for values in (event.old_values, event.new_values)
    )


class BreakGlassForm(forms.Form):
    """Why the identified values are needed now (kept in the audit trail)."""

    reason = forms.CharField(
        min_length=10,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="For example the incident or request this is for. At least 10 characters.",
    )


# ----------------------------------------------------------------------------- users


class StaffUserAdmin(UserAdmin):
    """Django's user admin without patients' portal logins (identified: their e-mail and name
    are the patient's); those accounts are managed through the patient's clinic."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).filter(patient_account__isnull=True)


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
