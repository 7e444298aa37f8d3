"""Styled 404 and 500 pages in the site layout, the favicon, and the patient sign-in link."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.registry.factories import make_clinic, make_patient, make_user
from vertebra.registry.models import PatientAccount

pytestmark = pytest.mark.django_db

LAYOUT = (
    '<header class="site-header">',
    '<footer class="site-footer">',
    "/static/vertebra/site.css",
)


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def _in_layout(body: str) -> None:
    for piece in LAYOUT:
        assert piece in body, piece
    assert 'rel="icon" href="/static/vertebra/favicon.svg"' in body


def test_unknown_page_gets_the_styled_404(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    _in_layout(body)
    assert '<h1 id="error-title">We cannot find that page</h1>' in body
    assert 'href="/p/signin/"' in body and 'href="/learn/"' in body
    assert "<title>Page not found · Vertebra</title>" in body


def test_a_404_raised_by_a_view_gets_the_same_page_without_its_message(client: Client) -> None:
    missing = client.get("/learn/not-a-page/")  # the view raises Http404("No such page")
    assert missing.status_code == 404
    body = missing.content.decode()
    _in_layout(body)
    assert "We cannot find that page" in body and "No such page" not in body


@pytest.mark.urls("tests.web.error_urls")
def test_a_bug_gets_the_styled_500_without_internals(client: Client) -> None:
    response = client.get("/learn/bug/")
    assert response.status_code == 500
    body = response.content.decode()
    _in_layout(body)
    assert '<h1 id="error-title">Something went wrong on our side</h1>' in body
    assert "secret internals" not in body and "RuntimeError" not in body
    assert "Traceback" not in body and "Retry-After" not in response


@pytest.mark.urls("tests.web.error_urls")
def test_an_unavailable_database_still_gets_the_503(client: Client) -> None:
    response = client.get("/learn/database-down/")
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.content.decode()
    assert "The registry is not available right now" in body
    assert "Something went wrong on our side" not in body


def test_favicon_answers_without_a_404(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/vertebra/favicon.png"
    assert client.head("/favicon.ico").status_code == 302
    for name in ("favicon.png", "favicon.svg", "apple-touch-icon.png"):
        assert finders.find(f"vertebra/{name}"), name
    icon = client.get("/static/vertebra/favicon.png")
    assert icon.status_code == 200
    assert b"".join(icon.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    svg = client.get("/static/vertebra/favicon.svg")
    assert svg.status_code == 200 and svg["Content-Type"].startswith("image/svg+xml")


@pytest.mark.parametrize("path", ["/", "/learn/", "/assess/", "/decide/", "/p/", "/p/signin/"])
def test_every_layout_links_the_icon(client: Client, path: str) -> None:
    body = client.get(path).content.decode()
    _in_layout(body)


@pytest.mark.parametrize("path", ["/", "/learn/", "/assess/", "/decide/"])
def test_public_pages_link_to_patient_sign_in(client: Client, path: str) -> None:
    body = client.get(path).content.decode()
    nav = body.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert re.search(r'<a class="patient-link" href="/p/signin/">Patient sign in</a>', nav)


def test_a_signed_in_patient_sees_my_questionnaires_instead(client: Client) -> None:
    user = make_user()
    PatientAccount.objects.create(user=user, patient=make_patient(make_clinic()))
    client.force_login(user)
    nav = client.get("/learn/").content.decode().split('<nav aria-label="Main">')[1]
    nav = nav.split("</nav>")[0]
    assert '<a class="patient-link" href="/p/">My questionnaires</a>' in nav
    assert "Patient sign in" not in nav
