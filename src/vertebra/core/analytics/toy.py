"""A small, fast, seeded generator of tables that meet the analytics contract.

Not the registry's synthetic cohort (that is `vertebra.core.synth`, calibrated to published
figures): this one exists so that the analytics tests and benchmark can build tables of any
size in a second, with a KNOWN treatment effect and known confounding. Severity (baseline ODI)
raises the chance of cell therapy and lowers the improvement, so the naive comparison is
biased; the true effect of cell therapy on 12-month ODI change is `true_effect` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics.schema import AnalysisTables

__all__ = ["TIMEPOINTS", "toy_tables"]

#: (id, months, days after treatment)
TIMEPOINTS: tuple[tuple[str, float, int], ...] = (
    ("baseline", 0.0, 0),
    ("week_6", 1.5, 42),
    ("month_3", 3.0, 91),
    ("month_6", 6.0, 183),
    ("month_12", 12.0, 365),
    ("month_24", 24.0, 730),
)
ARMS = ("bmac", "adipose", "physical_therapy", "steroid_injection")
CONDITIONS = ("degenerative_disc_disease", "herniated_disc", "sciatica", "spinal_stenosis")


def _cat(codes: Any, categories: Sequence[str]) -> pd.Categorical:
    """Categorical from integer codes (typed loosely: pandas-stubs wants a Sequence)."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories))


