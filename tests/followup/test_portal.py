"""The portal pages through Django's test client: screens (one instrument, or one ODI section,
per page), drafts, the review page, idempotency."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import ANSWERS, PSFS_NAMES, answers_for, make_schedule, point
from tests.registry.factories import make_user
from vertebra.core.instruments import get_definition
from vertebra.followup.models import (
    FollowUpTimePoint,
    QuestionnaireResponse,
    Submission,
    TimePointStatus,
)
from vertebra.followup.screens import Screen, plan
from vertebra.followup.services import issue_link, submit_responses
from vertebra.registry.models import PatientAccount

pytestmark = pytest.mark.django_db


@pytest.fixture
def baseline():
    today = timezone.localdate()
    return point(make_schedule(start=today, today=today), "baseline")


def _open(client: Client, tp) -> None:
    raw = issue_link(tp, timezone.now())
    assert client.get(f"/p/open/?t={raw}").status_code == 302


def _post_screen(client: Client, screen: Screen, **query: str):
    data = {k: str(v) for k, v in ANSWERS[screen.instrument_id].items() if k in screen.item_ids}
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return client.post(f"/p/q/{screen.number}/{suffix}", data)


def _post_page(client: Client, number: int, instrument: str):
    """Answer screen ``number``, which shows (part of) ``instrument``."""
    screen = plan(_current_instruments(client))[number - 1]
    assert screen.instrument_id == instrument
    return _post_screen(client, screen)


def _current_instruments(client: Client) -> list[str]:
    state = client.session["fu"]
    return FollowUpTimePoint.objects.get(public_id=state["tp"]).instruments


def _answer_all(client: Client, tp) -> None:
    for screen in plan(tp.instruments):
        response = _post_screen(client, screen)
        assert response.status_code == 302, (screen, response.content[:500])


def _screen_of(tp, instrument: str, question: int | None = None) -> Screen:
    return next(
        s
        for s in plan(tp.instruments)
        if s.instrument_id == instrument and (question is None or s.question == question)
    )


def _key(client: Client) -> str:
    page = client.get("/p/q/review/").content.decode()
    match = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_short_instruments_fill_a_screen_with_progress(client: Client, baseline) -> None:
    _open(client, baseline)
    page = client.get("/p/q/1/").content.decode()
    assert f"Part 1 of {len(baseline.instruments)}" in page
    assert "<progress" in page and "Back pain intensity" in page
    assert "Question 1 of" not in page  # a one-question instrument has no question counter
    total = len(plan(baseline.instruments))
    assert client.get(f"/p/q/{total + 1}/").status_code == 404
    assert client.get("/p/q/0/").status_code == 404


def test_odi_goes_one_section_per_screen(client: Client, baseline) -> None:
    _open(client, baseline)
    odi = [s for s in plan(baseline.instruments) if s.instrument_id == "odi"]
    assert [s.question for s in odi] == list(range(1, 11))
    assert [s.number for s in odi] == list(range(odi[0].number, odi[0].number + 10))
    third = client.get(f"/p/q/{odi[2].number}/").content.decode()
    part = baseline.instruments.index("odi") + 1
    assert f"Part {part} of {len(baseline.instruments)}" in third
    assert "Question 3 of 10" in third
    assert third.count('type="radio"') == 6  # one section's six statements, no more
    assert 'name="lifting"' in third and 'name="pain_intensity"' not in third
    # Back goes to the previous section; Next moves on, keeping the answer.
    assert f'href="/p/q/{odi[1].number}/"' in third
    moved = client.post(f"/p/q/{odi[2].number}/", {"lifting": "4"})
    assert moved.status_code == 302 and moved["Location"] == f"/p/q/{odi[3].number}/"
    client.post(f"/p/q/{odi[0].number}/", {"pain_intensity": "1"})
    drafts = client.session["fu_drafts"][str(baseline.public_id)]["odi"]
    assert drafts == {"lifting": "4", "pain_intensity": "1"}  # kept across screens
    assert re.search(
        r'name="lifting" value="4"[^>]*checked',
        client.get(f"/p/q/{odi[2].number}/").content.decode(),
    )


def test_each_invalid_answer_gets_a_message_next_to_it(client: Client, baseline) -> None:
    _open(client, baseline)
    first = _screen_of(baseline, "odi", 1)
    response = client.post(f"/p/q/{first.number}/", {"pain_intensity": "9"})
    assert response.status_code == 200 and 'class="error-summary"' in response.content.decode()
    html = response.content.decode()
    assert 'id="err-pain_intensity"' in html and "Please choose one of the answers shown." in html
    # The message sits inside the question's own fieldset, right under its legend.
    assert re.search(
        r'id="q-pain_intensity"[^>]*>\s*<legend>[^<]*</legend>\s*<p class="error"', html
    )
    blank = client.post(f"/p/q/{first.number + 1}/", {})
    assert blank.status_code == 200 and 'id="err-personal_care"' in blank.content.decode()
    # ODI section 8 (sex life) may be left blank: the ODI scores with one gap.
    sex_life = _screen_of(baseline, "odi", 8)
    assert client.post(f"/p/q/{sex_life.number}/", {}).status_code == 302
    # On a screen with several questions, a valid answer is kept when another one is not.
    promis = _screen_of(baseline, "promis_pf_4a")
    mixed = client.post(f"/p/q/{promis.number}/", {"pf4a_1": "3", "pf4a_2": "9"})
    assert mixed.status_code == 200 and 'id="err-pf4a_3"' in mixed.content.decode()
    again = client.get(f"/p/q/{promis.number}/").content.decode()
    assert re.search(r'name="pf4a_1" value="3"[^>]*checked', again)


def test_opioid_yes_needs_the_drug_and_dose(client: Client, baseline) -> None:
    _open(client, baseline)
    page = _screen_of(baseline, "opioid_use").number
    response = client.post(f"/p/q/{page}/", {"current_use": "1", "daily_dose": "lots"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "please choose which one" in html and "Please enter a number from 0 to 100000." in html


def test_answers_survive_leaving_and_returning(client: Client, baseline) -> None:
    _open(client, baseline)
    _post_page(client, 1, "nrs_back")
    client.get("/learn/")  # wander off
    start = client.get("/p/q/").content.decode()
    assert "Continue where I stopped" in start and "/p/q/2/" in start
    assert re.search(
        r'name="pain_back" value="6"[^>]*checked', client.get("/p/q/1/").content.decode()
    )


def test_double_submit_stores_once_and_shows_the_same_confirmation(
    client: Client, baseline
) -> None:
    _open(client, baseline)
    _answer_all(client, baseline)
    key = _key(client)
    assert _key(client) == key  # the same key however often the page is shown (tabs)
    first = client.post("/p/q/submit/", {"idempotency_key": key})
    second = client.post("/p/q/submit/", {"idempotency_key": key})
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"]
    assert Submission.objects.count() == 1
    assert QuestionnaireResponse.objects.filter(time_point=baseline).count() == len(
        baseline.instruments
    )
    done = client.get(first["Location"]).content.decode()
    reference = Submission.objects.get().reference
    assert "your answers were received" in done and reference in done
    baseline.refresh_from_db()
    assert baseline.status == TimePointStatus.COMPLETED
    # A forged second submission with another key is refused with a clear message.
    refused = client.post("/p/q/submit/", {"idempotency_key": "x" * 24})
    assert refused.status_code == 409 and "already answered" in refused.content.decode()


def test_submit_with_missing_parts_shows_the_review_with_what_is_missing(
    client: Client, baseline
) -> None:
    _open(client, baseline)
    _post_page(client, 1, "nrs_back")
    response = client.post("/p/q/submit/", {"idempotency_key": "k" * 24})
    review = response.content.decode()
    assert response.status_code == 200 and "Your answers were not sent." in review
    assert 'id="missing"' in review and "Part 2:" in review and Submission.objects.count() == 0


def test_answers_that_do_not_fit_together_say_which_part_to_change(
    client: Client, baseline
) -> None:
    """Each page accepts "no opioid" with a dose typed in; the submission refuses the pair.
    The patient sees which part to change, with a link to it, not the same page again."""
    _open(client, baseline)
    _answer_all(client, baseline)
    opioid = _screen_of(baseline, "opioid_use")
    page = client.post(f"/p/q/{opioid.number}/", {"current_use": "0", "daily_dose": "10"})
    assert page.status_code == 302  # the page alone accepts it
    response = client.post("/p/q/submit/", {"idempotency_key": _key(client)})
    html = response.content.decode()
    assert response.status_code == 200 and Submission.objects.count() == 0
    summary = html[html.index('id="to-check"') : html.index("</div>", html.index('id="to-check"'))]
    assert "missing or do not fit together" in summary
    assert f'href="/p/q/{opioid.number}/?from=review"' in summary
    assert f"Part {opioid.part}:" in summary and summary.count("<li>") == 1
    assert 'id="send"' in html  # once changed, the patient can send from here
    assert "not sent yet" not in html  # the lead would repeat the box above it


def test_without_a_session_the_questionnaire_is_closed(client: Client) -> None:
    assert client.get("/p/q/1/").status_code == 403
    assert client.post("/p/q/submit/", {"idempotency_key": "k" * 20}).status_code == 403


def test_signed_in_patient_sees_what_is_due_and_progress(client: Client, baseline) -> None:
    user = make_user()
    PatientAccount.objects.create(user=user, patient=baseline.patient)
    client.force_login(user)
    home = client.get("/p/").content.decode()
    assert "Start the Baseline questionnaire" in home
    assert client.post(f"/p/choose/{baseline.public_id}/").status_code == 302
    assert "Part 1 of" in client.get("/p/q/1/").content.decode()
    submit_responses(
        baseline, answers_for(baseline), "k" * 20, timezone.now(), psfs_names=PSFS_NAMES
    )
    progress = client.get("/p/progress/")
    html = progress.content.decode()
    assert progress.status_code == 200 and "<svg" in html
    assert "A change of 10 points or more is one most people notice" in html
    assert "Ostelo" in html and "not a promise" in html
    assert progress["Referrer-Policy"] == "same-origin"


def _answer_rows(html: str) -> dict[str, tuple[str, str]]:
    """item id → (answer in words, change link) of the review page."""
    rows = re.findall(
        r'data-item="([^"]+)">\s*<dt>.*?</dt>\s*<dd class="answer">([^<]*)</dd>\s*'
        r'<dd class="change"><a href="([^"]+)"',
        html,
        flags=re.S,
    )
    return {item: (answer, href) for item, answer, href in rows}


def test_review_lists_every_answer_in_words_and_nothing_is_stored_before_send(
    client: Client, baseline
) -> None:
    _open(client, baseline)
    _answer_all(client, baseline)
    response = client.get("/p/q/review/")
    html = response.content.decode()
    assert response.status_code == 200 and "Check your answers" in html
    rows = _answer_rows(html)
    definitions = [get_definition(i) for i in baseline.instruments]
    # The PSFS rows are the activities the patient named (two), not the five empty slots.
    unnamed = {"activity_3", "activity_4", "activity_5"}
    assert set(rows) == {item for d in definitions for item in d.item_ids} - unnamed
    assert "\u201cWalking for 30 minutes\u201d" in html and rows["activity_1"][0] == "4"
    # Answers are the words the patient chose, never the stored codes.
    odi = get_definition("odi")
    assert rows["lifting"][0] == odi.item("lifting").option(2).label
    assert rows["current_use"][0] == "No"
    assert rows["opioid"][0] == "Not answered"  # optional, left blank
    nrs = get_definition("nrs_back").item("pain_back").option(6).label
    assert rows["pain_back"][0] == nrs
    # Each question's own text is shown beside its answer.
    assert odi.item("lifting").text in html
    # "Change" goes back to the very screen of that question.
    lifting = _screen_of(baseline, "odi", 3)
    assert rows["lifting"][1] == f"/p/q/{lifting.number}/?from=review#q-lifting"
    # One Send button, and nothing stored until it is pressed.
    assert html.count('id="send"') == 1 and 'name="idempotency_key"' in html
    assert Submission.objects.count() == 0
    assert QuestionnaireResponse.objects.count() == 0
    baseline.refresh_from_db()
    assert baseline.status == TimePointStatus.OPEN


def test_change_from_review_returns_to_review_with_the_new_answer(client: Client, baseline) -> None:
    _open(client, baseline)
    _answer_all(client, baseline)
    lifting = _screen_of(baseline, "odi", 3)
    change = client.get(f"/p/q/{lifting.number}/?from=review").content.decode()
    assert "Question 3 of 10" in change
    assert 'href="/p/q/review/#part-' in change  # Back returns to the review page
    assert "Save and go back to my answers" in change
    saved = client.post(f"/p/q/{lifting.number}/?from=review", {"lifting": "5"})
    part = baseline.instruments.index("odi") + 1
    assert saved.status_code == 302 and saved["Location"] == f"/p/q/review/#part-{part}"
    rows = _answer_rows(client.get("/p/q/review/").content.decode())
    assert rows["lifting"][0] == get_definition("odi").item("lifting").option(5).label
    key = _key(client)
    assert client.post("/p/q/submit/", {"idempotency_key": key}).status_code == 303
    stored = QuestionnaireResponse.objects.get(time_point=baseline, instrument_id="odi")
    assert stored.answers["lifting"] == 5


def test_review_with_gaps_shows_what_is_missing_and_no_send_button(
    client: Client, baseline
) -> None:
    _open(client, baseline)
    for screen in plan(baseline.instruments):
        if not (screen.instrument_id == "odi" and screen.question == 4):
            _post_screen(client, screen)
    html = client.get("/p/q/review/").content.decode()
    walking = _screen_of(baseline, "odi", 4)
    part = baseline.instruments.index("odi") + 1
    assert f'href="/p/q/{walking.number}/?from=review">Part {part}: Oswestry' in html
    assert _answer_rows(html)["walking"][0].startswith("Not answered yet")
    assert 'id="send"' not in html
