"""Reference: the pandas implementation of return to work / activity as it was at f7aa781
(before the vectorised rewrite). tests/core/test_analytics_returns_equivalence.py checks that
the rewrite gives identical results. Not used by the application."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from vertebra.core.analytics.returns import (
    RETURN_LANDMARKS,
    RTA_SOURCE,
    RTW_DEFINITION,
    RTW_SOURCE,
    WORK_BANDS,
    ReturnAnalysis,
    ReturnCurve,
)
from vertebra.core.analytics.survival import KMPoint


def km_returns(
    arms: Sequence[str],
    months: np.ndarray,
    returned: np.ndarray,
    landmarks: Sequence[int] = RETURN_LANDMARKS,
) -> dict[str, ReturnCurve]:
    """Kaplan-Meier of time to return per arm (``months`` to event or censoring, ``returned``).

    Arms with no patient get no curve. A landmark beyond the longest follow-up of an arm has
    no estimate (survival None) and 0 at risk.
    """
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]

    arm_arr = np.asarray(arms, dtype=object)
    t_all = np.asarray(months, dtype=np.float64)
    e_all = np.asarray(returned, dtype=bool)
    curves: dict[str, ReturnCurve] = {}
    for arm in sorted(set(arm_arr.tolist())):
        sel = arm_arr == arm
        t, e = t_all[sel], e_all[sel]
        kmf = KaplanMeierFitter()
        kmf.fit(t, event_observed=e)
        timeline = kmf.survival_function_.index.to_numpy(dtype=np.float64)
        s = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=np.float64)
        ci = kmf.confidence_interval_survival_function_
        lo = ci.iloc[:, 0].to_numpy(dtype=np.float64)
        hi = ci.iloc[:, 1].to_numpy(dtype=np.float64)
        points = []
        for m in landmarks:
            at_risk = int((t >= m).sum())
            before = int(((t <= m) & e).sum())
            if t.max() < m:
                points.append(KMPoint(float(m), None, None, 0, before))
                continue
            i = int(np.searchsorted(timeline, m, side="right") - 1)
            bounds = (float(lo[i]), float(hi[i]))
            ok = bool(np.isfinite(bounds).all())
            points.append(KMPoint(float(m), float(s[i]), bounds if ok else None, at_risk, before))
        median = float(kmf.median_survival_time_)
        curves[str(arm)] = ReturnCurve(
            arm=str(arm),
            n=int(sel.sum()),
            events=int(e.sum()),
            landmarks=tuple(points),
            median_months=median if np.isfinite(median) else None,
        )
    return curves


def _answered(tp: pd.DataFrame, column: str, patient_ids: pd.Series) -> pd.DataFrame:
    """Completed rows of `patient_ids` with `column` answered: patient_id, months, value."""
    if column not in tp.columns:
        return pd.DataFrame({"patient_id": [], "months": [], "value": []})
    done = tp["completed"].astype(bool) & tp[column].notna()
    rows = tp.loc[done & tp["patient_id"].isin(patient_ids), ["patient_id", "months", column]]
    rows = rows.rename(columns={column: "value"})
    rows["months"] = rows["months"].astype(float)
    return rows.sort_values(["patient_id", "months"], kind="stable")


def _first_event(
    follow: pd.DataFrame, hit: pd.Series, ids: pd.Index
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patient of `ids`: (months, event, has_follow_up) from follow-up rows and hit flags."""
    last = follow.groupby("patient_id")["months"].max().reindex(ids)
    first_hit = follow.loc[hit.to_numpy()].groupby("patient_id")["months"].min().reindex(ids)
    event = first_hit.notna().to_numpy()
    months = np.where(event, first_hit.to_numpy(), last.to_numpy())
    return months.astype(np.float64), event, last.notna().to_numpy()


def _analysis(
    key: str,
    event: str,
    definition: str,
    source: str,
    arm_of: pd.Series,
    groups: pd.Series,
    months: np.ndarray,
    returned: np.ndarray,
    followed: np.ndarray,
    eligible: np.ndarray,
    arms: Sequence[str],
    eligible_group: str,
) -> ReturnAnalysis:
    """Assemble counts per arm and the curves of the eligible patients with follow-up.

    ``population[arm]``: one count per group of `groups` (they add up to the arm's patients)
    and ``no_follow_up`` (eligible, no answered follow-up: not in the curve).
    """
    population: dict[str, dict[str, int]] = {}
    for arm in arms:
        in_arm = (arm_of == arm).to_numpy()
        counts = {str(g): int((groups[in_arm] == g).sum()) for g in groups.cat.categories}
        counts["no_follow_up"] = int((eligible & in_arm & ~followed).sum())
        population[arm] = counts
    use = eligible & followed
    curves = km_returns(arm_of.to_numpy()[use], months[use], returned[use]) if use.any() else {}
    return ReturnAnalysis(key, event, definition, source, population, curves, eligible_group)


