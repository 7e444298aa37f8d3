"""Researchers never see a cell smaller than 11 (CMS cell size suppression policy): dashboard,
JSON report, PDF and API, on the registry (both databases). HIPAA-164.514(b), T10, T22."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from tests.outcomes.conftest import TODAY
from tests.registry.factories import make_actor
from tests.registry.web import bearer
from vertebra.core.disclosure import COUNT_KEYS, is_small
from vertebra.core.synth import Cohort
from vertebra.outcomes.selectors import analysis_tables
from vertebra.registry.models import Clinic, Role

pytestmark = pytest.mark.django_db
SUPPRESSED = "fewer than 11 (suppressed)"


def small_counts(value: Any) -> list[Any]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in COUNT_KEYS and is_small(item, 11):
                found.append((key, item))
            found += small_counts(item)
    elif isinstance(value, list):
        for item in value:
            found += small_counts(item)
    return found


@pytest.fixture
def lone(loaded: Cohort) -> dict[str, Any]:
    """A clinic + arm + condition filter that leaves exactly one patient (identified row)."""
    clinician = make_actor(Role.CLINICIAN, *Clinic.objects.all())
    patients = analysis_tables(actor=clinician, as_of=TODAY).patients
    sizes = patients.groupby(["clinic_id", "arm", "condition"], observed=True).size()
    clinic, arm, condition = sizes[sizes == 1].index[0]
    row = patients[
        (patients["clinic_id"] == clinic)
        & (patients["arm"] == arm)
        & (patients["condition"] == condition)
    ].iloc[0]
    return {
        "query": {"clinic": clinic, "arm": arm, "condition": condition},
        "age": int(row["age"]),
        "clinician": clinician,
    }


def researcher_client() -> Client:
    client = Client()
    client.force_login(make_actor(Role.RESEARCHER).user)
    return client


def test_dashboard_shows_no_figure_for_a_filter_that_leaves_one_patient(
    lone: dict[str, Any],
) -> None:
    page = researcher_client().get("/clinic/outcomes/", lone["query"])
    body = page.content.decode()
    assert page.status_code == 200
    assert "Fewer than 11 patients (suppressed)" in body
    assert 'id="disclosure-note"' in body and "CMS cell size suppression policy" in body
    assert "<strong>1 patient" not in body and "<figure" not in body
    assert 'class="data-table"' not in body and 'id="completeness"' not in body
    # the same filter for the patient's own clinic staff (identified, not suppressed)
    staff = Client()
    staff.force_login(lone["clinician"].user)
    assert (
        "<strong>1 patient</strong>"
        in staff.get("/clinic/outcomes/", lone["query"]).content.decode()
    )


def test_json_report_and_pdf_hold_no_patient_level_value(lone: dict[str, Any]) -> None:
    client = researcher_client()
    response = client.get("/clinic/outcomes/report.json", lone["query"])
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["n_patients"] == SUPPRESSED and data["arms"] == {} and data["suppressed"]
    assert data["disclosure"]["min_cell"] == 11 and data["disclosure"]["version"] == "1.0.0"
    text = response.content.decode()
    assert not re.search(r'"(mean|sd|median|rate)": [0-9]', text)
    assert f'"age": {lone["age"]}' not in text
    pdf = client.get("/clinic/outcomes/report.pdf", lone["query"])
    # A one-page PDF that says why (a report link never dead-ends), and no figure.
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "suppressed" in pdf["Content-Disposition"]


def test_whole_registry_report_shows_no_count_between_1_and_10(loaded: Cohort) -> None:
    client = researcher_client()
    data = json.loads(client.get("/clinic/outcomes/report.json").content)
    assert isinstance(data["n_patients"], int) and data["n_patients"] >= 11
    assert small_counts(data) == []
    assert all(arm["n_patients"] >= 11 for arm in data["arms"].values())
    assert data["disclosure"]["withheld"]["arms"], "the 120-patient cohort has small arms"
    assert data["disclosure"]["suppressed_values"] > 0
    page = client.get("/clinic/outcomes/").content.decode()
    assert SUPPRESSED in page  # e.g. a completeness or adverse-event cell
    assert "Not shown (fewer than 11 patients)" in page


def test_the_token_api_gives_researchers_no_patient_level_data(loaded: Cohort) -> None:
    headers = bearer(make_actor(Role.RESEARCHER))
    client = Client()
    for path in ("/api/v1/patients", "/api/v1/patients/1", "/api/v1/patients/1/episodes"):
        response = client.get(path, headers=headers)
        assert response.status_code == 403, path
        # An RFC 9457 problem: nothing but the refusal (no patient field, no record).
        assert set(json.loads(response.content)) == {"type", "title", "status", "detail"}


def _answered_counts(tp: dict[str, Any]) -> list[Any]:
    """Every place a time point shows how many answered (or a responder numerator)."""
    out: list[Any] = [tp["n_completed"], tp["completeness"].get("numerator")]
    for item in tp.values():
        if isinstance(item, dict) and "n_scored" in item:
            out += [item["n_scored"], item["n_change"]]
            for key in ("responder_rate_completers", "substantial_rate_completers"):
                if isinstance(item.get(key), dict):
                    out.append(item[key]["denominator"])
    return out


def test_researcher_report_gives_no_hidden_missing_count_back_by_subtraction(
    loaded: Cohort,
) -> None:
    """Where a time point's missing (or answered) count is small, neither it nor the counts of
    those who answered are shown: due - answered cannot give it back (complementary
    suppression, docs/algorithms/small-cells.md). The clinic's own staff still see them."""
    data = json.loads(researcher_client().get("/clinic/outcomes/report.json").content)
    hidden = 0
    for arm in data["arms"].values():
        for tp in arm["timepoints"]:
            due, missing = tp["n_expected"], tp["n_missing"]
            shown = [v for v in _answered_counts(tp) if isinstance(v, int) and v]
            if isinstance(missing, str):
                hidden += 1
                assert missing == SUPPRESSED and tp["n_completed"] == SUPPRESSED
                assert shown == [], (arm, tp["timepoint"])
                assert tp["completeness"]["rate"] is None
            elif isinstance(due, int) and isinstance(tp["n_completed"], int):
                assert not is_small(due - tp["n_completed"], 11)
    assert hidden, "the 120-patient cohort has a time point with 1-10 missing"
    clinician = Client()
    clinician.force_login(make_actor(Role.CLINICIAN, *Clinic.objects.all()).user)
    own = json.loads(clinician.get("/clinic/outcomes/report.json").content)
    counts = [tp["n_missing"] for a in own["arms"].values() for tp in a["timepoints"]]
    assert all(isinstance(c, int) for c in counts) and any(is_small(c, 11) for c in counts)
