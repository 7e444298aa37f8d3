"""The vectorised return-to-work / return-to-activity analyses equal the pandas version they
replaced (tests/core/returns_reference.py, as of f7aa781) on random cohorts: same population
counts, same curves, float for float (the per-patient durations are the same numbers, so
lifelines gets the same input)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.core import returns_reference as ref
from vertebra.core.analytics.returns import (
    WORK_BANDS,
    km_returns,
    return_to_activity,
    return_to_work,
)

MONTHS = (0.0, 1.5, 3.0, 6.0, 12.0, 24.0)


def _cohort(seed: int, band_column: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Random patients and time points with the awkward cases: unanswered and uncompleted
    rows, a second baseline row, rows of patients outside the cohort, rows out of order,
    missing months, unknown bands or codes, categorical or text bands."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    arms = ["a", "b", "c", "d10"]
    patients = pd.DataFrame(
        {
            "patient_id": rng.permutation(np.arange(1000, 1000 + 2 * n))[:n],
            "arm": rng.choice(arms[: int(rng.integers(1, 5))], size=n),
        }
    )
    pid = np.repeat(np.concatenate([patients["patient_id"].to_numpy(), [1, 2, 3]]), len(MONTHS))
    months = np.tile(MONTHS, n + 3)
    extra = rng.choice(len(pid), size=max(1, len(pid) // 20))  # duplicate rows (e.g. baseline)
    pid, months = np.concatenate([pid, pid[extra]]), np.concatenate([months, months[extra]])
    rows = len(pid)
    months = np.where(rng.random(rows) < 0.01, np.nan, months)
    bands = np.array([*WORK_BANDS, "unknown_band"], dtype=object)
    band = bands[rng.integers(0, len(bands), rows)]
    band = np.where(rng.random(rows) < 0.2, None, band)
    psfs = np.round(rng.uniform(0, 10, rows), 1)
    psfs[rng.random(rows) < 0.2] = np.nan
    tp = pd.DataFrame(
        {
            "patient_id": pid,
            "months": months,
            "completed": rng.random(rows) < 0.85,
            "psfs": psfs,
        }
    )
    if band_column == "work_status":
        codes = rng.integers(0, 12, rows).astype(float)  # 0, 10, 11: codes without a band
        codes[rng.random(rows) < 0.2] = np.nan
        tp["work_status"] = codes
    elif band_column == "categorical":
        tp["work_status_band"] = pd.Categorical(band)
    else:
        tp["work_status_band"] = band
    tp = tp.iloc[rng.permutation(rows)].reset_index(drop=True)  # no particular order
    return patients, tp, arms


@pytest.mark.parametrize("band_column", ["text", "categorical", "work_status"])
@pytest.mark.parametrize("seed", range(12))
def test_vectorised_returns_equal_the_pandas_version(seed: int, band_column: str) -> None:
    patients, tp, arms = _cohort(seed, band_column)
    assert return_to_work(patients, tp, arms) == ref.return_to_work(patients, tp, arms)
    for mcid in (1.0, 2.0):
        new = return_to_activity(patients, tp, arms, mcid)
        assert new == ref.return_to_activity(patients, tp, arms, mcid)


def test_weighted_km_equals_the_per_patient_fit() -> None:
    """Collapsed counts (the out-of-core engine's input) give the per-patient figures."""
    rng = np.random.default_rng(7)
    arm = rng.choice(["a", "b"], size=500)
    months = rng.choice([1.5, 3.0, 6.0, 12.0, 24.0], size=500)
    returned = rng.random(500) < 0.4
    per_patient = km_returns(arm, months, returned)
    frame = pd.DataFrame({"a": arm, "m": months, "r": returned})
    counts = frame.groupby(["a", "m", "r"]).size().reset_index(name="w")
    collapsed = km_returns(counts["a"], counts["m"], counts["r"], weights=counts["w"])
    assert collapsed.keys() == per_patient.keys()
    for a, curve in per_patient.items():
        other = collapsed[a]
        assert (other.n, other.events, other.median_months) == (
            curve.n,
            curve.events,
            curve.median_months,
        )
        for p, q in zip(curve.landmarks, other.landmarks, strict=True):
            assert (p.at_risk, p.events_before) == (q.at_risk, q.events_before)
            assert p.survival == pytest.approx(q.survival, rel=1e-12)
            assert p.ci == pytest.approx(q.ci, rel=1e-12)
