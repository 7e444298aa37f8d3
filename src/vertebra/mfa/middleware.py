"""Send a signed-in user who still owes a second factor to the MFA pages.

After the password step (``/accounts/login/``) a user is authenticated but not verified:

* a user with an authenticator must enter a code (``/accounts/mfa/verify/``);
* a user without one, whose role requires MFA (``settings.MFA_REQUIRED_ROLES``), must set one
  up first (``/accounts/mfa/setup/``);
* anyone else (staff in other roles who have not enrolled, patients) goes on as before.

Until then every page answers with a redirect there (``next`` kept), except the MFA pages,
sign-out, static files and the JSON API (bearer tokens, no session). Runs after django-otp's
``OTPMiddleware``, which marks the user verified from the session.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from vertebra.mfa.services import has_mfa, mfa_required

#: Paths a half-signed-in user may still reach.
OPEN_PREFIXES = ("/accounts/mfa/", "/accounts/logout/", "/accounts/login/", "/static/", "/api/")


def owed_step(request: HttpRequest) -> str | None:
    """``"verify"``, ``"setup"`` or None (nothing owed) for the request's user."""
    user = request.user
    if not user.is_authenticated:
        return None
    is_verified = getattr(user, "is_verified", None)
    if is_verified is not None and is_verified():
        return None
    if has_mfa(user):
        return "verify"
    if mfa_required(user):
        return "setup"
    return None


class MfaRequiredMiddleware:
    """Redirect to the owed MFA step (see module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(OPEN_PREFIXES):
            step = owed_step(request)
            if step is not None:
                target = reverse(f"mfa:{step}")
                return HttpResponseRedirect(
                    f"{target}?{urlencode({'next': request.get_full_path()})}"
                )
        return self.get_response(request)
