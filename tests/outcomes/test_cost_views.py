"""Cost on the clinic dashboard, the JSON and PDF reports, and for researchers (small cells
suppressed), from a loaded synthetic cohort; checked against an independent count."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from tests.registry.factories import make_actor
from vertebra.core.synth import Cohort
from vertebra.registry.models import Clinic, Role

pytestmark = pytest.mark.django_db

URL = "/clinic/outcomes/"


def _client(role: str, *clinics: Clinic) -> Client:
    client = Client()
    client.force_login(make_actor(role, *clinics).user)
    return client


def test_dashboard_and_json_show_cost_per_arm_with_denominators(loaded: Cohort) -> None:
    lead = _client(Role.CLINICIAN, *Clinic.objects.all())
    html = lead.get(URL).content.decode()
    assert 'id="cost"' in html and "Cost and coverage by treatment (USD)" in html
    assert "Cost per responder, completers (95% CI)" in html
    data = lead.get(URL + "report.json").json()
    assert data["cost_method"]["currency"] == "USD"
    p = loaded.patients
    for arm, a in data["arms"].items():
        cost = a["cost"]
        mine = p[p["arm"].astype(str) == arm]
        priced = mine["cost_price"].dropna()
        assert cost["n_cost_recorded"] == len(priced)
        assert cost["n_patients"] == len(mine)
        if len(priced):
            assert cost["cost_per_patient"]["value"] == pytest.approx(priced.mean())
            lo, hi = cost["cost_per_patient"]["ci"] or (None, None)
            if len(priced) > 1:
                assert lo <= priced.mean() <= hi
    assert any(a["cost"]["cost_per_responder"]["n_responders"] for a in data["arms"].values())
    pdf = lead.get(URL + "report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_researchers_see_cost_with_small_cells_suppressed(loaded: Cohort) -> None:
    researcher = _client(Role.RESEARCHER)
    data = researcher.get(URL + "report.json").json()
    assert data["cost_method"]["currency"] == "USD"
    for a in data["arms"].values():
        cost = a["cost"]
        for key in ("n_cost_recorded", "n_patients"):
            value = cost[key]
            assert not (isinstance(value, int) and 0 < value < 11), (key, value)
        per = cost["cost_per_responder"]
        r, e = per["n_responders"], per["n_evaluable"]
        if isinstance(r, int) and isinstance(e, int):
            assert not 0 < r < 11 and not 0 < e - r < 11
        else:
            assert per["value"] is None and per["ci"] is None
        for row in cost["cost_billed_to"].values():
            assert not (isinstance(row["numerator"], int) and 0 < row["numerator"] < 11)
            if isinstance(row["numerator"], int) and isinstance(row["denominator"], int):
                assert not 0 < row["denominator"] - row["numerator"] < 11
    assert np.isfinite(
        [a["cost"]["cost_per_patient"]["value"] or 0 for a in data["arms"].values()]
    ).all()
