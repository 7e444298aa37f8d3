"""Automated accessibility checks (axe-core, WCAG 2.1 A/AA rules) on every public page.

axe-core ships inside the axe-playwright-python wheel, so this runs offline. The browser context
bypasses our CSP only to inject axe's script; the pages themselves are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.web import assess_answers as answers

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    "/",
    "/learn/",
    "/learn/causes/sciatica/",
    "/learn/treatments/cell-therapy/",
    "/learn/treatments/compare/",
    "/learn/regulation/",
    "/assess/",
    "/assess/warning-signs/",
    "/assess/scans-and-surgery/",
    "/decide/",
    "/accounts/login/",
    "/p/signin/",
]


@pytest.fixture
def axe_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def serious_violations(page: Any) -> list[str]:
    """Run axe on the page; return 'rule: target' for serious and critical violations."""
    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in {"serious", "critical"}:
            targets = ", ".join(str(node["target"]) for node in violation["nodes"][:3])
            found.append(f"{violation['id']}: {targets}")
    return found


@pytest.mark.parametrize("path", PAGES)
def test_page_has_no_serious_accessibility_violations(
    live_server: Any, axe_page: Any, path: str
) -> None:
    axe_page.goto(live_server.url + path)
    assert serious_violations(axe_page) == []


def test_result_page_has_no_serious_accessibility_violations(
    live_server: Any, axe_page: Any
) -> None:
    axe_page.goto(live_server.url + "/assess/warning-signs/")
    axe_page.locator('input[name="red_flags"][value="cancer_history"]').check()
    axe_page.locator("form.assess button[type=submit]").click()
    for slug, values in list(answers.REFER.items())[1:]:
        for name, value in values.items():
            if isinstance(value, list):
                for item in value:
                    axe_page.locator(f'input[name="{name}"][value="{item}"]').check()
            elif axe_page.locator(f'input[type="radio"][name="{name}"]').count():
                axe_page.locator(f'input[name="{name}"][value="{value}"]').check()
            else:
                axe_page.locator(f'input[name="{name}"]').fill(str(value))
        axe_page.locator("form.assess button[type=submit]").click()
        assert slug
    assert axe_page.url.endswith("/assess/result/")
    assert serious_violations(axe_page) == []


STAFF_PAGES = [
    "/clinic/",
    "/clinic/outcomes/",
    "/p/staff/",
]


@pytest.fixture
def signed_in_clinician(live_server: Any, browser: Any) -> Iterator[tuple[Any, int]]:
    """A clinician of the first clinic of a small loaded cohort, signed in; (page, patient id)."""
    import datetime as dt

    from django.contrib.auth.models import User
    from django.test import Client

    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    from vertebra.registry.models import Clinic, Membership, Patient

    load_cohort(
        generate_cohort(40, 5, today=dt.date(2026, 11, 25)),
        now=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC),
    )
    clinic = Clinic.objects.order_by("id").first()
    user = User.objects.create_user("a11y-clinician", password="a-long-test-password-1")
    Membership.objects.create(user=user, clinic=clinic, role="clinician")
    client = Client()
    client.force_login(user)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    host = live_server.url.split("//", 1)[1].split(":")[0]
    context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": client.cookies["sessionid"].value,
                "domain": host,
                "path": "/",
            }
        ]
    )
    patient = Patient.objects.filter(clinic=clinic).order_by("id").first()
    assert patient is not None
    yield context.new_page(), patient.pk
    context.close()


def test_staff_pages_have_no_serious_accessibility_violations(
    live_server: Any, signed_in_clinician: tuple[Any, int]
) -> None:
    page, patient_id = signed_in_clinician
    for path in [
        *STAFF_PAGES,
        f"/clinic/patients/{patient_id}/",
        f"/clinic/outcomes/patient/{patient_id}/",
    ]:
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, path
        assert serious_violations(page) == [], path
