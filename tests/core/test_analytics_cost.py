"""Cost per patient and per responder (vertebra.core.analytics.cost): a hand-worked case, the
bootstrap against scipy.stats.bootstrap and against its coverage on simulated data with a
known answer, and the report's JSON keys with small cells suppressed."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats  # type: ignore[import-untyped]

from vertebra.core.analytics import AnalysisTables, CohortFilter, build_panel, build_report
from vertebra.core.analytics.cost import bootstrap_ratio, cost_summary

AS_OF = date(2026, 6, 1)
T0 = date(2025, 1, 1)
TPS = (("baseline", 0.0, 0), ("month_12", 12.0, 365))

# (id, arm, [odi baseline, odi 12 mo], price, currency, payer, paid)
Row = tuple[int, str, list[float | None], float | None, str, str, float | None]
# Arm A, worked in docs/algorithms/cost.md: 12-month ODI 40->20 (responder), 40->35 (no: -5,
# 12.5 %), 50->38 (responder: -12), 45->missing (due, not answered), missing->25 (no baseline).
HAND: list[Row] = [
    (1, "A", [40, 20], 8000, "USD", "self_pay", 8000),
    (2, "A", [40, 35], 12000, "USD", "self_pay", 12000),
    (3, "A", [50, 38], 10000, "USD", "insurer", 1500),
    (4, "A", [45, None], 6000, "USD", "trial", 0),
    (5, "A", [None, 25], None, "", "", None),
    (6, "B", [40, 20], 900, "EUR", "insurer", 100),
    (7, "B", [40, 20], 1100, "EUR", "insurer", 100),
    (8, "B", [40, 38], 700, "USD", "insurer", 70),
]


def _tables(rows: list[Row]) -> AnalysisTables:
    pts = pd.DataFrame(
        {
            "patient_id": [r[0] for r in rows],
            "clinic_id": 1,
            "arm": [r[1] for r in rows],
            "condition": "degenerative_disc_disease",
            "treatment_date": pd.Timestamp(T0),
            "age": 50.0,
            "sex": "female",
            "startback_group": "medium",
            "pain_duration_months": 12.0,
            "cost_price": [r[3] for r in rows],
            "cost_currency": [r[4] for r in rows],
            "cost_billed_to": [r[5] for r in rows],
            "cost_patient_paid": [r[6] for r in rows],
        }
    )
    tps = [
        {
            "patient_id": r[0],
            "timepoint": tp,
            "months": months,
            "due_date": pd.Timestamp(T0 + timedelta(days=days)),
            "completed": r[2][k] is not None,
            "odi": np.nan if r[2][k] is None else r[2][k],
            "nrs_back": np.nan,
        }
        for r in rows
        for k, (tp, months, days) in enumerate(TPS)
    ]
    return AnalysisTables.of(pts, pd.DataFrame(tps), None)


def test_the_hand_worked_case() -> None:
    panel = build_panel(_tables(HAND), CohortFilter(), AS_OF)
    result = cost_summary(panel)
    assert result is not None
    assert result.currency == "USD"  # 5 USD prices against 2 EUR
    a, b = result.arms["A"], result.arms["B"]
    assert (a.n_patients, a.n_cost_recorded, a.n_other_currency) == (5, 4, 0)
    assert a.per_patient.value == pytest.approx((8000 + 12000 + 10000 + 6000) / 4)  # 9,000
    assert a.out_of_pocket.value == pytest.approx((8000 + 12000 + 1500 + 0) / 4)  # 5,375
    assert a.billed_to == {"self_pay": 2, "insurer": 1, "trial": 1, "other": 0}
    # Completers with a price: patients 1-3, responders 1 and 3: 30,000 / 2.
    assert (a.per_responder.n, a.per_responder.per) == (3, 2)
    assert a.per_responder.value == pytest.approx(15000)
    # Every due patient with a price (1-4; 4 unanswered = non-responder): 36,000 / 2.
    assert (a.per_responder_all.n, a.per_responder_all.per) == (4, 2)
    assert a.per_responder_all.value == pytest.approx(18000)
    # Arm B: the EUR prices are counted, not converted; one USD patient, no responder.
    assert (b.n_cost_recorded, b.n_other_currency) == (1, 2)
    assert b.per_responder.value is None and b.per_responder.per == 0


def test_tables_without_cost_columns_give_no_cost() -> None:
    tables = _tables(HAND)
    bare = AnalysisTables.of(
        tables.patients.drop(columns=[c for c in tables.patients if c.startswith("cost_")]),
        tables.timepoints,
    )
    assert cost_summary(build_panel(bare, CohortFilter(), AS_OF)) is None
    assert build_report(bare, None, AS_OF).to_dict()["cost_method"] is None


def test_bootstrap_agrees_with_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(7)
    cost = rng.gamma(4.0, 2500.0, size=80)
    resp = (rng.random(80) < 0.45).astype(float)
    ours = bootstrap_ratio(cost, resp, n_boot=4000, seed=11)
    ref = stats.bootstrap(
        (cost, resp),
        lambda c, r, axis=-1: c.sum(axis=axis) / r.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(12),
    ).confidence_interval
    assert ours[0] == pytest.approx(ref.low, rel=0.03)
    assert ours[1] == pytest.approx(ref.high, rel=0.03)
    mean_ref = stats.bootstrap(
        (cost,), np.mean, n_resamples=4000, method="percentile", random_state=3
    ).confidence_interval
    mean = bootstrap_ratio(cost, np.ones_like(cost), n_boot=4000, seed=11)
    assert mean[0] == pytest.approx(mean_ref.low, rel=0.02)
    assert mean[1] == pytest.approx(mean_ref.high, rel=0.02)


def test_bootstrap_is_seeded_and_unbounded_without_responders() -> None:
    cost = np.array([100.0, 200.0, 300.0, 400.0])
    resp = np.array([0.0, 0.0, 0.0, 1.0])
    assert bootstrap_ratio(cost, resp, seed=5) == bootstrap_ratio(cost, resp, seed=5)
    lo, hi = bootstrap_ratio(cost, resp, seed=5)
    assert lo is not None and hi is None  # >2.5 % of resamples hold no responder
    assert bootstrap_ratio(cost[:1], resp[:1]) == (None, None)


def test_cost_per_responder_ci_covers_the_known_answer() -> None:
    """Simulated cohorts with a known cost per responder, E[cost] / P(response) = 10,000 /
    0.5 = 20,000: the 95 % percentile intervals cover it about 95 % of the time."""
    rng = np.random.default_rng(2026)
    hits, runs = 0, 200
    for k in range(runs):
        cost = rng.gamma(4.0, 2500.0, size=150)  # mean 10,000
        resp = (rng.random(150) < 0.5).astype(float)
        lo, hi = bootstrap_ratio(cost, resp, n_boot=400, seed=k)
        assert lo is not None and hi is not None
        hits += lo <= 20000 <= hi
    assert 0.89 <= hits / runs <= 0.99


def test_the_report_names_cost_keys_and_suppresses_small_cells() -> None:
    data = build_report(_tables(HAND), None, AS_OF).to_dict()
    cost = data["arms"]["A"]["cost"]
    assert cost["cost_per_patient"]["value"] == pytest.approx(9000)
    assert cost["cost_per_responder"] == {
        **cost["cost_per_responder"],
        "n_evaluable": 3,
        "n_responders": 2,
        "total": 30000.0,
        "value": 15000.0,
    }
    assert cost["cost_per_responder_all"]["n_due"] == 4
    assert cost["cost_out_of_pocket_per_patient"]["n"] == 4
    assert data["cost_method"]["currency"] == "USD"
    assert data["cost_method"]["ci_method"] == "percentile bootstrap over patients"
    # Researchers (min_cell 2 here, so that the 5-patient arm stays): a single responder in a
    # cell is hidden with the figures it gives away.
    small = build_report(_tables(HAND), None, AS_OF, min_cell=3).to_dict()
    a = small["arms"]["A"]["cost"]
    per = a["cost_per_responder"]
    # n_evaluable 3 - n_responders 2 = 1 non-responder: complementary suppression.
    assert per["suppressed"] is True and per["value"] is None and per["ci"] is None
    assert per["total"] is None
    billed = a["cost_billed_to"]
    assert billed["insurer"]["rate"] is None and billed["insurer"]["suppressed"]  # 1 patient
    assert billed["other"]["numerator"] == 0  # 0 describes no one and is shown
    full = build_report(_tables(HAND), None, AS_OF).to_dict()["arms"]["A"]["cost"]
    assert full["cost_billed_to"]["self_pay"]["numerator"] == 2
    assert full["cost_billed_to"]["self_pay"]["denominator"] == 4
    assert full["cost_billed_to"]["self_pay"]["rate"] == pytest.approx(0.5)


def test_the_html_report_shows_cost_with_denominators() -> None:
    from vertebra.core.analytics.html import render_html

    report = build_report(_tables(HAND), None, AS_OF)
    page = render_html(report)
    assert "<h2 id='cost'>Cost and coverage</h2>" in page
    assert "USD 9,000" in page  # cost per patient, arm A
    assert "USD 15,000" in page and "2 responders of 3 with both scores" in page
    assert "USD 18,000" in page and "2 responders of 4 due" in page
    assert "4 of 5" in page  # price recorded
    assert "1 of 3 (+2 in another currency)" in page


def test_bootstrap_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(1)
    cost = rng.gamma(4.0, 2500.0, size=40)
    resp = (rng.random(40) < 0.5).astype(float)
    perm = rng.permutation(40)
    assert bootstrap_ratio(cost, resp) == bootstrap_ratio(cost[perm], resp[perm])


def test_the_block_bootstrap_of_large_arms_covers_the_known_answer() -> None:
    """Above EXACT_ROWS patients the bootstrap resamples random blocks of patients: its
    intervals still cover the known cost per responder about 95 % of the time, and agree
    with scipy's patient-level percentile bootstrap."""
    from vertebra.core.analytics.cost import EXACT_ROWS

    rng = np.random.default_rng(99)
    n, hits, runs = 4 * EXACT_ROWS, 0, 200
    for k in range(runs):
        cost = rng.gamma(4.0, 2500.0, size=n)
        resp = (rng.random(n) < 0.5).astype(float)
        lo, hi = bootstrap_ratio(cost, resp, n_boot=400, seed=k)
        assert lo is not None and hi is not None
        hits += lo <= 20000 <= hi
    assert 0.89 <= hits / runs <= 0.99
    ref = stats.bootstrap(
        (cost, resp),
        lambda c, r, axis=-1: c.sum(axis=axis) / r.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(5),
    ).confidence_interval
    lo, hi = bootstrap_ratio(cost, resp, n_boot=2000)
    assert lo == pytest.approx(ref.low, rel=0.02) and hi == pytest.approx(ref.high, rel=0.02)
