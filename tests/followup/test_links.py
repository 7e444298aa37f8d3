"""Patient links: 256-bit tokens stored hashed, 404/410 answers, token-free redirect, no leaks."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone

from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from tests.registry.factories import make_clinic, make_user
from vertebra.followup.errors import LinkExpired, LinkNotFound, LinkUsed
from vertebra.followup.models import PatientLink
from vertebra.followup.services import hash_token, issue_link, open_link, submit_responses
from vertebra.registry.models import PatientAccount

pytestmark = pytest.mark.django_db

MAX_LINK_FAILURES_PER_MINUTE = 20  # THROTTLE_PORTAL_LINK_FAILURES default


@pytest.fixture
def baseline():
    return point(make_schedule(start=T0, today=T0), "baseline")


@pytest.fixture
def live_baseline():
    """A baseline open today by the real clock (the portal views read the clock)."""
    today = timezone.localdate()
    return point(make_schedule(start=today, today=today), "baseline")


def test_token_is_long_random_and_only_its_hash_is_stored(baseline) -> None:
    raw = issue_link(baseline, at(T0, 8))
    assert len(raw) >= 43  # 32 bytes = 256 bits, base64url
    link = PatientLink.objects.get()
    assert link.token_hash == hash_token(raw) and raw not in link.token_hash
    assert link.expires_at == at(T0 + dt.timedelta(days=1), 0)  # end of the close day
    assert issue_link(baseline, at(T0, 8)) != raw


def test_open_link_states(baseline) -> None:
    raw = issue_link(baseline, at(T0, 8))
    assert open_link(raw, at(T0, 9)).pk == baseline.pk
    with pytest.raises(LinkExpired):
        open_link(raw, at(T0 + dt.timedelta(days=1), 0))
    with pytest.raises(LinkNotFound):
        open_link(raw[:-1] + ("A" if raw[-1] != "A" else "B"), at(T0, 9))
    with pytest.raises(LinkNotFound):
        open_link("x" * 5000, at(T0, 9))
    submit_responses(baseline, answers_for(baseline), "k" * 20, at(T0, 9), psfs_names=PSFS_NAMES)
    with pytest.raises(LinkUsed):
        open_link(raw, at(T0, 10))


def test_link_swaps_the_token_for_a_session_and_a_token_free_url(
    client: Client, live_baseline
) -> None:
    raw = issue_link(live_baseline, timezone.now())
    response = client.get(f"/p/open/?t={raw}")
    assert response.status_code == 302
    assert response["Location"] == "/p/q/"
    assert raw not in response["Location"]
    assert response["Referrer-Policy"] == "no-referrer"
    page = client.get("/p/q/")
    assert page.status_code == 200 and page["Referrer-Policy"] == "same-origin"
    assert raw not in page.content.decode()


def test_expired_link_is_410_with_a_clear_page(client: Client, live_baseline) -> None:
    raw = issue_link(live_baseline, timezone.now())
    PatientLink.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = client.get(f"/p/open/?t={raw}")
    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"


def test_used_link_is_410(client: Client, live_baseline) -> None:
    raw = issue_link(live_baseline, timezone.now())
    PatientLink.objects.update(used_at=timezone.now())
    response = client.get(f"/p/open/?t={raw}")
    assert response.status_code == 410
    assert "already been answered" in response.content.decode()


def test_unknown_link_is_404_and_guessing_is_rate_limited(client: Client) -> None:
    for n in range(MAX_LINK_FAILURES_PER_MINUTE):
        assert client.get(f"/p/open/?t=guess-{n:03d}" + "a" * 40).status_code == 404
    refused = client.get("/p/open/?t=guess-" + "b" * 40)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_one_token_tried_again_and_again_is_limited_on_its_own(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-token limit (10/min) stops a hammered token, whatever address it comes from."""
    from vertebra.perimeter import throttle

    # one fixed instant: the windows are whole minutes, and a slow run must not cross one
    instant = timezone.now()
    monkeypatch.setattr(throttle.timezone, "now", lambda: instant)
    for n in range(10):
        other = Client(REMOTE_ADDR=f"198.51.100.{n + 1}")
        assert other.get("/p/open/?t=same-" + "c" * 40).status_code == 404
    assert client.get("/p/open/?t=same-" + "c" * 40).status_code == 429
    assert client.get("/p/open/?t=other-" + "c" * 40).status_code == 404


def test_another_patients_questionnaire_is_404(client: Client) -> None:
    clinic = make_clinic()
    schedule_a = make_schedule(start=T0, today=T0, clinic=clinic)
    schedule_b = make_schedule(start=T0, today=T0, clinic=clinic)
    user_b = make_user()
    PatientAccount.objects.create(user=user_b, patient=schedule_b.episode.patient)
    client.force_login(user_b)
    foreign = point(schedule_a, "baseline")
    assert client.post(f"/p/choose/{foreign.public_id}/").status_code == 404
    own = point(schedule_b, "baseline")
    assert client.post(f"/p/choose/{own.public_id}/").status_code == 302
    home = client.get("/p/").content.decode()
    assert "Baseline" in home


def _all_text_in_database() -> str:
    """Every value of every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_no_raw_token_in_database_or_logs(client: Client, live_baseline, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    raw = issue_link(live_baseline, timezone.now())
    assert client.get(f"/p/open/?t={raw}").status_code == 302
    submit_responses(
        live_baseline, answers_for(live_baseline), "k" * 20, timezone.now(), psfs_names=PSFS_NAMES
    )
    assert client.get(f"/p/open/?t={raw}").status_code == 410  # logged as a 4xx
    assert client.get(f"/p/open/?t={raw}x").status_code == 404
    dump = _all_text_in_database()
    assert "followup_patientlink" in {m._meta.db_table for m in apps.get_models()}
    assert raw not in dump and raw[:20] not in dump
    assert hash_token(raw) in dump  # the scan does see the links table
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert raw not in logged and raw[:20] not in logged
