"""The public clinic directory in Chromium, on a 390 px phone and a desktop: the list, a clinic
page and a comparison, from the demo's own setup (a synthetic registry whose clinics
published). On every page: no console error, no CSP violation, no sideways scroll, the
synthetic label visible. Screenshots go to test-artifacts/directory/ (look at them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.test_crawl import CSP_LISTENER
from vertebra.outcomes import snapshot
from vertebra.registry.models import Clinic
from vertebra.web.services.demo import load_demo_cohort

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = {"phone": (390, 844), "desktop": (1366, 900)}
#: The width in px of the narrowest visible value of a definition list in the page's main part.
NARROWEST_VALUE = """
() => Math.min(10000, ...Array.from(document.querySelectorAll('main dd'))
  .map(dd => dd.getBoundingClientRect().width).filter(w => w > 0))
"""


@pytest.fixture
def demo() -> list[int]:
    """The demo's setup with 500 synthetic patients (three clinics, all published)."""
    snapshot.results.clear()
    now = timezone.now()
    load_demo_cohort(patients=500, seed=42, today=now.date(), now=now)
    return list(Clinic.objects.order_by("pk").values_list("pk", flat=True))


@pytest.mark.parametrize("size", list(SIZES))
def test_directory_clinic_and_compare_read_well(
    live_server: Any, browser: Any, demo: list[int], artifacts_dir: Path, size: str
) -> None:
    width, height = SIZES[size]
    phone = size == "phone"
    context = browser.new_context(
        viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone
    )
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    shots = artifacts_dir / "directory"
    shots.mkdir(parents=True, exist_ok=True)

    def check(name: str) -> None:
        assert page.evaluate("window.__cspViolations") == [], page.url
        assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url
        assert page.locator("#synthetic-note").is_visible(), page.url
        # No value squeezed into a sliver beside its label (one letter per line).
        narrowest = page.evaluate(NARROWEST_VALUE)
        assert narrowest >= 120, (page.url, narrowest)
        assert errors == [], (page.url, errors)
        page.screenshot(path=str(shots / f"{name}-{size}.png"), full_page=True)

    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Clinics", exact=True).click()
    page.wait_for_url("**/clinics/")
    assert page.locator("li.dir-card").count() == 3
    check("index")

    # Tick two clinics and compare them: stacked cards on a phone, side by side on a desktop.
    page.locator(f"#pick-{demo[0]}").check()
    page.locator(f"#pick-{demo[2]}").check()
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(f"**/clinics/compare/?c={demo[0]}&c={demo[2]}")
    cards = page.locator("article.dir-compare-card")
    assert cards.count() == 2
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert first is not None and second is not None
    if phone:
        assert second["y"] >= first["y"] + first["height"]  # stacked
    else:
        assert abs(second["y"] - first["y"]) < 1 and second["x"] > first["x"]  # side by side
    check("compare")

    page.locator("article.dir-compare-card h2 a").first.click()
    page.wait_for_url(f"**/clinics/{demo[0]}/")
    figures = page.locator(".dir-figures .headline")
    assert figures.count() >= 3
    assert "of" in figures.nth(0).locator(".headline-detail").inner_text()
    assert page.get_by_text("NCT", exact=False).first.is_visible()
    check("clinic")
    context.close()
