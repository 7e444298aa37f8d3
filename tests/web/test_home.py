"""The public shell: home page, health check, API root and security headers."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_home_page_says_what_vertebra_is(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert (
        '<h1 id="hero-title">Honest outcomes for stem cell therapy of chronic low back pain</h1>'
        in body
    )
    assert '<html lang="en">' in body
    assert 'name="viewport"' in body
    # Honesty rule: the landing page cites the negative sham-controlled trial.
    assert "DREAM trial" in body
    # Every asset is served by the app itself: no external CDN.
    assert "https://" not in body.split("<body>")[0]
    assert "/static/vertebra/site.css" in body


def test_security_headers_on_every_page(client: Client) -> None:
    response = client.get("/")
    assert response["Content-Security-Policy"].startswith("default-src 'self'")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_health_check_reports_database(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_api_version_and_openapi_document(client: Client) -> None:
    assert client.get("/api/v1/version").json() == {"name": "vertebra", "version": "0.1.0"}
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["info"]["title"] == "Vertebra API"
    assert "/api/v1/version" in schema["paths"]


def test_post_to_home_is_refused(client: Client) -> None:
    assert client.post("/").status_code == 405


def test_staff_login_page_has_labelled_fields_and_csrf(client: Client) -> None:
    body = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">Username</label>' in body
    assert '<label for="id_password">Password</label>' in body
    assert "csrfmiddlewaretoken" in body


def test_signed_in_staff_are_sent_to_their_work_not_to_sign_in_again(client: Client) -> None:
    from django.urls import reverse

    from tests.registry.factories import make_actor, make_clinic
    from vertebra.registry.models import Role

    actor = make_actor(Role.COORDINATOR, make_clinic())
    client.force_login(actor.user)
    body = client.get("/").content.decode()
    assert f'<a class="button" href="{reverse("staff-home")}">Go to my work</a>' in body
    assert "Staff sign in" not in body
    # Anonymous visitors still get the sign-in button.
    client.logout()
    assert "Staff sign in</a>" in client.get("/").content.decode()