def work_bands(timepoints: pd.DataFrame) -> pd.Series:
    """The work-status band of every time point row (missing, NaN, where unanswered).

    From ``work_status_band`` when present, else from the answer code ``work_status`` (1-9)
    grouped as the instrument definition says (work_status.yaml ``groups``: data, not code).
    """
    if "work_status_band" in timepoints.columns:
        col = timepoints["work_status_band"]
        return col.astype(object).mask(col.isna())
    if "work_status" not in timepoints.columns:
        return pd.Series(None, index=timepoints.index, dtype=object)
    from vertebra.core.instruments import get_definition

    groups = get_definition("work_status").scoring.params["groups"]
    band_of = {float(code): band for band, codes in groups.items() for code in codes}
    codes = pd.to_numeric(timepoints["work_status"], errors="coerce").astype(float)
    return codes.map(band_of).astype(object)  # unanswered or unknown code: missing (NaN)


def return_to_work(
    patients: pd.DataFrame, timepoints: pd.DataFrame, arms: Sequence[str]
) -> ReturnAnalysis:
    """Time to return to work per arm (module docstring). `timepoints` needs
    ``work_status_band`` or ``work_status`` (see `work_bands`); without either the analysis is
    returned empty with ``available`` False."""
    ids = pd.Index(patients["patient_id"])
    arm_of = pd.Series(patients["arm"].astype(str).to_numpy(), index=ids)
    bands = work_bands(timepoints)
    rows = _answered(timepoints.assign(_band=bands), "_band", patients["patient_id"])
    rows["value"] = rows["value"].astype(str)  # a categorical band column becomes plain text
    base = rows[rows["months"] <= 0].groupby("patient_id")["value"].first().reindex(ids)
    cats = [*WORK_BANDS, "no_baseline_answer"]
    groups = pd.Series(
        pd.Categorical(base.fillna("no_baseline_answer").astype(str), categories=cats), index=ids
    )
    follow = rows[rows["months"] > 0]
    months, returned, followed = _first_event(follow, follow["value"].eq("working"), ids)
    eligible = (groups == "off_work_back_pain").to_numpy()
    out = _analysis(
        "return_to_work",
        "return to work (any hours or duties) after being off work because of the back",
        RTW_DEFINITION,
        RTW_SOURCE,
        arm_of,
        groups,
        months,
        returned,
        followed,
        eligible,
        arms,
        "off_work_back_pain",
    )
    if not {"work_status_band", "work_status"} & set(timepoints.columns):
        return replace(out, population={}, curves={}, available=False)
    return out


def return_to_activity(
    patients: pd.DataFrame, timepoints: pd.DataFrame, arms: Sequence[str], mcid: float
) -> ReturnAnalysis:
    """Time to a PSFS gain of at least `mcid` over baseline per arm (module docstring).
    `timepoints` needs ``psfs``; without it the analysis is empty with ``available`` False."""
    ids = pd.Index(patients["patient_id"])
    arm_of = pd.Series(patients["arm"].astype(str).to_numpy(), index=ids)
    rows = _answered(timepoints, "psfs", patients["patient_id"])
    rows["value"] = rows["value"].astype(float)
    base = rows[rows["months"] <= 0].groupby("patient_id")["value"].first().reindex(ids)
    cats = ["room_to_improve", "near_ceiling", "no_baseline_answer"]
    g = np.where(base.isna(), 2, np.where(base <= 10.0 - mcid + 1e-9, 0, 1))
    groups = pd.Series(pd.Categorical(np.array(cats, dtype=object)[g], categories=cats), index=ids)
    follow = rows[rows["months"] > 0]
    target = follow["patient_id"].map(base) + mcid - 1e-9
    months, returned, followed = _first_event(follow, follow["value"] >= target, ids)
    eligible = g == 0
    out = _analysis(
        "return_to_activity",
        f"PSFS mean improved by at least {mcid:g} points (MCID) over baseline",
        f"Among patients whose baseline PSFS mean is at most {10 - mcid:g} (room to improve by "
        f"the MCID of {mcid:g} points): first follow-up at which the mean rating of the "
        "patient's own named activities is at least baseline + MCID.",
        RTA_SOURCE,
        arm_of,
        groups,
        months,
        returned,
        followed,
        eligible,
        arms,
        "room_to_improve",
    )
    if "psfs" not in timepoints.columns:
        return replace(out, population={}, curves={}, available=False)
    return out
