"""Every staff role signs in at /accounts/login/ in Chromium and lands on its own worklist, at
desktop and phone size; screenshots go to test-artifacts/homes-<role>-<size>.png.

Also walks the two refusal-free journeys the homes promise: the registry admin verifies the
audit trail from the home, and a coordinator who types the adjudication queue's address gets the
plain-language refusal and a way back to their work list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.signin import browser_sign_in
from tests.web.worklist_world import FAST_HASHERS, PASSWORD, build_world
from vertebra.registry.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

#: username → text the home must show (its own worklist, not another role's).
HOMES = {
    "clinician": ("Adverse events to adjudicate", "Patients with something due"),
    "coordinator": ("Call list", "Follow-ups due and overdue"),
    "clinicadmin": ("Clinic settings", "Staff"),
    "admin": ("Audit trail verification", "Allogeneic lots"),
    "researcher": ("De-identified outcomes dashboard", "Exports for analysis"),
}


@pytest.fixture
def world(settings: Any) -> Iterator[None]:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    build_world()
    yield


def watch(page: Any) -> list[str]:
    """Console errors (CSP violations included) and failed requests of ``page``.

    A missing ``/favicon.ico`` is left out: the browser asks for it by itself and the favicon
    belongs to the public pages' work, not to these pages. Other failed loads are reported by
    URL (their console line does not name it).
    """
    errors: list[str] = []

    def console(msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    def response(resp: Any) -> None:
        # A refused page itself (a "document") is tested as such; its assets must load.
        failed = resp.status >= 400 and resp.request.resource_type != "document"
        if failed and not resp.url.endswith("/favicon.ico"):
            errors.append(f"{resp.status} {resp.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def sign_in(page: Any, base_url: str, username: str) -> None:
    """Password, then the second factor for the roles that must have one (registry admins,
    researchers), as a person does; ends on the role's home."""
    browser_sign_in(page, base_url, username, PASSWORD, next_url=None)
    page.wait_for_url("**/clinic/home/")


def fits(page: Any) -> bool:
    """No sideways scrolling: the page is no wider than the viewport."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("username", list(HOMES))
def test_each_role_lands_on_its_worklist(
    live_server: Any, world: None, browser: Any, artifacts_dir: Path, username: str, size: str
) -> None:
    viewport = (
        {"width": 1280, "height": 900} if size == "desktop" else {"width": 390, "height": 844}
    )
    context = browser.new_context(viewport=viewport, is_mobile=size == "phone")
    page = context.new_page()
    errors = watch(page)
    try:
        sign_in(page, live_server.url, username)
        assert page.get_by_role("heading", level=1).inner_text() == "My work"
        for text in HOMES[username]:
            assert page.get_by_text(text, exact=False).first.is_visible(), text
        nav = page.get_by_role("navigation", name="Clinic")
        assert nav.get_by_role("link", name="My work").get_attribute("aria-current") == "page"
        if username == "clinician":
            first_row = page.locator("table.ae-queue tbody tr").first
            assert "Serious" in first_row.inner_text()
            assert "Seriousevent" in first_row.inner_text()
        assert fits(page), f"{username} home scrolls sideways at {size} size"
        page.screenshot(path=str(artifacts_dir / f"homes-{username}-{size}.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


def test_registry_admin_verifies_the_audit_trail_from_home(
    live_server: Any, world: None, page: Any, artifacts_dir: Path
) -> None:
    errors = watch(page)
    sign_in(page, live_server.url, "admin")
    assert "never been verified" in page.locator("#last-verification").inner_text()
    page.get_by_role("button", name="Verify now").click()
    page.wait_for_url("**/clinic/home/#audit")
    assert "The audit trail is intact" in page.get_by_role("status").first.inner_text()
    last = page.locator("#last-verification").inner_text()
    assert "Intact" in last and "Admin (Registry admin)" in last
    assert AuditEvent.objects.filter(action="verify", object_type="audit_chain").count() == 1
    page.screenshot(path=str(artifacts_dir / "homes-admin-verified.png"), full_page=True)
    assert errors == []


def test_a_typed_address_refused_in_plain_words_leads_back_home(
    live_server: Any, world: None, phone_page: Any, artifacts_dir: Path
) -> None:
    page = phone_page
    sign_in(page, live_server.url, "coordinator")
    response = page.goto(live_server.url + "/clinic/adverse-events/")
    assert response is not None and response.status == 403
    refusal = page.locator("#refusal").inner_text()
    assert refusal == (
        "Coordinators cannot adjudicate adverse events; a clinician at your clinic does this."
    )
    assert fits(page)
    page.screenshot(path=str(artifacts_dir / "homes-coordinator-refused-phone.png"), full_page=True)
    page.get_by_role("link", name="Go to your work list").click()
    page.wait_for_url("**/clinic/home/")
    assert page.get_by_role("heading", level=1).inner_text() == "My work"


@pytest.mark.parametrize("username", list(HOMES))
def test_homes_have_no_serious_accessibility_violations(
    live_server: Any, world: None, browser: Any, username: str
) -> None:
    from tests.browser.test_accessibility import serious_violations

    # The context bypasses the CSP only so axe's script can be injected; pages are unchanged.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url, username)
        assert serious_violations(page) == []
        refused = "/clinic/" if username in ("admin", "researcher") else "/clinic/adverse-events/"
        if username != "clinician":
            page.goto(live_server.url + refused)
            assert page.locator("#refusal").is_visible()
            assert serious_violations(page) == []
        else:
            page.goto(live_server.url + "/clinic/adverse-events/")
            assert serious_violations(page) == []
    finally:
        context.close()


def test_a_person_with_two_roles_switches_on_a_phone(
    live_server: Any, world: None, phone_page: Any, artifacts_dir: Path
) -> None:
    from django.contrib.auth.models import User

    from vertebra.registry.models import Membership, Role

    Membership.objects.create(
        user=User.objects.get(username="clinician"), clinic=None, role=Role.RESEARCHER
    )
    page = phone_page
    errors = watch(page)
    sign_in(page, live_server.url, "clinician")
    assert page.get_by_label("Acting as").input_value() == "clinician"
    assert fits(page)
    page.screenshot(path=str(artifacts_dir / "homes-two-roles-phone.png"))
    page.get_by_label("Acting as").select_option("researcher")
    page.get_by_role("button", name="Switch role").click()
    page.wait_for_url("**/clinic/home/")
    nav = page.get_by_role("navigation", name="Clinic")
    assert nav.get_by_role("link").all_inner_texts() == ["My work", "Outcomes"]
    assert page.get_by_text("De-identified outcomes dashboard").is_visible()
    assert page.get_by_text("Seriousevent").count() == 0
    assert errors == []
