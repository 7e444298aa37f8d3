"""PSFS in a real browser: a patient names two activities at baseline (desktop), re-rates them
by name at the 6-week questionnaire (phone) and sees them on the progress page. Zero console
errors. Screenshots go to the artifacts folder (psfs-*.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.followup.helpers import audit_triggers_restored, flushable_audit, make_schedule, point
from vertebra.followup.models import PsfsActivities, QuestionnaireResponse
from vertebra.followup.services import issue_link

__all__ = ["audit_triggers_restored", "flushable_audit"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushable_audit")]


def _errors(page: Any) -> list[str]:
    """Collect console errors and uncaught page errors (CSP violations are console errors)."""
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: found.append(str(e)))
    return found


def _next(page: Any) -> None:
    with page.expect_navigation():
        page.locator("#next").click()


def test_patient_names_two_activities_then_re_rates_them(
    live_server: Any, page: Any, phone_page: Any, artifacts_dir: Path, settings: Any
) -> None:
    settings.FOLLOWUP_INSTRUMENTS = {"baseline": ["nrs_back", "psfs"], "default": ["psfs"]}
    today = timezone.localdate()
    schedule = make_schedule(start=today, today=today)
    baseline, week_6 = point(schedule, "baseline"), point(schedule, "week_6")
    desktop_errors = _errors(page)

    # Baseline on a desktop: pain, then the activities in the patient's own words.
    page.goto(f"{live_server.url}/p/open/?t={issue_link(baseline, timezone.now())}")
    page.goto(f"{live_server.url}/p/q/1/")
    page.locator('input[name="pain_back"][value="6"]').check()
    _next(page)
    assert "walking for 30 minutes" in page.locator("#q-name_1").inner_text()
    page.fill("#id_name_1", "Walking to the shops")
    page.select_option("#id_activity_1", "3")
    page.fill("#id_name_2", "walking to the shops ")
    page.select_option("#id_activity_2", "5")
    _next(page)
    assert "named twice" in page.locator("#err-name_2").inner_text()
    page.fill("#id_name_2", "Playing with my grandchildren")
    page.screenshot(path=str(artifacts_dir / "psfs-1-naming-desktop.png"), full_page=True)
    _next(page)
    assert page.url.endswith("/p/q/review/")
    review = page.locator("#part-2").inner_text()
    assert (
        "\u201cWalking to the shops\u201d" in review and "Playing with my grandchildren" in review
    )
    page.screenshot(path=str(artifacts_dir / "psfs-2-review-desktop.png"), full_page=True)
    with page.expect_navigation():
        page.locator("#send").click()
    assert "/p/done/" in page.url
    assert PsfsActivities.objects.get().names == [
        "Walking to the shops",
        "Playing with my grandchildren",
    ]

    # Six weeks later on a phone: the same activities, by name, nothing to write.
    week_6.opens, week_6.target = today, max(week_6.target, today)
    week_6.status = "open"
    week_6.save()
    phone_errors = _errors(phone_page)
    phone = phone_page
    phone.goto(f"{live_server.url}/p/open/?t={issue_link(week_6, timezone.now())}")
    phone.goto(f"{live_server.url}/p/q/1/")
    assert phone.locator('input[type="text"]').count() == 0
    assert "\u201cWalking to the shops\u201d" in phone.locator("#q-activity_1").inner_text()
    phone.select_option("#id_activity_1", "6")
    phone.select_option("#id_activity_2", "7")
    phone.screenshot(path=str(artifacts_dir / "psfs-3-rerating-phone.png"), full_page=True)
    _next(phone)
    with phone.expect_navigation():
        phone.locator("#send").click()
    assert "/p/done/" in phone.url
    assert QuestionnaireResponse.objects.get(time_point=week_6).score == 6.5

    phone.goto(f"{live_server.url}/p/progress/")
    table = phone.locator("#progress-psfs").inner_text()
    assert "Walking to the shops" in table and "Playing with my grandchildren" in table
    assert "was 4 out of 10 at Baseline and 6.5 at" in table
    phone.screenshot(path=str(artifacts_dir / "psfs-4-progress-phone.png"), full_page=True)
    assert desktop_errors == [] and phone_errors == []
