"""A person opens the home page in a real Chromium, on a desktop and on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_home_page_in_chromium(live_server: Any, page: Any, artifacts_dir: Path) -> None:
    page.goto(live_server.url + "/")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "Honest outcomes for stem cell therapy of chronic low back pain"
    # The stylesheet is served by the app (no CDN) and applied.
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
    # Keyboard users can skip to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.screenshot(path=str(artifacts_dir / "home-desktop.png"), full_page=True)


def test_home_page_on_a_phone_has_no_horizontal_scroll(
    live_server: Any, phone_page: Any, artifacts_dir: Path
) -> None:
    phone_page.goto(live_server.url + "/")
    assert phone_page.get_by_role("link", name="Learn about back pain").is_visible()
    scroll_width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390
    phone_page.screenshot(path=str(artifacts_dir / "home-phone.png"), full_page=True)


def test_api_docs_page_loads_without_external_assets(live_server: Any, page: Any) -> None:
    external: list[str] = []
    page.on(
        "request",
        lambda request: (
            external.append(request.url) if not request.url.startswith(live_server.url) else None
        ),
    )
    page.goto(live_server.url + "/api/v1/docs")
    page.wait_for_selector(".swagger-ui", timeout=10_000)
    assert external == []
