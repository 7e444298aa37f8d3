"""The outcome pages: dashboard with denominators and the caveat, PDF/JSON downloads, the
patient trajectory, and their access rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.registry.factories import make_actor
from vertebra.core.synth import Cohort
from vertebra.registry.models import Clinic, Patient, Role

pytestmark = pytest.mark.django_db

URL = "/clinic/outcomes/"


def _client_for(role: str, *clinics: Clinic) -> Client:
    actor = make_actor(role, *clinics)
    client = Client()
    client.force_login(actor.user)
    return client


@pytest.fixture
def lead(loaded: Cohort) -> Client:
    """A clinician at every clinic of the loaded cohort."""
    return _client_for(Role.CLINICIAN, *Clinic.objects.all())


def test_dashboard_shows_denominators_plots_and_the_caveat(lead: Client) -> None:
    response = lead.get(URL)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "120 patients" in html
    assert "Follow-up completeness" in html
    assert "Expected (due)" in html and " of " in html  # completed of expected
    assert "Observational, not proof of cause" in html
    assert "missing = non-response" in html and "among completers" in html
    for key in ("trajectory-odi", "responders-odi", "survival", "adverse-events"):
        assert f'id="{key}"' in html
    assert html.count("<svg") >= 6
    assert html.count('<table class="data-table"') >= html.count('class="outcome-figure"')
    assert "report.pdf" in html and "report.json" in html


def test_filters_change_the_cohort(lead: Client, loaded: Cohort) -> None:
    html = lead.get(URL, {"arm": "bmac", "condition": ""}).content.decode()
    n = int((loaded.patients["arm"] == "bmac").sum())
    assert f"{n} patient" in html
    assert "arms: bmac." in html
    assert 'href="/clinic/outcomes/report.pdf?arm=bmac' in html


def test_no_match_and_bad_input(lead: Client) -> None:
    empty = lead.get(URL, {"arm": "bmac", "cell_source": "adipose"})
    assert empty.status_code == 200 and "No patients" in empty.content.decode()
    bad = lead.get(URL, {"arm": "nonsense"})
    assert bad.status_code == 400
    backwards = lead.get(URL, {"treated_from": "2026-01-01", "treated_to": "2025-01-01"})
    assert backwards.status_code == 400


def test_pdf_and_json_downloads(lead: Client) -> None:
    pdf = lead.get(URL + "report.pdf", {"condition": "degenerative_disc_disease"})
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert "attachment" in pdf["Content-Disposition"]
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 10_000
    # a narrow filter leaves clinics with nobody to benchmark: still a PDF
    assert lead.get(URL + "report.pdf", {"arm": "bmac", "condition": "sciatica"}).status_code in (
        200,
        404,
    )
    data = lead.get(URL + "report.json").json()
    assert data["n_patients"] == 120
    assert "observational_caveat" in data and data["arms"]
    assert (
        lead.get(URL + "report.json", {"arm": "bmac", "cell_source": "adipose"}).status_code == 404
    )


def test_patient_trajectory_is_scoped(loaded: Cohort) -> None:
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    own = _client_for(Role.CLINICIAN, anna.clinic)
    response = own.get(f"{URL}patient/{anna.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "MCID" in html and "median" in html and html.count("<svg") == 2
    fragment = own.get(f"{URL}patient/{anna.pk}/", {"fragment": "1"}).content.decode()
    assert "<html" not in fragment and "<svg" in fragment
    other_clinic = Clinic.objects.exclude(pk=anna.clinic_id).first()
    assert other_clinic is not None
    other = _client_for(Role.CLINICIAN, other_clinic)
    assert other.get(f"{URL}patient/{anna.pk}/").status_code == 404


def test_access_rules(loaded: Cohort, client: Any) -> None:
    assert client.get(URL).status_code == 302  # sign-in first
    assert _client_for(Role.REGISTRY_ADMIN).get(URL).status_code == 403
    researcher = _client_for(Role.RESEARCHER)
    assert researcher.get(URL).status_code == 200
    anna = Patient.objects.get(given_name="Anna", family_name="Whitfield")
    assert researcher.get(f"{URL}patient/{anna.pk}/").status_code == 403