def toy_tables(
    n: int,
    seed: int = 0,
    today: date = date(2026, 11, 25),
    true_effect: float = -5.0,
    clinics: int = 8,
) -> AnalysisTables:
    """`n` patients, 6 time points each, events; every step vectorised (1M in a few seconds)."""
    rng = np.random.default_rng(seed)
    pid = np.arange(1, n + 1, dtype=np.int64)
    age = np.clip(rng.normal(52, 11, n).round(), 18, 90)
    female = rng.random(n) < 0.55
    cond = rng.integers(0, len(CONDITIONS), n)
    clinic = rng.integers(1, clinics + 1, n)
    duration = np.clip(rng.lognormal(np.log(24), 0.7, n).round(), 3, 240)
    sev = rng.standard_normal(n)
    base_odi = np.clip(42 + 12 * sev, 0, 100).round()
    base_nrs = np.clip(6.5 + 1.2 * sev + rng.normal(0, 1, n), 0, 10).round()
    # confounding: sicker patients pick cell therapy more often
    p_cell = 1 / (1 + np.exp(-(-0.2 + 0.8 * sev + 0.01 * (age - 52))))
    cell = rng.random(n) < p_cell
    arm = np.where(cell, rng.integers(0, 2, n), rng.integers(2, 4, n))
    sb = np.where(sev > 0.8, 2, np.where(sev > -0.5, 1, 0))
    start = np.datetime64(today, "D") - np.timedelta64(1278, "D")
    tdate = start + rng.integers(0, 1278, n).astype("timedelta64[D]")
    cell_source = np.full(n, None, dtype=object)
    cell_source[arm == 0] = "bone_marrow"
    cell_source[arm == 1] = "adipose"
    adjunct = np.full(n, None, dtype=object)
    adjunct[cell & (rng.random(n) < 0.4)] = "prp"
    dose = np.where(cell, rng.choice([10.0, 50.0, 100.0], n), np.nan)
    patients = pd.DataFrame(
        {
            "patient_id": pid,
            "clinic_id": clinic.astype(np.int32),
            "age": age,
            "sex": _cat(female.astype(int), ["male", "female"]),
            "condition": _cat(cond, CONDITIONS),
            "arm": _cat(arm, ARMS),
            "cell_source": pd.Categorical(cell_source),
            "adjunct": pd.Categorical(adjunct),
            "dose": dose,
            "startback_group": _cat(sb, ["low", "medium", "high"]),
            "pain_duration_months": duration,
            "treatment_date": tdate,
        }
    )
    # outcome at plateau: improvement shrinks with severity (the confounder), effect for cell
    plateau = -8.0 - 4.0 * sev + true_effect * cell + rng.normal(0, 8, n)
    t_count = len(TIMEPOINTS)
    frac = np.array([0.0, 0.5, 0.75, 0.9, 1.0, 1.0])
    odi = np.clip(
        base_odi[:, None] + plateau[:, None] * frac[None, :] + rng.normal(0, 4, (n, t_count)),
        0,
        100,
    ).round()
    odi[:, 0] = base_odi
    nrs = np.clip(
        base_nrs[:, None]
        + (plateau / 8.0)[:, None] * frac[None, :]
        + rng.normal(0, 0.8, (n, t_count)),
        0,
        10,
    ).round()
    nrs[:, 0] = base_nrs
    p_done = np.array([0.97, 0.85, 0.82, 0.78, 0.72, 0.6])
    completed = rng.random((n, t_count)) < p_done[None, :]
    days = np.array([d for _, _, d in TIMEPOINTS])
    due = tdate[:, None] + days[None, :].astype("timedelta64[D]")
    not_yet = due > np.datetime64(today, "D")
    completed &= ~not_yet
    opioid = (rng.random((n, t_count)) < 0.3 - 0.03 * np.arange(t_count)[None, :]).astype(float)
    mme = opioid * rng.choice([15.0, 30.0, 60.0], (n, t_count))
    for grid in (odi, nrs, opioid, mme):
        grid[~completed] = np.nan
    timepoints = pd.DataFrame(
        {
            "patient_id": np.repeat(pid, t_count),
            "timepoint": _cat(np.tile(np.arange(t_count), n), [t for t, _, _ in TIMEPOINTS]),
            "months": np.tile([m for _, m, _ in TIMEPOINTS], n),
            "due_date": due.ravel(),
            "completed": completed.ravel(),
            "odi": odi.ravel(),
            "nrs_back": nrs.ravel(),
            "opioid_use": opioid.ravel(),
            "mme": mme.ravel(),
        }
    )
    # events: surgery (more for severe, less for cell), adverse events, repeat injections
    hazard = 0.08 * np.exp(0.4 * sev - 0.3 * cell)
    surg_days = rng.exponential(730 / hazard * 0.08 * 4, n).round()
    has_surg = (tdate + surg_days.astype("timedelta64[D]")) <= np.datetime64(today, "D")
    has_ae = rng.random(n) < np.where(cell, 0.15, 0.05)
    has_rep = cell & (rng.random(n) < 0.05)
    ae_days = rng.integers(0, 60, n)
    ev = [
        pd.DataFrame(
            {
                "patient_id": pid[has_surg],
                "kind": "subsequent_surgery",
                "date": tdate[has_surg] + surg_days[has_surg].astype("timedelta64[D]"),
                "ctcae_grade": np.nan,
                "serious": False,
                "relatedness": None,
            }
        ),
        pd.DataFrame(
            {
                "patient_id": pid[has_ae],
                "kind": "adverse_event",
                "date": tdate[has_ae] + ae_days[has_ae].astype("timedelta64[D]"),
                "ctcae_grade": rng.choice([1, 1, 1, 2, 2, 3], int(has_ae.sum())).astype(float),
                "serious": rng.random(int(has_ae.sum())) < 0.05,
                "relatedness": rng.choice(
                    ["procedure", "harvest", "product", "unrelated"], int(has_ae.sum())
                ),
            }
        ),
        pd.DataFrame(
            {
                "patient_id": pid[has_rep],
                "kind": "repeat_injection",
                "date": tdate[has_rep] + np.timedelta64(200, "D"),
                "ctcae_grade": np.nan,
                "serious": False,
                "relatedness": None,
            }
        ),
    ]
    events = pd.concat(ev, ignore_index=True)
    events["kind"] = events["kind"].astype("category")
    return AnalysisTables.of(patients, timepoints, events)
