"""Whenever the registry is synthetic (the demo), the outcomes dashboard says so beside its
headline figures, before any chart or table (below them, so that on a phone the first headline
figure stays on the first screen); a registry without the synthetic loader's account shows no such note."""

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
