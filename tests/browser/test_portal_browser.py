"""A patient answers on a phone, loses the connection on submit, retries; a coordinator sees it.

The first "Send" never reaches the server (the connection drops on the way out); the second
reaches it but its response is lost (the connection drops on the way back). The patient goes
back and sends again. Exactly one answer set is stored, and every path ends on the same
confirmation. Screenshots go to the artifacts folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.utils import timezone

from tests.followup.helpers import (
    ANSWERS,
    audit_triggers_restored,
    flushable_audit,
    make_schedule,
    point,
)
from tests.registry.factories import make_actor
from vertebra.core.instruments import get_definition
from vertebra.followup.forms import is_required
from vertebra.followup.models import QuestionnaireResponse, Submission
from vertebra.followup.services import issue_link
from vertebra.registry.models import Role

__all__ = ["audit_triggers_restored", "flushable_audit"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushable_audit")]

PASSWORD = "correct horse battery staple 42"


def _answer_page(page: Any, instrument: str) -> None:
    """Answer the questions of ``instrument`` on the screen shown, then press Next."""
    for name, value in ANSWERS[instrument].items():
        choice = page.locator(f'input[name="{name}"][value="{value}"]')
        if choice.count():
            choice.check()
    with page.expect_navigation():
        page.locator("form.portal-form button[type=submit]").click()


def test_patient_answers_on_a_phone_through_a_dropped_connection(
    live_server: Any, phone_page: Any, page: Any, artifacts_dir: Path, settings: Any
) -> None:
    settings.FOLLOWUP_INSTRUMENTS = {"baseline": ["nrs_back", "odi"], "default": ["nrs_back"]}
    today = timezone.localdate()
    schedule = make_schedule(start=today, today=today, given_name="Ada", family_name="Lovelace")
    baseline = point(schedule, "baseline")
    raw = issue_link(baseline, timezone.now())
    patient = phone_page

    # The link is swapped for a session and a URL without the token.
    patient.goto(f"{live_server.url}/p/open/?t={raw}")
    assert patient.url == f"{live_server.url}/p/q/"
    assert raw not in patient.content()
    patient.screenshot(path=str(artifacts_dir / "portal-1-start-phone.png"), full_page=True)
    patient.get_by_role("link", name="Start").click()

    # Page 1: NRS back pain. A missing answer gets a message next to the question.
    assert "Part 1 of 2" in patient.locator(".progress").inner_text()
    patient.locator("form.portal-form button[type=submit]").click()
    assert patient.locator("#err-pain_back").inner_text() == "Please choose one answer."
    patient.screenshot(path=str(artifacts_dir / "portal-2-validation-phone.png"), full_page=True)
    _answer_page(patient, "nrs_back")

    # Part 2: the ODI, one section per screen.
    for section in range(1, 11):
        assert (
            f"Part 2 of 2 · Question {section} of 10" in patient.locator(".progress").inner_text()
        )
        _answer_page(patient, "odi")
    assert patient.url.endswith("/p/q/review/")
    patient.screenshot(path=str(artifacts_dir / "portal-3-review-phone.png"), full_page=True)
    assert Submission.objects.count() == 0  # nothing is stored before Send

    attempts: list[str] = []

    def flaky(route: Any) -> None:
        attempts.append(route.request.post_data or "")
        if len(attempts) == 1:
            route.abort("connectionreset")  # lost on the way out: the server sees nothing
        elif len(attempts) == 2:
            route.fetch(max_redirects=0)  # the server stores the answers ...
            route.abort("connectionreset")  # ... but the reply is lost on the way back
        else:
            route.continue_()

    patient.route("**/p/q/submit/", flaky)
    for _ in range(2):
        patient.locator("#send").click()
        patient.wait_for_url(lambda url: url.startswith("chrome-error:"))
        # The patient sees a browser error and goes back to the page they were on.
        patient.goto(f"{live_server.url}/p/q/review/")
    assert len(attempts) == 2
    keys = {parse_qs(a)["idempotency_key"][0] for a in attempts}
    assert len(keys) == 1  # the same idempotency key both times
    assert Submission.objects.count() == 1  # the second attempt was stored

    # Back on the review page the questionnaire is already answered: the confirmation shows.
    assert "/p/done/" in patient.url
    reference = Submission.objects.get().reference
    assert patient.locator("#reference").inner_text() == reference
    patient.screenshot(path=str(artifacts_dir / "portal-4-confirmation-phone.png"), full_page=True)

    # A retry of the very same request (same key) gets the same confirmation, stores nothing.
    replay = patient.request.post(
        f"{live_server.url}/p/q/submit/",
        form={k: v[0] for k, v in parse_qs(attempts[0]).items()},
        headers={"Referer": f"{live_server.url}/p/q/review/"},
        max_redirects=0,
    )
    assert replay.status == 303 and replay.headers["location"].endswith(f"ref={reference}")
    assert Submission.objects.count() == 1
    stored = QuestionnaireResponse.objects.filter(time_point=baseline)
    assert sorted(stored.values_list("instrument_id", flat=True)) == ["nrs_back", "odi"]
    assert stored.get(instrument_id="odi").score == 40.0

    # Progress page on the phone: a chart with the MCID words.
    patient.goto(f"{live_server.url}/p/progress/")
    assert patient.locator("figure.progress-figure svg.chart:visible").count() == 2
    patient.screenshot(path=str(artifacts_dir / "portal-5-progress-phone.png"), full_page=True)

    # The coordinator signs in and sees the completion.
    coordinator = make_actor(Role.COORDINATOR, schedule.episode.patient.clinic)
    coordinator.user.set_password(PASSWORD)
    coordinator.user.save()
    page.goto(f"{live_server.url}/accounts/login/?next=/p/staff/")
    page.fill("#id_username", coordinator.user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/p/staff/")
    row = page.locator('#per-time-point tr[data-key="baseline"] td.completed')
    assert row.inner_text() == "1"
    assert (
        "Ada Lovelace"
        in page.locator("#recent").locator("xpath=following-sibling::ul[1]").inner_text()
    )
    page.screenshot(path=str(artifacts_dir / "portal-6-coordinator.png"), full_page=True)


def test_patient_checks_and_changes_answers_before_sending_on_a_phone(
    live_server: Any, phone_page: Any, artifacts_dir: Path, settings: Any
) -> None:
    """One ODI section per screen, answers kept going Back, a review of every answer in words,
    "Change" back to one section and return, and nothing stored until Send."""
    settings.FOLLOWUP_INSTRUMENTS = {
        "baseline": ["nrs_back", "odi", "opioid_use"],
        "default": ["nrs_back"],
    }
    today = timezone.localdate()
    baseline = point(make_schedule(start=today, today=today), "baseline")
    patient = phone_page
    patient.goto(f"{live_server.url}/p/open/?t={issue_link(baseline, timezone.now())}")
    patient.get_by_role("link", name="Start").click()
    _answer_page(patient, "nrs_back")

    odi = get_definition("odi")
    for section, item in enumerate(odi.items, 1):
        assert f"Question {section} of 10" in patient.locator(".progress").inner_text()
        assert patient.locator("legend").inner_text() == item.text  # one question only
        # Six statements, and "Prefer not to answer" where a section may be skipped (sex life).
        optional = 0 if is_required(odi, item) else 1
        assert patient.locator("input[type=radio]").count() == 6 + optional
        for box in (patient.locator("label.choice").nth(0), patient.locator("#next")):
            assert box.bounding_box()["height"] >= 48  # finger-sized targets
        assert patient.evaluate("document.documentElement.scrollWidth") <= 390
        if section == 3:
            patient.screenshot(path=str(artifacts_dir / "portal-odi-section-phone.png"))
            # Back keeps the answer of the previous section.
            patient.locator("#back").click()
            assert patient.locator('input[name="personal_care"][value="2"]').is_checked()
            patient.locator("#next").click()
        _answer_page(patient, "odi")
    _answer_page(patient, "opioid_use")

    # The review: every question with the answer in words; nothing stored yet.
    assert patient.url.endswith("/p/q/review/")
    lifting = patient.locator('[data-item="lifting"]')
    assert lifting.locator("dt").inner_text() == odi.item("lifting").text
    assert lifting.locator("dd.answer").inner_text() == odi.item("lifting").option(2).label
    assert patient.locator('[data-item="current_use"] dd.answer').inner_text() == "No"
    assert patient.locator("dl.answers .answer-row").count() == 1 + 10 + 3
    assert patient.evaluate("document.documentElement.scrollWidth") <= 390
    patient.screenshot(path=str(artifacts_dir / "portal-review-phone.png"), full_page=True)
    assert Submission.objects.count() == 0
    assert QuestionnaireResponse.objects.count() == 0

    # Change one answer: straight to its section, then back to the review.
    lifting.get_by_role("link", name="Change").click()
    assert "Question 3 of 10" in patient.locator(".progress").inner_text()
    patient.locator('input[name="lifting"][value="5"]').check()
    patient.get_by_role("button", name="Save and go back to my answers").click()
    patient.wait_for_url("**/p/q/review/#part-2")
    changed = odi.item("lifting").option(5).label
    assert patient.locator('[data-item="lifting"] dd.answer').inner_text() == changed
    assert Submission.objects.count() == 0

    # Send: stored once, with the changed answer.
    patient.locator("#send").click()
    patient.wait_for_url("**/p/done/**")
    assert Submission.objects.count() == 1
    stored = QuestionnaireResponse.objects.get(time_point=baseline, instrument_id="odi")
    assert stored.answers["lifting"] == 5 and stored.answers["walking"] == 2
    patient.screenshot(path=str(artifacts_dir / "portal-done-phone.png"), full_page=True)
