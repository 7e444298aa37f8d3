"""Corrections in real Chromium through the live server: a harvest volume corrected with a reason
and seen in the record's history, a record voided with a reason (struck through), and a stale
edit answered 409 with the other change. Screenshots in test-artifacts/corrections-*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.registry.corrections_world import build_world
from vertebra.registry import corrections
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.models import ClinicalEvent, Diagnosis, Harvest, Membership, Role

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"


def sign_in(page: Any, base_url: str, username: str) -> None:
    page.goto(base_url + "/accounts/login/?next=/clinic/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_correct_void_and_a_stale_edit(live_server: Any, page: Any, artifacts_dir: Path) -> None:
    world = build_world("Browser Correction Clinic", family_name="Okafor", given_name="Ada")
    user = User.objects.create_user(username="doc", password=PASSWORD)
    Membership.objects.create(user=user, clinic=world.clinic, role=Role.CLINICIAN)
    problems: list[str] = []

    def console(message: Any) -> None:
        url = str(message.location.get("url", ""))
        # The refused form (400) and the conflict (409) are this test's own answers; the test
        # server serves no favicon. Anything else (a CSP violation, a script error) counts.
        expected = url.endswith("/favicon.ico") or (
            "/clinic/records/" in url
            and ("status of 400" in message.text or "status of 409" in message.text)
        )
        if message.type == "error" and not expected:
            problems.append(f"{message.text} {url}")

    page.on("console", console)
    harvest, event = world.records["harvests"], world.records["clinical-events"]
    diagnosis = world.records["diagnoses"]
    base = live_server.url
    patient_url = f"{base}/clinic/patients/{world.patient.pk}/"
    sign_in(page, base, "doc")

    # --- a harvest volume corrected with a reason, then seen in its history
    page.goto(patient_url)
    page.locator(f"#harvest-{harvest.pk} .record-correct").click()
    assert page.locator("h1").inner_text() == "Correct: Harvest of 1 Mar 2024"
    assert page.get_by_label("Volume (mL)").input_value() == "60.0"
    page.get_by_label("Volume (mL)").fill("50")
    with page.expect_navigation():
        page.get_by_role("button", name="Save the correction").click()
    assert "Give a reason" in page.locator("#form-errors").inner_text()  # nothing saved yet
    assert Harvest.objects.get(pk=harvest.pk).volume_ml == 60
    page.get_by_label("Reason").fill("typo: 60 → 50 mL (lab sheet says 50)")
    page.screenshot(path=str(artifacts_dir / "corrections-1-form.png"), full_page=True)
    page.get_by_role("button", name="Save the correction").click()
    page.wait_for_url(f"**/clinic/patients/{world.patient.pk}/**")
    assert "correction saved" in page.locator(".messages").inner_text()
    assert "50.0 mL" in page.locator(f"#harvest-{harvest.pk}").inner_text()
    page.screenshot(path=str(artifacts_dir / "corrections-2-saved.png"), full_page=True)
    page.locator(f"#harvest-{harvest.pk} .record-history").click()
    history = page.locator("#history").inner_text()
    assert "Corrected" in history and "typo: 60 → 50 mL (lab sheet says 50)" in history
    row = page.locator(".history-corrected tbody tr").first
    assert row.locator("th").inner_text() == "Volume (mL)"
    assert [c.inner_text() for c in row.locator("td").all()] == ["60", "50"]
    assert "by doc (Clinician)" in history
    page.screenshot(path=str(artifacts_dir / "corrections-3-history.png"), full_page=True)

    # --- a record voided with a reason: struck through, never deleted
    page.goto(patient_url)
    page.locator(f"#clinicalevent-{event.pk} .record-void").click()
    page.get_by_label("Reason").fill("entered on the wrong patient")
    page.screenshot(path=str(artifacts_dir / "corrections-4-void-confirm.png"), full_page=True)
    page.get_by_role("button", name="Void this record").click()
    page.wait_for_url(f"**/clinic/patients/{world.patient.pk}/**")
    item = page.locator(f"#clinicalevent-{event.pk}")
    assert item.locator("del").first.inner_text() == "Repeat injection"
    assert "entered on the wrong patient" in item.locator(".void-note").inner_text()
    assert item.locator(".record-correct").count() == 0
    assert ClinicalEvent.objects.get(pk=event.pk).voided_at is not None
    page.screenshot(path=str(artifacts_dir / "corrections-5-voided.png"), full_page=True)

    # --- a stale edit: someone corrects the diagnosis while this form is open
    page.goto(patient_url)
    page.locator(f"#diagnosis-{diagnosis.pk} .record-correct").click()
    page.get_by_label("Pfirrmann grade (classic, 1–5)").fill("4")
    page.get_by_label("Reason").fill("MRI report re-read")
    corrections.correct_record(
        actor=world.coordinator, record_type="diagnoses", object_id=diagnosis.pk,
        expected_version=1, changes={"pfirrmann_grade": 2}, reason="radiologist's addendum",
    )  # fmt: skip
    with (
        page.expect_navigation(),
        page.expect_response(lambda r: r.request.method == "POST") as answer,
    ):
        page.get_by_role("button", name="Save the correction").click()
    assert answer.value.status == 409
    assert "changed by someone else" in page.locator("#conflict-message").inner_text()
    missed = page.locator("#missed-changes").inner_text()
    assert "radiologist's addendum" in missed and world.coordinator.user.username in missed
    mine = page.locator("#your-values").inner_text()
    assert "Pfirrmann grade (classic, 1–5)\t2\t4" in mine
    assert Diagnosis.objects.get(pk=diagnosis.pk).pfirrmann_grade == 2  # nothing overwritten
    page.screenshot(path=str(artifacts_dir / "corrections-6-conflict-409.png"), full_page=True)
    # Saving again from the conflict page is a deliberate act against the current version.
    page.get_by_role("button", name="Save my correction").click()
    page.wait_for_url(f"**/clinic/patients/{world.patient.pk}/**")
    assert Diagnosis.objects.get(pk=diagnosis.pk).pfirrmann_grade == 4

    assert problems == []
    assert verify_audit_chain() == []


def test_correction_pages_have_no_serious_accessibility_violations(
    live_server: Any, browser: Any
) -> None:
    """axe-core (WCAG 2.1 A/AA) on the correction, void, history and 409 pages."""
    from tests.browser.test_accessibility import serious_violations

    world = build_world("Axe Correction Clinic")
    user = User.objects.create_user(username="axe-doc", password=PASSWORD)
    Membership.objects.create(user=user, clinic=world.clinic, role=Role.CLINICIAN)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "axe-doc")
        harvest = world.records["harvests"]
        for kind in ("correct", "void", "history"):
            page.goto(f"{live_server.url}/clinic/records/harvests/{harvest.pk}/{kind}/")
            assert serious_violations(page) == [], kind
        page.goto(f"{live_server.url}/clinic/records/harvests/{harvest.pk}/correct/")
        page.get_by_label("Reason").fill("typo")
        corrections.correct_record(
            actor=world.clinician, record_type="harvests", object_id=harvest.pk,
            expected_version=1, changes={"volume_ml": 58.0}, reason="weighed again",
        )  # fmt: skip
        with page.expect_navigation():
            page.get_by_role("button", name="Save the correction").click()
        assert page.locator("#conflict-message").count() == 1
        assert serious_violations(page) == []
    finally:
        context.close()
