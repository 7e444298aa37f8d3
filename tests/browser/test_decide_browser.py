"""A person goes from the self-assessment to "patients like you" in Chromium, reads the
figures beside the evidence on a phone and on a desktop, and axe finds no serious problem."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.test_accessibility import serious_violations
from tests.browser.test_assess_browser import walk
from tests.web import assess_answers as answers
from vertebra.cohort.loader import load_cohort
from vertebra.core.charts import icon_count
from vertebra.core.decision import decision_rules
from vertebra.core.synth import generate_cohort
from vertebra.web import decision_selectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """120 synthetic patients and a minimum cell size of 3 (the real 20 would hide every
    figure of so small a registry; that case is checked too)."""
    load_cohort(generate_cohort(120, 11, today=timezone.localdate()), now=timezone.now())
    rules = dataclasses.replace(decision_rules(), min_patients=3)
    monkeypatch.setattr(decision_selectors, "rules", lambda: rules)
    yield


@pytest.fixture
def axe_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_from_the_self_assessment_to_patients_like_you_on_a_phone(
    live_server: Any, phone_page: Any, registry: None, artifacts_dir: Path
) -> None:
    walk(phone_page, live_server.url, answers.CANDIDATE)
    phone_page.get_by_role("link", name="Patients like you").last.click()
    phone_page.wait_for_url("**/decide/?condition=herniated_disc&age=47")
    assert phone_page.locator("#id_condition").input_value() == "herniated_disc"
    assert phone_page.locator("#id_age").input_value() == "47"
    assert (
        "Herniated or bulging disc".lower()
        in phone_page.locator("#similarity").inner_text().lower()
    )
    assert phone_page.locator("svg.decide-chart").is_visible()
    assert phone_page.locator("#decide-table tbody tr").count() == len(decision_rules().arms)
    assert phone_page.get_by_text("Observational figures, not proof of cause").is_visible()
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.screenshot(path=str(artifacts_dir / "decide-phone.png"), full_page=True)


def test_filling_the_form_shows_each_arm_beside_the_evidence(
    live_server: Any, page: Any, registry: None, artifacts_dir: Path
) -> None:
    page.goto(live_server.url + "/decide/")
    page.get_by_label("What has a doctor said is causing your back pain?").select_option(
        "degenerative_disc_disease"
    )
    page.get_by_label("Your age in years").fill("45")
    page.get_by_role("button", name="Show patients like me").click()
    page.wait_for_url("**/decide/?condition=degenerative_disc_disease&age=45**")
    for arm in decision_rules().arms:
        section = page.locator(f"#arm-section-{arm.id}")
        assert section.get_by_role("heading", name="In this registry").is_visible()
        assert section.get_by_role("heading", name="In published studies").is_visible()
        assert section.locator("ul.evidence li").count() >= 1
    cell = page.locator("#arm-section-cell_therapy")
    assert cell.get_by_text("No benefit found").first.is_visible()
    registry_text = " ".join(page.locator(".arm-registry").all_inner_texts())
    assert "somewhere between" in registry_text or "No one like you yet" in registry_text
    page.screenshot(path=str(artifacts_dir / "decide-desktop.png"), full_page=True)
    # A bad age is answered next to the field, not with an error page.
    page.get_by_label("Your age in years").fill("12")
    page.get_by_role("button", name="Show patients like me").click()
    assert "greater than or equal to 18" in page.locator("#err-age").inner_text()


def test_decision_aid_pages_have_no_serious_accessibility_violations(
    live_server: Any, axe_page: Any, registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in (
        "/decide/",
        "/decide/?condition=degenerative_disc_disease&age=45",
        "/decide/?condition=sciatica&age=61&odi=44&startback=high",
        "/decide/?condition=degenerative_disc_disease&age=10",
    ):
        axe_page.goto(live_server.url + path)
        assert serious_violations(axe_page) == [], path
    # With the real minimum the arms widen or say "no one like you yet": accessible too.
    monkeypatch.setattr(decision_selectors, "rules", decision_rules)
    axe_page.goto(live_server.url + "/decide/?condition=degenerative_disc_disease&age=45")
    assert axe_page.locator(".too-few, .group.widened").first.is_visible()
    assert serious_violations(axe_page) == []


#: The three example stories (vertebra.core.synth.stories): condition and age.
STORY_PROFILES = (
    ("office_worker", "degenerative_disc_disease", 52),
    ("fitness_enthusiast", "herniated_disc", 47),
    ("retired_teacher", "sciatica", 60),
)


@pytest.mark.parametrize(("story", "condition", "age"), STORY_PROFILES)
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_each_story_profile_shows_icon_arrays_and_the_synthetic_label(
    live_server: Any,
    page: Any,
    phone_page: Any,
    registry: None,
    artifacts_dir: Path,
    story: str,
    condition: str,
    age: int,
    device: str,
) -> None:
    """The stories' profiles on the synthetic demo registry: every arm shows figures from a
    named group with a 100-person icon array whose filled count matches its numbers, or says
    "no one like you yet"; the synthetic label is there; no console error or CSP report."""
    tab = phone_page if device == "phone" else page
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(f"{live_server.url}/decide/?condition={condition}&age={age}")
    assert tab.locator("#synthetic-note").is_visible()
    assert "Synthetic demo data" in tab.locator("#synthetic-note").inner_text()
    shown = 0
    for arm in decision_selectors.rules().arms:
        section = tab.locator(f"#arm-section-{arm.id}")
        if section.locator(".too-few").count():
            assert "No one like you yet" in section.inner_text()
            continue
        shown += 1
        svg = section.locator("svg.chart-icons")
        assert svg.is_visible()
        assert svg.locator("g.icon").count() == 100
        filled = int(svg.get_attribute("data-filled"))
        assert svg.locator("g.icon.on").count() == filled
        text = " ".join(section.inner_text().split())
        m = re.search(r"score \((\d+)\), (\d+) improved", text)
        assert m is not None, text
        assert filled == icon_count(int(m.group(2)), int(m.group(1)))
        assert "Figures from" in text or "from a wider group" in text
        assert (svg.locator("title").text_content() or "").startswith(f"{filled} of 100")
    assert shown >= 1
    if device == "phone":
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    tab.screenshot(path=str(artifacts_dir / f"decide-{story}-{device}.png"), full_page=True)
    assert errors == []
