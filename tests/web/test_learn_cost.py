"""Cost and coverage for patients: /learn/cost/ and the decision aid's cost section, from
data/learn/cost.yaml, with sources, dates and the unverified status beside every figure."""

from __future__ import annotations

import pytest
from django.test import Client

from vertebra.core.costinfo import cost_info

pytestmark = pytest.mark.django_db


def _section_checks(html: str) -> None:
    info = cost_info()
    assert 'id="cost-title"' in html and "What it costs and who pays" in html
    for t in info.treatments:
        assert f'id="cost-{t.id}"' in html
        assert f"${t.low:,.0f}–${t.high:,.0f}" in html
        for s in t.sources:
            assert f'href="#cost-src-{s.id}"' in html and f'id="cost-src-{s.id}"' in html
    assert "Rarely covered by insurance outside clinical trials" in html
    assert "These figures are not yet checked against their sources." in html
    assert f"Cost figures version {info.version}, updated 6 Dec 2026" in html
    # no promise, no inline style or script (strict CSP)
    assert "guarantee" not in html.lower() and "style=" not in html and "<script>" not in html


def test_learn_cost_page(client: Client) -> None:
    response = client.get("/learn/cost/")
    assert response.status_code == 200
    html = response.content.decode()
    _section_checks(html)
    assert "should not be charged for the treatment studied" in html
    assert 'href="/learn/cost/"' in client.get("/learn/").content.decode()


def test_the_decision_aid_shows_cost_and_links_the_page(client: Client) -> None:
    for url in ("/decide/", "/decide/?condition=degenerative_disc_disease&age=45"):
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        _section_checks(html)
        assert 'href="/learn/cost/"' in html
