"""Synthetic episode cost (core.synth.cost): deterministic by seed, within the cited ranges,
trial-funded cell therapy at registered-trial clinics, out of pocket consistent with the payer."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from vertebra.core.synth import generate_cohort
from vertebra.core.synth.priors import load_priors

TODAY = dt.date(2026, 11, 25)


def test_cost_is_deterministic_by_seed_and_plausible() -> None:
    a = generate_cohort(3000, 4, today=TODAY)
    b = generate_cohort(3000, 4, today=TODAY)
    cols = ["cost_price", "cost_patient_paid", "cost_currency", "cost_billed_to"]
    pd.testing.assert_frame_equal(a.patients[cols], b.patients[cols])
    other = generate_cohort(3000, 5, today=TODAY).patients["cost_price"]
    assert not np.array_equal(a.patients["cost_price"].fillna(-1), other.fillna(-1))

    p = a.patients
    priced = p["cost_price"].notna()
    assert 0.80 < priced.mean() < 0.90  # priors: 85 % recorded
    assert (p.loc[priced, "cost_currency"] == "usd").all()  # a code, as in the tables
    assert p.loc[~priced, "cost_billed_to"].isna().all()
    assert (p.loc[priced, "cost_patient_paid"] <= p.loc[priced, "cost_price"] + 0.005).all()
    assert (p["cost_price"].dropna() >= 0).all()

    price = load_priors()["cost"]["price"]
    arm = p["arm"].astype(str)
    group = np.where(arm.isin(["medication", "steroid_injection", "physical_therapy", "surgery"]),
                     arm, "cell")  # fmt: skip
    for name, spec in price.items():
        values = p.loc[priced & (group == name), "cost_price"]
        inside = values.between(spec["low"], spec["high"]).mean()
        assert 0.82 < inside < 0.97, (name, inside)  # the range holds the central 90 %


def test_payers_follow_regulation_and_coverage() -> None:
    c = generate_cohort(3000, 4, today=TODAY)
    p = c.patients.merge(c.clinics[["clinic_id", "regulatory_status"]], on="clinic_id")
    priced = p["cost_price"].notna()
    cell = ~p["arm"].astype(str).isin(["medication", "steroid_injection", "physical_therapy",
                                       "surgery"])  # fmt: skip
    trial = p["regulatory_status"].astype(str) == "registered_trial"
    in_trial = p[priced & cell & trial]
    assert len(in_trial) > 0
    assert (in_trial["cost_billed_to"] == "trial").all()
    assert (in_trial["cost_patient_paid"] == 0).all()
    outside = p[priced & cell & ~trial]
    assert (outside["cost_billed_to"] == "self_pay").mean() > 0.8
    selfpay = p[priced & (p["cost_billed_to"] == "self_pay")]
    assert (selfpay["cost_patient_paid"] == selfpay["cost_price"]).all()
    conventional = p[priced & ~cell]
    assert (conventional["cost_billed_to"] == "insurer").mean() > 0.8
