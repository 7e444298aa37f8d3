"""A researcher's first sign-in in Chromium: password, then the required authenticator setup
(QR code under the site's CSP, key as text), recovery codes once, the outcomes page; then a
second sign-in with the code. Screenshots at desktop and phone size; no console error or CSP
violation. ASVS 4.0.3 L2 / 5.0 6.3.3 (MFA for researchers and admins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.signin import browser_sign_in, code_for_secret, totp_code
from vertebra.registry.models import AuditEvent, Membership, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"


def person(username: str, role: str, *, is_staff: bool = False) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)
    Membership.objects.create(user=user, clinic=None, role=role)
    return user


def watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return errors


def test_researcher_sets_up_mfa_then_signs_in_with_a_code(
    live_server: Any, browser: Any, artifacts_dir: Path
) -> None:
    user = person("res", Role.RESEARCHER)
    base = live_server.url
    for size, viewport in (("desk", (1280, 900)), ("phone", (390, 844))):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{base}/accounts/login/?next=/clinic/outcomes/")
        page.locator("#id_username").fill("res")
        page.locator("#id_password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        if size == "desk":
            page.wait_for_url("**/accounts/mfa/setup/**")
            qr = page.locator("#mfa-qr")
            assert qr.is_visible() and qr.evaluate("img => img.naturalWidth") > 100
            secret = page.locator("#mfa-secret").inner_text()
            page.screenshot(path=str(artifacts_dir / f"mfa-setup-{size}.png"), full_page=True)
            page.locator("#id_code").fill(code_for_secret(secret))
            page.get_by_role("button", name="Turn on multi-factor sign-in").click()
            page.wait_for_url("**/accounts/mfa/setup/")
            assert page.locator("#recovery-codes li").count() == 10
            page.screenshot(path=str(artifacts_dir / f"mfa-recovery-codes-{size}.png"))
            page.get_by_role("link", name="I have saved my codes, continue").click()
        else:  # second sign-in, on a phone: the code step
            page.wait_for_url("**/accounts/mfa/verify/**")
            page.screenshot(path=str(artifacts_dir / f"mfa-verify-{size}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport[0]
            device = TOTPDevice.objects.get(user=user, confirmed=True)
            page.locator("#id_code").fill(totp_code(device))
            page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/clinic/outcomes/")
        assert page.get_by_role("heading", name="Outcomes").is_visible()
        # Chromium's own /favicon.ico request is the site's, not these pages' (no icon yet)
        assert [e for e in errors if "/favicon.ico" not in e] == [], errors
        context.close()
    actions = list(
        AuditEvent.objects.filter(object_type="mfa", actor_user_id=user.pk).values_list(
            "action", flat=True
        )
    )
    assert actions == ["mfa_enrol", "mfa_verify"]


def test_the_sign_in_helper_handles_every_step(live_server: Any, page: Any) -> None:
    """``tests.signin.browser_sign_in``: what other browser tests use for any demo role."""
    person("admin", Role.REGISTRY_ADMIN, is_staff=True)
    browser_sign_in(page, live_server.url, "admin", PASSWORD, next_url="/admin/")
    assert page.url.endswith("/admin/")
    page.context.clear_cookies()
    browser_sign_in(page, live_server.url, "admin", PASSWORD, next_url="/admin/")
    assert page.url.endswith("/admin/") and "Site administration" in page.content()
