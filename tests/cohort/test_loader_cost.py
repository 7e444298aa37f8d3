"""The bulk loader writes each synthetic patient's episode cost as the services would."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.registry import models as m

pytestmark = pytest.mark.django_db


def test_episodes_carry_the_cohort_cost_and_pass_the_cost_rules() -> None:
    cohort = generate_cohort(60, 3, today=dt.date(2026, 11, 25))
    load_cohort(cohort, now=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))
    episodes = {
        e.patient.mrn: e for e in m.TreatmentEpisode.objects.select_related("patient").all()
    }
    priced = 0
    for row in cohort.patients.itertuples():
        episode = episodes[f"SYN-{row.patient_id:07d}"]
        if np.isnan(row.cost_price):
            assert episode.price is None and episode.currency == "" and episode.billed_to == ""
            continue
        priced += 1
        assert episode.price == Decimal(f"{row.cost_price:.2f}")
        assert episode.patient_paid == Decimal(f"{row.cost_patient_paid:.2f}")
        assert (episode.currency, episode.billed_to) == ("USD", row.cost_billed_to)
    assert priced > 40
    from vertebra.registry.validation import plausibility_refusals

    for episode in episodes.values():  # stored costs obey the rules a service applies
        refusals = plausibility_refusals(episode, today=dt.date(2026, 11, 25))
        assert not [r for r in refusals if r.field != "start_date"], refusals
