"""axe-core (WCAG 2.1 A/AA) on the portal's questionnaire screens, its review page and the 404
page: no serious or critical violation, at phone size, where older patients answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.test_accessibility import serious_violations
from tests.browser.test_portal_browser import _answer_page
from tests.followup.helpers import make_schedule, point
from vertebra.followup.screens import plan
from vertebra.followup.services import issue_link

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def axe_phone(browser: Any) -> Iterator[Any]:
    """A phone-sized page whose context lets axe's script in (the pages are unchanged)."""
    context = browser.new_context(
        bypass_csp=True, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    yield context.new_page()
    context.close()


def test_questionnaire_review_and_404_have_no_serious_violations(
    live_server: Any, axe_phone: Any, settings: Any
) -> None:
    settings.FOLLOWUP_INSTRUMENTS = {"baseline": ["nrs_back", "odi", "opioid_use"]}
    today = timezone.localdate()
    baseline = point(make_schedule(start=today, today=today), "baseline")
    page, base = axe_phone, live_server.url
    page.goto(f"{base}/p/open/?t={issue_link(baseline, timezone.now())}")
    found: dict[str, list[str]] = {"start": serious_violations(page)}

    page.goto(f"{base}/p/q/2/")  # ODI section 1 of 10
    found["odi section"] = serious_violations(page)
    with page.expect_navigation():
        page.locator("#next").click()  # nothing chosen: the message beside the question
    assert page.locator("#err-pain_intensity").is_visible()
    found["odi section with an error"] = serious_violations(page)

    page.goto(f"{base}/p/q/1/")
    for screen in plan(baseline.instruments):
        _answer_page(page, screen.instrument_id)
    assert page.url.endswith("/p/q/review/")
    found["review"] = serious_violations(page)

    page.goto(f"{base}/no/such/page/")
    found["404"] = serious_violations(page)
    assert {name: v for name, v in found.items() if v} == {}
