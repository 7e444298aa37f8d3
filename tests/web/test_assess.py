"""The public self-assessment through Django's test client: every verdict, validation, privacy."""

from __future__ import annotations

import html as html_lib
import re
from typing import cast

import pytest
from django.test import Client

from tests.web import assess_answers as answers
from vertebra.core.screening import Verdict, load_ruleset
from vertebra.web.assess import SESSION_KEY, STEP_SLUGS

pytestmark = pytest.mark.django_db


def walk(client: Client, steps: dict[str, dict[str, object]]) -> str:
    """Post each step's answers in order and return the result page's HTML."""
    for slug in STEP_SLUGS:
        if slug not in steps:
            break
        response = client.post(f"/assess/{slug}/", steps[slug])
        assert response.status_code == 302, response.content.decode()[:500]
        if response["Location"] == "/assess/result/":
            break
    result = client.get("/assess/result/")
    assert result.status_code == 200
    return result.content.decode()


def verdict_title(html: str) -> str:
    match = re.search(r'<h1 id="verdict-title">(.*?)</h1>', html)
    assert match, "no verdict heading"
    return match.group(1)


def test_emergency_sign_goes_straight_to_the_result(client: Client) -> None:
    response = client.post("/assess/warning-signs/", answers.EMERGENCY["warning-signs"])
    assert response["Location"] == "/assess/result/"
    html = client.get("/assess/result/").content.decode()
    assert verdict_title(html) == "Go to an emergency department now"
    assert 'role="alert"' in html
    assert "emergency department now" in html
    # No sales talk when someone may need an emergency department.
    assert "Questions to ask any clinic" not in html


def test_refer_verdict_lists_the_reason_and_next_steps(client: Client) -> None:
    html = walk(client, answers.REFER)
    assert verdict_title(html) == "See a doctor first"
    assert "Make an appointment with your own doctor soon" in html


def next_steps_shown(html: str) -> list[str]:
    """The items of the "What to do next" list, unescaped."""
    section = re.search(r'<h2 id="next-title">What to do next</h2>\s*<ol>(.*?)</ol>', html, re.S)
    assert section, "no next-steps list"
    return [html_lib.unescape(item) for item in re.findall(r"<li>(.*?)</li>", section.group(1))]


@pytest.mark.parametrize(
    ("verdict", "steps"),
    [
        ("emergency", answers.EMERGENCY),
        ("refer", answers.REFER),
        ("not_candidate", answers.NOT_CANDIDATE),
        ("needs_more_information", answers.NEEDS_MORE_INFORMATION),
        ("candidate", answers.CANDIDATE),
    ],
)
def test_next_steps_come_from_the_rule_set(
    client: Client, verdict: str, steps: dict[str, dict[str, object]]
) -> None:
    summary = load_ruleset().verdicts[cast(Verdict, verdict)]
    html = walk(client, steps)
    assert verdict_title(html) == summary.title
    assert next_steps_shown(html) == list(summary.next_steps)


def test_not_candidate_for_modic_type_3(client: Client) -> None:
    html = walk(client, answers.NOT_CANDIDATE)
    assert verdict_title(html) == "Not a candidate right now"
    assert "Modic" in html


def test_needs_more_information_shows_what_is_missing_with_links(client: Client) -> None:
    html = walk(client, answers.NEEDS_MORE_INFORMATION)
    assert verdict_title(html) == "We need more information"
    assert "What could change the answer" in html
    assert 'href="/assess/treatments-tried/"' in html


def test_candidate_never_promises_and_shows_questions_to_ask(client: Client) -> None:
    html = walk(client, answers.CANDIDATE)
    assert verdict_title(html) == "You meet the usual starting criteria"
    assert "This does not mean the treatment will help you" in html
    assert "Questions to ask any clinic" in html
    assert "vertebra-screening version" in html
    for promise in ("cure", "guarantee", "will heal", "will fix"):
        assert promise not in html.lower()


def test_warning_signs_need_an_explicit_answer(client: Client) -> None:
    response = client.post("/assess/warning-signs/", {})
    assert response.status_code == 400
    assert "Tick the signs you have, or tick" in response.content.decode()
    response = client.post("/assess/warning-signs/", {"red_flags": ["none", "fever"]})
    assert response.status_code == 400
    assert "You ticked" in response.content.decode()


def test_out_of_range_age_is_refused_next_to_the_field(client: Client) -> None:
    client.post("/assess/warning-signs/", {"red_flags": ["none"]})
    response = client.post("/assess/your-pain/", {"age": "300", "pain_duration_months": "-2"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="err-age"' in html
    assert 'id="err-pain_duration_months"' in html


def test_going_back_keeps_answers(client: Client) -> None:
    client.post("/assess/warning-signs/", {"red_flags": ["none"]})
    client.post("/assess/your-pain/", answers.CANDIDATE["your-pain"])
    html = client.get("/assess/your-pain/").content.decode()
    assert re.search(r'name="age" value="47"', html)
    assert re.search(r'value="herniated_disc"[^>]*checked', html)


def test_session_holds_only_answers_and_restart_deletes_them(client: Client) -> None:
    walk(client, answers.CANDIDATE)
    stored = client.session[SESSION_KEY]
    assert set(stored) == set(STEP_SLUGS)
    flat = str(stored).lower()
    for identifying in ("name", "email", "phone", "address", "birth"):
        assert identifying not in flat
    response = client.post("/assess/restart/")
    assert response["Location"] == "/assess/"
    assert SESSION_KEY not in client.session
    assert client.get("/assess/result/")["Location"] == "/assess/"


def test_unknown_step_is_404(client: Client) -> None:
    assert client.get("/assess/not-a-step/").status_code == 404


def test_no_imaging_needs_more_information_and_says_what_to_bring(client: Client) -> None:
    html = html_lib.unescape(walk(client, answers.NO_IMAGING))
    assert verdict_title(html) == "We need more information"
    assert "You have not had an MRI scan of your lower back" in html
    assert "What to bring" in html and "MRI report" in html


def test_no_diagnosis_yet_needs_more_information_naming_it(client: Client) -> None:
    html = html_lib.unescape(walk(client, answers.NO_DIAGNOSIS_YET))
    assert verdict_title(html) == "We need more information"
    assert "No doctor has yet said what is causing your back pain" in html


def test_unanswered_imaging_is_listed_as_missing_with_a_link(client: Client) -> None:
    html = html_lib.unescape(walk(client, answers.with_changes("scans-and-surgery", imaging="")))
    assert verdict_title(html) == "We need more information"
    assert "Has an MRI scan of your lower back shown a worn or damaged disc" in html
    assert 'href="/assess/scans-and-surgery/"' in html


def test_muscle_strain_only_at_82_is_not_a_candidate(client: Client) -> None:
    html = html_lib.unescape(walk(client, answers.MUSCLE_STRAIN_AT_82))
    assert verdict_title(html) == "Not a candidate right now"
    assert "is not a worn or damaged disc" in html


def test_inflammatory_back_pain_is_referred(client: Client) -> None:
    html = html_lib.unescape(walk(client, answers.INFLAMMATORY))
    assert verdict_title(html) == "See a doctor first"
    assert "axial spondyloarthritis" in html


def test_none_and_an_item_cannot_both_be_ticked(client: Client) -> None:
    client.post("/assess/warning-signs/", {"red_flags": ["none"]})
    response = client.post(
        "/assess/pain-pattern/", {"inflammatory_features": ["none", "night_waking"]}
    )
    assert response.status_code == 400
    assert "You ticked" in response.content.decode()
