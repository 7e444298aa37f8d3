"""A clinic lead opens the outcomes dashboard in Chromium, filters by arm and condition, sees
the figures update, and downloads the PDF. Screenshots are saved to the artifacts folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry.models import Clinic, Membership, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"
TODAY = dt.date(2026, 11, 25)


def test_clinic_lead_filters_the_dashboard_and_downloads_the_pdf(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    cohort = generate_cohort(120, 11, today=TODAY)
    load_cohort(cohort, now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))
    lead = User.objects.create_user(username="lead", password=PASSWORD)
    for clinic in Clinic.objects.all():
        Membership.objects.create(user=lead, clinic=clinic, role=Role.CLINICIAN)
    pairs = cohort.patients.groupby(["arm", "condition"], observed=True).size()
    (arm, condition), n_pair = pairs.idxmax(), int(pairs.max())

    page.goto(live_server.url + "/accounts/login/?next=/clinic/outcomes/")
    page.locator("#id_username").fill("lead")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/clinic/outcomes/")
    size = page.locator("#cohort-size")
    assert "120 patients" in size.inner_text()
    caption = page.locator("#trajectory-odi-caption")
    assert "120 patients" in caption.inner_text()
    assert page.locator("svg.chart").count() >= 6
    assert page.get_by_text("Observational, not proof of cause").is_visible()
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard.png"), full_page=True)

    page.get_by_label("Arm", exact=True).select_option(arm)
    page.get_by_label("Condition", exact=True).select_option(condition)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(f"**arm={arm}**")
    assert f"{n_pair} patient" in size.inner_text()
    assert f"{n_pair} patients in the filtered cohort" in caption.inner_text()
    assert page.get_by_label("Arm", exact=True).input_value() == arm
    page.screenshot(path=str(artifacts_dir / "outcomes-dashboard-filtered.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF").click()
    download = info.value
    target = artifacts_dir / "outcomes-report.pdf"
    download.save_as(str(target))
    data = target.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert f"arm={arm}" in download.url and f"condition={condition}" in download.url
