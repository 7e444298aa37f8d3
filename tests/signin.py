"""Sign-in helpers for tests, with the second factor (TOTP) that staff roles may need.

* :func:`enrol_totp` gives a user a confirmed authenticator with a known key (arranging a
  test, like the factories: no audit row).
* :func:`totp_code` is the code that authenticator shows now (the next unused one).
* :func:`sign_in` signs a Django test client in the way a person does: password at
  ``/accounts/login/``, then the code at ``/accounts/mfa/verify/`` when one is owed.
* :func:`browser_sign_in` does the same in a Playwright page, setting up an authenticator on
  the way when the role requires one and the account has none.
* :func:`mark_verified` is what ``Client.force_login`` does in this suite besides signing in
  (see ``tests/conftest.py``): ``force_login`` stands for a completed sign-in, every factor
  included, so tests that use it as a registry admin or researcher reach their pages.
"""

from __future__ import annotations

import re
from base64 import b32decode
from typing import Any
from urllib.parse import urlencode

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

#: The key of every authenticator :func:`enrol_totp` makes (hex; base32 JBSWY3DPEHPK3PXP...).
TEST_TOTP_KEY = "48656c6c6f21deadbeef48656c6c6f21deadbeef"


def enrol_totp(user: Any, key: str = TEST_TOTP_KEY) -> TOTPDevice:
    """Give ``user`` a confirmed authenticator with ``key`` (the existing one if any)."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(
            user=user, name="Test authenticator", key=key, confirmed=True
        )
    return device


def totp_code(device: TOTPDevice) -> str:
    """The code ``device`` accepts next: the current time step's, or the following step's
    when the current one was already used (a code works once, django-otp's ``last_t``)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    now = totp.t()
    step = now if now > device.last_t else device.last_t + 1
    totp.time = totp.time + (step - now) * device.step
    return f"{totp.token():0{device.digits}d}"


def code_for_secret(secret: str) -> str:
    """The current code of a base32 ``secret`` as the setup page shows it (spaces allowed)."""
    key = b32decode(re.sub(r"\s+", "", secret).upper())
    return f"{TOTP(key).token():06d}"


def mark_verified(client: Client, user: Any) -> None:
    """Record in ``client``'s session that ``user`` passed the second factor, enrolling an
    authenticator first if the user has none and their role requires one."""
    from vertebra.mfa.services import has_mfa, mfa_required

    if not (has_mfa(user) or mfa_required(user)):
        return
    device = enrol_totp(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def sign_in(client: Client, username: str, password: str, *, next_url: str = "/clinic/") -> Any:
    """Sign ``client`` in through the real pages (password, then the TOTP code if owed).

    Returns the last response (the redirect to ``next_url`` when all went well). The user's
    authenticator must exist already (:func:`enrol_totp`) when a code is owed.
    """
    response = client.post(
        "/accounts/login/", {"username": username, "password": password, "next": next_url}
    )
    follow = client.get(next_url)
    if follow.status_code == 302 and follow["Location"].startswith("/accounts/mfa/verify/"):
        device = TOTPDevice.objects.get(user__username=username, confirmed=True)
        response = client.post(
            "/accounts/mfa/verify/", {"code": totp_code(device), "next": next_url}
        )
    return response


def browser_sign_in(
    page: Any, base_url: str, username: str, password: str, *, next_url: str | None = "/clinic/"
) -> None:
    """Sign in at ``/accounts/login/`` in a Playwright page, as a person would.

    When the account has an authenticator, the current code is read from the database (the
    live server shares it with the test); when its role requires one and it has none, the
    setup page is completed with the key it shows, and the recovery codes are acknowledged.
    Ends on ``next_url``; with ``next_url=None``, on the page the sign-in itself leads to (the
    role's home).
    """
    query = f"?{urlencode({'next': next_url})}" if next_url is not None else ""
    page.goto(f"{base_url}/accounts/login/{query}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    if "/accounts/mfa/setup/" in page.url:
        secret = page.locator("#mfa-secret").inner_text()
        page.locator("#id_code").fill(code_for_secret(secret))
        page.get_by_role("button", name="Turn on multi-factor sign-in").click()
        page.get_by_role("link", name="I have saved my codes, continue").click()
        page.wait_for_load_state()
    elif "/accounts/mfa/verify/" in page.url:
        device = TOTPDevice.objects.get(user__username=username, confirmed=True)
        page.locator("#id_code").fill(totp_code(device))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
