"""A person walks the self-assessment in Chromium to each verdict, and reads the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web import assess_answers as answers
from vertebra.web.assess import STEP_SLUGS

pytestmark = pytest.mark.django_db(transaction=True)


def fill_step(page: Any, values: dict[str, object]) -> None:
    """Answer one step the way a person would: tick boxes, pick options, type numbers."""
    for name, value in values.items():
        if isinstance(value, list):
            for item in value:
                page.locator(f'input[name="{name}"][value="{item}"]').check()
        elif page.locator(f'input[type="radio"][name="{name}"]').count():
            page.locator(f'input[name="{name}"][value="{value}"]').check()
        else:
            page.locator(f'input[name="{name}"]').fill(str(value))


def walk(page: Any, base_url: str, steps: dict[str, dict[str, object]]) -> None:
    """Start the check and answer each step until the result page shows."""
    page.goto(base_url + "/assess/")
    page.get_by_role("link", name="Start the check").click()
    for slug in STEP_SLUGS:
        fill_step(page, steps.get(slug, {}))
        with page.expect_navigation():
            page.locator("form.assess button[type=submit]").click()
        if page.url.endswith("/assess/result/"):
            return
    raise AssertionError(f"never reached the result page; at {page.url}")


@pytest.mark.parametrize(
    ("name", "steps", "title"),
    [
        ("emergency", answers.EMERGENCY, "Go to an emergency department now"),
        ("refer", answers.REFER, "See a doctor first"),
        ("not_candidate", answers.NOT_CANDIDATE, "Not a candidate right now"),
        ("needs_more_information", answers.NEEDS_MORE_INFORMATION, "We need more information"),
        ("candidate", answers.CANDIDATE, "You meet the usual starting criteria"),
    ],
)
def test_walk_to_each_verdict(
    live_server: Any,
    phone_page: Any,
    artifacts_dir: Path,
    name: str,
    steps: dict[str, dict[str, object]],
    title: str,
) -> None:
    walk(phone_page, live_server.url, steps)
    assert phone_page.locator("#verdict-title").inner_text() == title
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.screenshot(path=str(artifacts_dir / f"assess-{name}.png"), full_page=True)


def test_back_button_keeps_answers_and_errors_sit_next_to_fields(
    live_server: Any, page: Any
) -> None:
    page.goto(live_server.url + "/assess/warning-signs/")
    page.locator("form.assess button[type=submit]").click()
    error = page.locator("#err-red_flags")
    assert "Tick the signs you have" in error.inner_text()
    page.get_by_label("None of these").check()
    page.locator("form.assess button[type=submit]").click()
    page.locator('input[name="age"]').fill("52")
    page.locator("form.assess button[type=submit]").click()
    page.get_by_role("link", name="Back").click()
    assert page.locator('input[name="age"]').input_value() == "52"


def test_comparison_table_renders_five_options(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    page.goto(live_server.url + "/learn/treatments/compare/")
    table = page.get_by_role("table")
    rows = table.locator("tbody tr")
    assert rows.count() == 5
    headers = table.locator("thead th").all_inner_texts()
    assert "Certainty of evidence" in headers
    assert "Stem cell" in table.inner_text() or "Cell" in table.inner_text()
    page.screenshot(path=str(artifacts_dir / "learn-compare.png"), full_page=True)


def test_a_cause_page_shows_its_codes_and_sources(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    page.goto(live_server.url + "/learn/")
    page.get_by_role("link", name="Sciatica", exact=False).first.click()
    assert page.get_by_role("heading", level=1).inner_text()
    assert page.locator("table code").first.inner_text().startswith("M")
    page.screenshot(path=str(artifacts_dir / "learn-sciatica.png"), full_page=True)
