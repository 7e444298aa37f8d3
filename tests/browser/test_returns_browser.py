"""The clinic lead reads return to work on the outcomes dashboard in Chromium, on a desktop and
on a 390 px phone: the table opens, names who is counted (the denominators) and shows the share
returned by 3, 6, 12 and 24 months; no console errors or CSP violations, no sideways scroll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_outcomes_dashboard import Console, _load_and_sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

VIEWPORTS = {
    "desktop": {"viewport": {"width": 1366, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_return_to_work_table_on_the_dashboard(
    live_server: Any, browser: Any, artifacts_dir: Path, device: str
) -> None:
    context = browser.new_context(**VIEWPORTS[device])
    page = context.new_page()
    console = Console(page)
    _load_and_sign_in(live_server, page)
    counted = page.locator("details#return-to-work-counted")
    counted.locator("summary").click()
    assert counted.get_attribute("open") is not None
    headers = counted.locator("table thead th").all_inner_texts()
    assert headers[:3] == ["Treatment", "Working at baseline", "Off work because of the back"]
    assert "off work because of their back at baseline" in counted.inner_text()
    details = page.locator("details#return-to-work")
    details.locator("summary").click()
    table = details.locator("table")
    assert table.is_visible()
    headers = table.locator("thead th").all_inner_texts()
    assert headers[:4] == ["Treatment", "By", "Returned", "95% CI"]
    text = table.inner_text()
    assert "3 months" in text and "12 months" in text
    assert (
        page.evaluate("document.documentElement.scrollWidth")
        <= VIEWPORTS[device]["viewport"]["width"]
    )  # type: ignore[index]
    counted.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / f"returns-dashboard-{device}.png"))
    assert console.problems == []
    context.close()
