"""Instruments over the public JSON API: list, detail with licence status, scoring."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_list_shows_versions_and_licence_status(client: Client) -> None:
    instruments = {i["id"]: i for i in client.get("/api/v1/instruments").json()}
    assert {"odi", "nrs_back", "rmdq", "promis_pf_4a", "promis_pi_4a", "startback"} <= set(
        instruments
    )
    assert instruments["odi"]["item_text_shipped"] is False
    assert instruments["nrs_back"]["item_text_shipped"] is True
    assert "items" not in instruments["odi"]


def test_odi_detail_ships_placeholder_wording_only(client: Client) -> None:
    odi = client.get("/api/v1/instruments/odi").json()
    assert len(odi["items"]) == 10
    assert all(len(item["options"]) == 6 for item in odi["items"])
    assert "demo wording" in odi["items"][0]["text"] or "demo wording" in odi["instructions"]


def test_score_worked_example_16_of_45(client: Client) -> None:
    """Nine ODI sections answered summing to 16 → 16 / 45 × 100 = 35.6 (one decimal)."""
    answers = [2, 2, 2, 2, 2, 2, 2, 1, 1, None]
    result = client.post(
        "/api/v1/instruments/odi/score", {"answers": answers}, content_type="application/json"
    ).json()
    assert result["items_answered"] == 9
    assert result["score"] == pytest.approx(35.6, abs=0.05)
    assert result["band"] == "moderate"


def test_score_errors(client: Client) -> None:
    bad = client.post(
        "/api/v1/instruments/odi/score",
        {"answers": [9, 0, 0, 0, 0, 0, 0, 0, 0, 0]},
        content_type="application/json",
    )
    assert bad.status_code == 422
    assert "0" in bad.json()["detail"] and "5" in bad.json()["detail"]
    # The API's one 422 shape: a validation problem whose errors carry the message.
    assert bad["Content-Type"].startswith("application/problem+json")
    assert bad.json()["type"] == "urn:vertebra:problem:validation-error"
    assert bad.json()["errors"] == [
        {"field": "request", "loc": [], "msg": bad.json()["detail"], "type": "value_error"}
    ]
    assert client.get("/api/v1/instruments/nope").status_code == 404
    missing = client.post("/api/v1/instruments/odi/score", {}, content_type="application/json")
    assert missing.status_code == 422
