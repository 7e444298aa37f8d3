"""Anna (story 1 of the synthetic cohort) opens "My progress" from her e-mail link on a desktop
and on a 390 px phone: besides her pain and disability charts she reads her own work answers
in words (off work at baseline, back on reduced hours at 3 months), with no prediction; no
console errors or CSP violations, no sideways scroll."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.test_outcomes_dashboard import Console
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.followup.models import FollowUpTimePoint
from vertebra.followup.services import issue_link
from vertebra.registry.models import Patient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

VIEWPORTS = {
    "desktop": {"viewport": {"width": 1366, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_anna_reads_her_work_answers(
    live_server: Any, browser: Any, artifacts_dir: Path, device: str
) -> None:
    today = timezone.localdate()
    load_cohort(generate_cohort(30, 3, today=today), now=timezone.now())
    anna = Patient.objects.get(family_name="Whitfield")
    point = FollowUpTimePoint.objects.filter(patient_id=anna.pk).order_by("-months").first()
    assert point is not None
    raw = issue_link(point, timezone.now() - dt.timedelta(minutes=1))
    context = browser.new_context(**VIEWPORTS[device])
    page = context.new_page()
    console = Console(page)
    page.goto(f"{live_server.url}/p/open/?t={raw}")
    page.goto(f"{live_server.url}/p/progress/")
    work = page.locator("#progress-work")
    assert work.is_visible()
    text = work.inner_text()
    assert "At Baseline you were off work because of your back." in text
    assert "At 3 months you answered “Working with reduced hours or lighter duties" in text
    rows = work.locator("tbody tr").all_inner_texts()
    assert len(rows) >= 4 and "Off work (sick leave or disability) because of my back" in rows[0]
    assert "Working full time, usual duties" in rows[-1]
    width = VIEWPORTS[device]["viewport"]["width"]  # type: ignore[index]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    work.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / f"progress-work-{device}.png"))
    assert console.problems == []
    context.close()
