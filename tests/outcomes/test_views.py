"""The outcome pages: dashboard with denominators and the caveat, PDF/JSON downloads, the
patient trajectory, and their access rules."""

from __future__ import annotations

import re
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
    assert "Follow-up completeness by treatment and time point" in html
    assert "Observational, not proof of cause" in html
    assert "missing = non-response" in html and "among those who answered" in html
    for key in ("trajectory-odi", "responders-odi", "survival", "adverse-events"):
        assert f'id="{key}"' in html
    assert html.count('class="vchart"') >= 6
    # headlines first, then the charts, then the tables (collapsed)
    head, charts_at, tables_at = (
        html.index('id="headlines"'),
        html.index('id="charts"'),
        html.index('id="detailed-tables"'),
    )
    assert head < charts_at < tables_at
    assert html.count('<details class="table-details"') >= html.count('class="outcome-figure"')
    assert "<style" not in html and "style=" not in html
    assert "report.pdf" in html and "report.json" in html


def test_dashboard_headlines_add_up_over_the_arms(lead: Client) -> None:
    """Each headline is the sum over the arms of the report, with its denominator."""
    data = lead.get(URL + "report.json").json()
    html = lead.get(URL).content.decode()
    tps = [
        next(tp for tp in a["timepoints"] if tp["timepoint"] == "month_12")
        for a in data["arms"].values()
    ]
    due = sum(tp["n_expected"] for tp in tps)
    answered = sum(tp["n_completed"] for tp in tps)
    assert f"{answered} of {due} patients due answered" in html
    completers = [tp["odi"]["responder_rate_completers"] for tp in tps]
    num = sum(r["numerator"] for r in completers)
    den = sum(r["denominator"] for r in completers)
    assert f"{num} of {den} patients who answered" in html
    assert f"{num} of {due} patients due" in html
    assert f">{round(100 * num / den)}%<" in html


def test_dashboard_speaks_in_words(lead: Client) -> None:
    """Arms, time points and clinics are words; no snake_case code reaches the page."""
    html = lead.get(URL).content.decode()
    assert "Steroid injection" in html and "12 months" in html and "6 weeks" in html
    # a clinician of several clinics: "your" clinics, not the registry's
    assert f"Your {Clinic.objects.count()} clinics · All conditions · All treatments" in html
    visible = re.sub(r"<(script|svg)[^>]*>.*?</\1>", " ", html, flags=re.S)
    visible = re.sub(r"<[^>]+>", " ", visible)
    for code in ("steroid_injection", "week_6", "month_12", "physical_therapy", "clinic 1"):
        assert code not in visible
    names = list(Clinic.objects.values_list("name", flat=True))
    assert any(name in html for name in names)  # the funnel plot names the clinics


def test_filters_change_the_cohort(lead: Client, loaded: Cohort) -> None:
    html = lead.get(URL, {"arm": "bmac", "condition": ""}).content.decode()
    n = int((loaded.patients["arm"] == "bmac").sum())
    assert f"{n} patient" in html
    assert "clinics · All conditions · Bone marrow concentrate (BMAC)" in html
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
    assert "MCID" in html and "Median" in html and html.count('class="vchart"') == 2
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


def test_researcher_sees_clinics_by_letter_never_by_name(loaded: Cohort) -> None:
    researcher = _client_for(Role.RESEARCHER)
    html = researcher.get(URL).content.decode()
    assert "Clinic A" in html and "Clinic B" in html
    for name in Clinic.objects.values_list("name", flat=True):
        visible = re.sub(r"<select.*?</select>", " ", html, flags=re.S)  # the filter menu
        assert name not in visible
    pdf = researcher.get(URL + "report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_clinics_staff_read_their_clinic_in_the_filter_words(
    loaded: Cohort, tmp_path: Any
) -> None:
    """A clinician of one clinic reads that clinic's name where a registry-wide reader
    reads "All clinics": on the dashboard and on the first page of the PDF."""
    import subprocess

    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    own = _client_for(Role.CLINICIAN, clinic)
    html = own.get(URL).content.decode()
    words = re.search(r'<strong id="filter-words">([^<]*)</strong>', html)
    assert words is not None
    assert words.group(1).startswith(f"{clinic.name} · All conditions")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(own.get(URL + "report.pdf").content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Filters: {clinic.name} · All conditions" in " ".join(text.split())
    assert "All clinics" not in text
    researcher = _client_for(Role.RESEARCHER).get(URL).content.decode()
    assert '<strong id="filter-words">All clinics · All conditions' in researcher


def test_return_to_activity_fills_from_the_database(lead: Client) -> None:
    """The PSFS is asked by default and the loader writes it: the dashboard's
    return-to-activity table (PSFS gain >= MCID) is built from the database path."""
    html = lead.get(URL).content.decode()
    assert "Return to activity (PSFS gain ≥ MCID) by treatment (Kaplan–Meier)" in html
