"""The knowledge base as pages and as public JSON."""

from __future__ import annotations

import pytest
from django.test import Client

from vertebra.web.knowledge_selectors import knowledge_base

pytestmark = pytest.mark.django_db

CAUSES = [
    "degenerative-disc-disease",
    "herniated-disc",
    "facet-arthropathy",
    "sciatica",
    "muscle-strain",
    "spinal-stenosis",
]


def test_index_links_every_page(client: Client) -> None:
    html = client.get("/learn/").content.decode()
    for page in knowledge_base().pages:
        if page.path:
            assert f'href="{page.url}"' in html


@pytest.mark.parametrize("slug", CAUSES)
def test_each_cause_page_shows_icd10_codes_and_numbered_sources(client: Client, slug: str) -> None:
    response = client.get(f"/learn/causes/{slug}/")
    assert response.status_code == 200
    html = response.content.decode()
    page = knowledge_base().get_page(slug)
    assert page.icd10, f"{slug} has no ICD-10 codes"
    for code in page.icd10:
        assert f"<code>{code.code}</code>" in html
    assert "<sup" in html  # numbered citation markers


def test_comparison_page_has_five_rows_with_certainty(client: Client) -> None:
    html = client.get("/learn/treatments/compare/").content.decode()
    assert html.count('<th scope="row">') == 5
    for row in knowledge_base().comparison_table():
        assert row.title in html
        assert row.comparison.certainty.level.capitalize() in html


def test_unknown_page_is_404(client: Client) -> None:
    assert client.get("/learn/causes/not-a-cause/").status_code == 404


def test_learn_api_pages_comparison_sources_and_questions(client: Client) -> None:
    pages = client.get("/api/v1/learn/pages").json()
    assert {p["slug"] for p in pages} >= set(CAUSES)
    assert all("html" not in p for p in pages)
    sciatica = client.get("/api/v1/learn/pages/causes/sciatica").json()
    assert sciatica["title"]
    assert sciatica["sources"] and all("citation" in s for s in sciatica["sources"])
    assert client.get("/api/v1/learn/pages/nope").status_code == 404
    comparison = client.get("/api/v1/learn/comparison").json()
    assert len(comparison) == 5
    assert client.get("/api/v1/learn/sources").json()
    assert client.get("/api/v1/learn/questions").json()


def test_screening_api_evaluates_and_rejects_bad_facts(client: Client) -> None:
    response = client.post(
        "/api/v1/screening/evaluate",
        data={"red_flags": ["saddle_anesthesia"]},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["verdict"] == "emergency"
    response = client.post(
        "/api/v1/screening/evaluate", data={"colour": "blue"}, content_type="application/json"
    )
    assert response.status_code == 422
    assert "colour" in response.json()["detail"]
    response = client.post(
        "/api/v1/screening/evaluate", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    schema = client.get("/api/v1/screening/facts-schema").json()
    assert "red_flags" in schema["properties"]
