"""Whenever the registry is synthetic (the demo), the outcomes dashboard says so beside its
headline figures, before any chart or table (below them, so that on a phone the first headline
figure stays on the first screen), and so do the PDF and JSON reports; a registry without the
synthetic loader's account shows no such note."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.registry.factories import make_actor
from vertebra.cohort.loader import LOADER_USERNAME
from vertebra.core.synth import Cohort
from vertebra.registry.models import Clinic, Role

pytestmark = pytest.mark.django_db


def test_the_dashboard_labels_a_synthetic_registry(loaded: Cohort) -> None:
    from django.test import Client

    client = Client()
    client.force_login(make_actor(Role.CLINICIAN, *Clinic.objects.all()).user)
    html = client.get("/clinic/outcomes/").content.decode()
    assert 'id="synthetic-note"' in html and "Synthetic demo data" in html
    note = html.index('id="synthetic-note"')
    assert html.index('class="headline-grid"') < note < html.index('id="trajectory-odi"')
    get_user_model()._default_manager.filter(username=LOADER_USERNAME).delete()
    assert 'id="synthetic-note"' not in client.get("/clinic/outcomes/").content.decode()


def test_the_pdf_and_json_reports_label_a_synthetic_registry(loaded: Cohort) -> None:
    """The downloads carry the same label as the page: the PDF under its title (read back with
    pdftotext), the JSON as ``synthetic_data``; neither once the loader's account is gone."""
    import subprocess

    from django.test import Client

    client = Client()
    client.force_login(make_actor(Role.CLINICIAN, *Clinic.objects.all()).user)

    def pdf_text() -> str:
        pdf = client.get("/clinic/outcomes/report.pdf")
        assert pdf.status_code == 200
        done = subprocess.run(
            ["pdftotext", "-layout", "-", "-"], input=pdf.content, capture_output=True, check=True
        )
        return " ".join(done.stdout.decode().split())

    assert client.get("/clinic/outcomes/report.json").json()["synthetic_data"] is True
    first_page = pdf_text().split("\f")[0]
    assert "Synthetic demo data. This registry was filled by Vertebra's synthetic generator" in (
        first_page
    )
    get_user_model()._default_manager.filter(username=LOADER_USERNAME).delete()
    assert client.get("/clinic/outcomes/report.json").json()["synthetic_data"] is False
    assert "Synthetic demo data" not in pdf_text()
