"""Django admin for system clients (registry admins only, audited like other reference data)
and a read-only view of export jobs. Clients are also registered with
``vertebra fhir-client add`` (:mod:`vertebra.cli.fhirclient_cmd`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from vertebra.core.fhir import RESOURCE_TYPES
from vertebra.core.fhir.smart import ScopeError, parse_scopes
from vertebra.fhirbulk.auth import ClientError, check_jwks
from vertebra.fhirbulk.models import BackendClient, ClientKind, ExportJob
from vertebra.registry.admin import PlausibleForm, RegistryAdminOnly, is_registry_admin


class BackendClientForm(PlausibleForm):
    """The JWKS must hold public RSA/EC keys with ids; the scope must be grantable."""

    class Meta:
        model = BackendClient
        fields = ("client_id", "name", "clinic", "jwks", "scope", "revoked_at")

    def clean_jwks(self) -> Any:
        try:
            return check_jwks(self.cleaned_data.get("jwks"))
        except ClientError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_scope(self) -> str:
        scope = str(self.cleaned_data.get("scope", ""))
        try:
            parse_scopes(scope, RESOURCE_TYPES)
        except ScopeError as exc:
            raise forms.ValidationError(str(exc)) from None
        return scope

    def _post_clean(self) -> None:
        # The kind follows the clinic (the model's check constraint): set it before validation.
        clinic = self.cleaned_data.get("clinic")
        self.instance.kind = ClientKind.CLINIC if clinic is not None else ClientKind.RESEARCH
        if self.instance.created_at is None:
            self.instance.created_at = timezone.now()
        super()._post_clean()


@admin.register(BackendClient)
class BackendClientAdmin(RegistryAdminOnly):
    form = BackendClientForm
    list_display = ("client_id", "name", "kind", "clinic", "scope", "created_at", "revoked_at")
    list_filter = ("kind",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: jobs and the audit trail name the client


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """Export jobs, read-only (who asked, the scope, the state)."""

    list_display = ("id", "client", "user", "level", "status", "created_at", "finished_at")
    list_filter = ("status", "level")

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
