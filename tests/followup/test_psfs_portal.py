"""PSFS in the portal: the patient names activities once, re-rates the same ones later.

Service (names cleaned, stored with an audit record, re-rating uses the stored names) and the
portal pages through Django's test client (naming screen, review, re-rating screen)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import T0, at, make_schedule, point
from tests.registry.factories import make_actor
from vertebra.followup.errors import SubmissionInvalid
from vertebra.followup.models import PsfsActivities, QuestionnaireResponse
from vertebra.followup.services import issue_link, psfs_names_for_point, submit_responses
from vertebra.followup.worker import open_windows
from vertebra.registry.models import AuditEvent, Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _psfs_asked(settings) -> None:
    settings.FOLLOWUP_INSTRUMENTS = {"baseline": ["nrs_back", "psfs"], "default": ["psfs"]}


def _points(today=T0):
    schedule = make_schedule(start=today, today=today)
    baseline, week_6 = point(schedule, "baseline"), point(schedule, "week_6")
    return baseline, week_6


def _open_week_6(week_6):
    open_windows(at(week_6.opens))
    week_6.refresh_from_db()
    return week_6


# --- service ----------------------------------------------------------------------------------


def test_names_are_cleaned_stored_and_audited_with_the_submission() -> None:
    baseline, _ = _points()
    answers = {"nrs_back": {"pain_back": 5}, "psfs": {"activity_1": 3, "activity_2": 6}}
    submit_responses(
        baseline,
        answers,
        "k" * 20,
        at(T0),
        psfs_names=["  Walking for 30   minutes", "Lifting my child"],
    )
    stored = PsfsActivities.objects.get()
    assert stored.names == ["Walking for 30 minutes", "Lifting my child"]
    assert stored.time_point_id == baseline.pk
    response = QuestionnaireResponse.objects.get(instrument_id="psfs")
    assert response.score == 4.5  # (3 + 6) / 2
    audit = AuditEvent.objects.get(object_type="psfs_activities")
    assert audit.new_values["names"] == stored.names
    assert audit.patient_id == baseline.patient_id


@pytest.mark.parametrize(
    ("names", "ratings", "message"),
    [
        ([], {"activity_1": 3}, "at least one"),
        (["Walking", "walking"], {"activity_1": 3, "activity_2": 4}, "named twice"),
        (["x" * 81], {"activity_1": 3}, "at most 80"),
        (["Walking"], {"activity_1": 3, "activity_2": 4}, "only the activities you named"),
    ],
)
def test_refused_names_store_nothing(names, ratings, message) -> None:
    baseline, _ = _points()
    with pytest.raises(SubmissionInvalid, match=message):
        submit_responses(
            baseline,
            {"nrs_back": {"pain_back": 5}, "psfs": ratings},
            "k" * 20,
            at(T0),
            psfs_names=names,
        )
    assert not PsfsActivities.objects.exists()
    assert not QuestionnaireResponse.objects.exists()
    assert not AuditEvent.objects.filter(object_type="psfs_activities").exists()


def test_follow_up_re_rates_the_stored_names_and_ignores_new_ones() -> None:
    baseline, week_6 = _points()
    submit_responses(
        baseline,
        {"nrs_back": {"pain_back": 5}, "psfs": {"activity_1": 2, "activity_2": 4}},
        "k" * 20,
        at(T0),
        psfs_names=["Gardening", "Driving"],
    )
    week_6 = _open_week_6(week_6)
    assert psfs_names_for_point(week_6) == ("Gardening", "Driving")
    with pytest.raises(SubmissionInvalid, match="only the activities you named"):
        submit_responses(
            week_6, {"psfs": {"activity_3": 5}}, "m" * 20, at(week_6.opens), psfs_names=["New"]
        )
    submit_responses(
        week_6,
        {"psfs": {"activity_1": 6, "activity_2": 8}},
        "n" * 20,
        at(week_6.opens),
        psfs_names=["Something else"],
    )
    assert PsfsActivities.objects.get().names == ["Gardening", "Driving"]
    assert QuestionnaireResponse.objects.get(time_point=week_6).score == 7.0
    assert AuditEvent.objects.filter(object_type="psfs_activities").count() == 1


# --- portal pages -----------------------------------------------------------------------------


def _open(client: Client, tp) -> None:
    raw = issue_link(tp, timezone.now())
    assert client.get(f"/p/open/?t={raw}").status_code == 302


def _send(client: Client) -> None:
    page = client.get("/p/q/review/").content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key, page
    assert client.post("/p/q/submit/", {"idempotency_key": key.group(1)}).status_code == 303


def test_portal_names_at_baseline_and_re_rates_at_follow_up(client: Client) -> None:
    today = timezone.localdate()
    baseline, week_6 = _points(today)
    _open(client, baseline)
    assert client.post("/p/q/1/", {"pain_back": "5"}).status_code == 302
    page = client.get("/p/q/2/").content.decode()
    assert 'name="name_1"' in page and 'name="activity_5"' in page
    assert "walking for 30 minutes" in page  # the example hint
    # A rating without its activity, and a duplicate, are shown back with a message.
    page = client.post("/p/q/2/", {"activity_1": "4"}).content.decode()
    assert "Please write the activity you rated." in page
    page = client.post(
        "/p/q/2/",
        {"name_1": "Gardening", "activity_1": "4", "name_2": "gardening", "activity_2": "2"},
    ).content.decode()
    assert "named twice" in page
    # Second and fourth boxes filled: stored as activities 1 and 2.
    sent = client.post(
        "/p/q/2/",
        {
            "name_2": " Gardening ",
            "activity_2": "4",
            "name_4": "Sitting at work",
            "activity_4": "2",
        },
    )
    assert sent.status_code == 302 and sent["Location"].endswith("/p/q/review/")
    review = client.get("/p/q/review/").content.decode()
    assert "\u201cGardening\u201d: how well can you do it today?" in review
    assert "\u201cSitting at work\u201d" in review and "Not answered yet" not in review
    _send(client)
    assert PsfsActivities.objects.get().names == ["Gardening", "Sitting at work"]
    assert QuestionnaireResponse.objects.get(instrument_id="psfs").answers == {
        "activity_1": 4,
        "activity_2": 2,
    }

    week_6.opens = today
    week_6.target = max(week_6.target, today)
    week_6.closes = max(week_6.closes, today)
    week_6.status = "open"
    week_6.save()
    other = Client()
    _open(other, week_6)
    page = other.get("/p/q/1/").content.decode()
    assert 'name="name_1"' not in page  # no new names at a follow-up
    assert "\u201cGardening\u201d: how well can you do it today?" in page
    assert "\u201cSitting at work\u201d" in page and 'name="activity_3"' not in page
    assert other.post("/p/q/1/", {"activity_1": "7"}).status_code == 200  # both needed
    assert other.post("/p/q/1/", {"activity_1": "7", "activity_2": "5"}).status_code == 302
    _send(other)
    response = QuestionnaireResponse.objects.get(time_point=week_6)
    assert response.answers == {"activity_1": 7, "activity_2": 5} and response.score == 6.0

    # The patient's progress page: names and ratings by questionnaire, in words and numbers.
    progress = other.get("/p/progress/").content.decode()
    assert "Activities you named" in progress
    assert '<th scope="row">Gardening</th><td>4</td><td>7</td>' in progress
    assert '<th scope="row">Sitting at work</th><td>2</td><td>5</td>' in progress
    assert "was 3 out of 10 at Baseline and 6 at" in progress

    # The clinic's patient page shows the same table; another clinic's staff get 404.
    staff = Client()
    staff.force_login(make_actor(Role.CLINICIAN, baseline.patient.clinic).user)
    page = staff.get(f"/clinic/outcomes/patient/{baseline.patient_id}/").content.decode()
    assert "Patient-Specific Functional Scale" in page
    assert '<th scope="row">Gardening</th><td>4</td><td>7</td>' in page
