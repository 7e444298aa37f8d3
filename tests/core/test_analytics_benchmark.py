"""The clinic benchmark compares like with like: treatment arm is in the case-mix model.

Constructed data (issue 18): every clinic gets exactly the same responder rate *within* each
arm (70 % on cell therapy, 35 % on physical therapy), but clinic "h" treats mostly with
physical therapy. Without arm in the model "h" falls below the funnel's limits for its treatment
mix alone; with arm (the default) its adjusted rate equals the overall rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vertebra.core.analytics import clinic_benchmark
from vertebra.core.analytics.cohort import Panel

PER_CLINIC = 200
CLINICS = "abcdefgh"
RESPONSE = {"bmac": 0.70, "physical_therapy": 0.35}


def _panel() -> Panel:
    """8 clinics x 200 patients; clinics a-g treat 80 % with bmac, clinic h 20 %."""
    rng = np.random.default_rng(7)
    rows = []
    for clinic in CLINICS:
        n_cell = int(PER_CLINIC * (0.2 if clinic == "h" else 0.8))
        for arm, n_arm in (("bmac", n_cell), ("physical_therapy", PER_CLINIC - n_cell)):
            n_resp = round(n_arm * RESPONSE[arm])
            for i in range(n_arm):
                rows.append((clinic, arm, i < n_resp))
    frame = pd.DataFrame(rows, columns=["clinic_id", "arm", "responds"])
    n = len(frame)
    arms = sorted(RESPONSE)
    patients = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "clinic_id": frame["clinic_id"],
            "arm": frame["arm"],
            # Case mix unrelated to response and to clinic, so only the arm matters.
            "age": rng.integers(25, 70, n),
            "sex": rng.choice(["female", "male"], n),
            "pain_duration_months": rng.integers(6, 60, n).astype(float),
            "condition": rng.choice(["degenerative_disc_disease", "herniated_disc"], n),
            "startback_group": rng.choice(["low", "medium", "high"], n),
        }
    )
    base = np.full(n, 50.0)
    fu = np.where(frame["responds"], 20.0, 48.0)  # 60 % better vs 4 %: responder or not
    nrs = rng.integers(4, 10, n).astype(float)
    return Panel(
        patients=patients,
        arms=arms,
        arm_codes=np.array([arms.index(a) for a in frame["arm"]], dtype=np.int64),
        tp_ids=["baseline", "month_12"],
        tp_months=np.array([0.0, 12.0]),
        expected=np.ones((n, 2), dtype=bool),
        completed=np.ones((n, 2), dtype=bool),
        values={
            "odi": np.column_stack([base, fu]),
            "nrs_back": np.column_stack([nrs, nrs]),
        },
    )


def _row(result: object, clinic: str) -> dict[str, object]:
    rows = {r["clinic_id"]: r for r in result.to_dict()["clinics"]}  # type: ignore[attr-defined]
    return rows[clinic]


def test_without_arm_a_clinic_is_flagged_for_its_treatment_mix() -> None:
    result = clinic_benchmark(_panel(), include_arm=False)
    h = _row(result, "h")
    assert h["observed"] == 20 * 0 + round(40 * 0.70) + round(160 * 0.35)  # 28 + 56 = 84
    assert h["position"] == "below 99.8% limit"
    assert "arm" not in result.case_mix
    assert result.to_dict()["case_mix_includes_arm"] is False
    assert "NOT in the model" in result.to_dict()["method"]


def test_with_arm_the_same_clinic_is_within_limits() -> None:
    result = clinic_benchmark(_panel())
    d = result.to_dict()
    assert d["case_mix_includes_arm"] is True
    assert "including treatment arm" in d["method"]
    assert result.case_mix[-1] == "arm"
    for clinic in CLINICS:
        row = _row(result, clinic)
        assert row["position"] == "within limits", clinic
        # Same within-arm rates everywhere: observed = expected, adjusted = overall rate.
        assert row["o_e"] == pytest.approx(1.0, abs=0.02)
        assert row["adjusted_rate"] == pytest.approx(d["overall_rate"], abs=0.015)
