"""The demo cohort loader writes consents, so demo patients on a treatment pathway pass the
consent gate (issue 12): every harvest, processing and injection falls on a day with an active
treatment consent, and every patient holds an active registry consent for follow-up."""

from __future__ import annotations

import datetime as dt

import pytest

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry.models import ConsentKind, Harvest, Injection, Patient, Processing
from vertebra.registry.pathway import active_consent

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 25)


def test_every_pathway_step_of_the_demo_cohort_is_consented() -> None:
    load_cohort(
        generate_cohort(60, 5, today=TODAY), now=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)
    )
    steps = [
        *(
            (h.episode.patient_id, h.harvested_on)
            for h in Harvest.objects.select_related("episode")
        ),
        *(
            (p.harvest.episode.patient_id, p.processed_on)
            for p in Processing.objects.select_related("harvest__episode")
        ),
        *(
            (i.episode.patient_id, i.injected_on)
            for i in Injection.objects.select_related("episode")
        ),
    ]
    assert len(steps) > 30
    assert all(active_consent(pid, ConsentKind.TREATMENT, day) for pid, day in steps)
    assert all(
        active_consent(pid, ConsentKind.REGISTRY, TODAY)
        for pid in Patient.objects.values_list("pk", flat=True)
    )
