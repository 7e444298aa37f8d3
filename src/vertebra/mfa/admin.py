"""Admin side of MFA: django-otp's own device pages are removed (they show TOTP secrets and
change devices without an audit row); a superuser resets someone's MFA from the user list
instead (:func:`vertebra.mfa.services.admin_reset_mfa`, audited, never for oneself)."""

from __future__ import annotations

import contextlib

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from vertebra.mfa.services import admin_reset_mfa
from vertebra.registry.admin import StaffUserAdmin

for model in (TOTPDevice, StaticDevice):
    with contextlib.suppress(NotRegistered):  # depends on app order
        admin.site.unregister(model)


class MfaUserAdmin(StaffUserAdmin):
    """The staff user list, with an audited "reset MFA" action."""

    actions = ["reset_mfa"]

    @admin.action(description="Reset multi-factor sign-in (lost phone and recovery codes)")
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """Audited per user; never one's own (use the sign-in security page)."""
        done = [
            user.get_username()
            for user in queryset
            if admin_reset_mfa(admin_user=request.user, user=user, request_id="admin")
        ]
        self.message_user(request, f"MFA reset for: {', '.join(done) or 'nobody'}.")


admin.site.unregister(User)
admin.site.register(User, MfaUserAdmin)
