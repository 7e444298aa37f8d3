"""The 503 answer of vertebra.web.unavailable, in process: status, headers, honest words.

The views of fault_urls.py raise what a failing database raises; the real server-level faults
are in test_db_faults.py.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from vertebra.registry.models import AuditEvent

LEAKS = ("Traceback", "OperationalError", "InterfaceError", "database is locked", "closed")

pytestmark = pytest.mark.urls("tests.reliability.fault_urls")


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def _plain(body: str) -> None:
    for leak in LEAKS:
        assert leak not in body, leak


def test_read_that_meets_a_locked_database_gets_503_nothing_changed(client: Client) -> None:
    response = client.get("/p/read-fails/")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Vertebra-Write"] == "none"
    body = response.content.decode()
    assert "<h1>The registry is not available right now</h1>" in body
    assert "Nothing was changed. Please try again in a few minutes." in body
    _plain(body)
    # The same page for staff paths: the words do not speak of "answers".
    staff = client.post("/clinic/read-fails/").content.decode()
    assert "so what you sent was NOT saved" in staff and "answers" not in staff


@pytest.mark.django_db  # the API's rate limits count in the database before the view runs
def test_api_write_gets_json_503_not_saved(client: Client) -> None:
    response = client.post("/api/v1/write-fails", data={}, content_type="application/json")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json; charset=utf-8"
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "type": "urn:vertebra:problem:database-unavailable",
        "title": "Database unavailable",
        "status": 503,
        "detail": (
            "The registry's database is not available right now, so what you sent was NOT "
            "saved. Please try again in a few minutes."
        ),
        "code": "database_unavailable",
        "saved": False,
    }


def test_a_bug_is_still_a_plain_500(client: Client) -> None:
    response = client.post("/p/bug/")
    assert response.status_code == 500
    assert "Retry-After" not in response
    _plain(response.content.decode())
    assert "UNIQUE" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_write_committed_before_the_failure_is_reported_saved(client: Client) -> None:
    response = client.post("/p/saved-then-fails/")
    assert response.status_code == 503
    assert response["X-Vertebra-Write"] == "saved"
    body = response.content.decode()
    assert "Your answers were saved." in body
    assert "You do not need to send anything again." in body
    assert "NOT saved" not in body
    assert AuditEvent.objects.filter(object_type="reliability_probe").count() == 1


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_connection_lost_during_commit_is_reported_unknown(client: Client) -> None:
    response = client.post("/p/commit-fails/")
    assert response.status_code == 503
    assert response["X-Vertebra-Write"] == "unknown"
    body = response.content.decode()
    assert "we cannot tell whether your answers were saved" in body
    assert "Sending your answers again is safe: they are never stored twice." in body
    _plain(body)


@override_settings(DEBUG=False)
def test_handlers_are_the_projects() -> None:
    import vertebra.urls

    assert vertebra.urls.handler500 == "vertebra.web.unavailable.server_error"
    assert vertebra.urls.handler400 == "vertebra.web.unavailable.bad_request"
