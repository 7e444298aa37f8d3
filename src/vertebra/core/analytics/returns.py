"""Time to return to work and to usual activities: Kaplan-Meier per arm, with denominators.

Two analyses, both on the follow-up answers of the analysis tables (docs/algorithms/
return-to-activity.md states the definitions and their sources):

* **Return to work** (`return_to_work`). Population: patients off work because of their back at
  baseline (work-status band ``off_work_back_pain``). Patients working at baseline are counted
  but are not at risk of "returning"; those not in paid work for other reasons (unemployed,
  retired, student, home or caring: band ``not_in_paid_work``) or "other" are excluded from the
  denominator, as return-to-work studies of sick-listed workers do. Event: the first follow-up
  at which the patient reports working (band ``working``: full time, part time, or reduced hours
  or lighter duties).
* **Return to activity** (`return_to_activity`). Population: patients with a baseline PSFS mean
  of at most 10 - MCID (room to improve by the MCID). Event: the first follow-up at which the
  PSFS mean has risen by at least the MCID (`psfs.yaml`, ``mcid_points``) above baseline.

Time is the nominal months of the follow-up at which the return is first reported (answers come
at scheduled visits, so the true time lies in the interval before it: the estimate is a
discrete-time Kaplan-Meier, stated in the output). Censoring: the last follow-up at which the
item was answered; a patient with no answered follow-up is counted (``no_follow_up``) but not in
the curve. Estimation: lifelines' KaplanMeierFitter, as for surgery-free survival (`CI_METHOD`).
Pure: no Django, no database, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics.results import jsonable
from vertebra.core.analytics.survival import CI_METHOD, KMPoint
from vertebra.core.disclosure import is_small, suppressed

__all__ = [
    "RETURN_LANDMARKS",
    "ReturnAnalysis",
    "ReturnCurve",
    "km_returns",
    "return_to_activity",
    "return_to_work",
]

#: Months at which the share returned is reported (the follow-up schedule's time points).
RETURN_LANDMARKS: tuple[int, ...] = (3, 6, 12, 24)
#: Work-status bands (work_status.yaml groups).
WORK_BANDS: tuple[str, ...] = ("working", "off_work_back_pain", "not_in_paid_work", "other")
TIME_NOTE = (
    "Time = months of the scheduled follow-up at which the return was first reported "
    "(discrete-time Kaplan-Meier); censored at the last follow-up with an answer."
)
RTW_DEFINITION = (
    "Among patients off work because of their back at baseline: first follow-up reporting "
    "work (full time, part time, or reduced hours or lighter duties). Patients working at "
    "baseline are counted but not at risk; those not in paid work for other reasons (retired, "
    "student, home or caring, unemployed) or 'other' are excluded from the denominator."
)
RTW_SOURCE = (
    "Return-to-work cohorts of workers sick-listed with low back pain (population: off work at "
    "baseline; e.g. Steenstra et al., Occup Environ Med 2005;62:851-60 (U)); event 'any return "
    "to work' as in Fritzell et al., Spine 2001;26:2521-32 (V for the trial, U for the "
    "definition). Vertebra convention, docs/algorithms/return-to-activity.md."
)
RTA_SOURCE = (
    "PSFS (Stratford et al., Physiotherapy Canada 1995;47:258-63); MCID of the mean score "
    "from psfs.yaml (U). Vertebra convention, docs/algorithms/return-to-activity.md."
)


@dataclass(frozen=True)
class ReturnCurve:
    """One arm: patients in the curve, returns observed, landmarks, median months to return.

    Landmark ``survival`` is the share *not yet returned* (S(t)); ``returned`` = 1 - S(t).
    """

    arm: str
    n: int
    events: int
    landmarks: tuple[KMPoint, ...]
    median_months: float | None

    def to_dict(self) -> dict[str, Any]:
        """{arm, n, events, median_months, landmarks: [{months, survival, returned, ci, ...}]}."""
        points = []
        for p in self.landmarks:
            d = p.to_dict()
            d["returned"] = None if p.survival is None else 1.0 - p.survival
            d["returned_ci"] = None if p.ci is None else [1.0 - p.ci[1], 1.0 - p.ci[0]]
            points.append(d)
        return jsonable(
            {
                "arm": self.arm,
                "n": self.n,
                "events": self.events,
                "median_months": self.median_months,
                "landmarks": points,
            }
        )


@dataclass(frozen=True)
class ReturnAnalysis:
    """One return analysis: definition, population counts per arm, and curves per arm.

    ``population[arm]`` maps a group name (e.g. ``eligible``, ``working_at_baseline``) to its
    count, so every curve is read beside its denominator and who was left out.
    """

    key: str
    event: str
    definition: str
    source: str
    population: dict[str, dict[str, int]]
    curves: dict[str, ReturnCurve]
    eligible_group: str = ""
    available: bool = True

    def to_dict(self, min_cell: int | None = None) -> dict[str, Any]:
        """JSON form; counts are ``{"n": count}`` objects so small-cell suppression sees them.

        With `min_cell`, counts that would give a small one back by subtraction are suppressed
        too (`protected_counts`); the small ones themselves are left to `suppress_report`.
        """
        population: dict[str, Any] = {}
        for arm, groups in self.population.items():
            hidden = protected_counts(groups, self.eligible_group, min_cell)
            population[arm] = {
                group: {"n": suppressed(), "suppressed": True} if group in hidden else {"n": n}
                for group, n in groups.items()
            }
        return {
            "event": self.event,
            "definition": self.definition,
            "source": self.source,
            "time": TIME_NOTE,
            "ci_method": CI_METHOD,
            "available": self.available,
            "eligible_group": self.eligible_group,
            "population": population,
            "curves": {arm: c.to_dict() for arm, c in self.curves.items()},
        }


def protected_counts(groups: dict[str, int], eligible_group: str, min_cell: int | None) -> set[str]:
    """Counts to suppress beside the small ones so that none can be recomputed (complementary).

    The groups (all but ``no_follow_up``) add up to the arm's patients, which is shown: when
    one of them is small (1 to min_cell - 1), the next smallest non-zero group goes too. The
    curve's n is shown and equals the eligible group minus ``no_follow_up``: when
    ``no_follow_up`` is small, the eligible group's count goes too.
    """
    if min_cell is None:
        return set()
    hidden: set[str] = set()
    if is_small(groups.get("no_follow_up", 0), min_cell):
        hidden.add(eligible_group)
    parts = {g: n for g, n in groups.items() if g != "no_follow_up"}
    small = {g for g, n in parts.items() if is_small(n, min_cell)} | (hidden & parts.keys())
    if len(small) == 1:
        rest = sorted((n, g) for g, n in parts.items() if n > 0 and g not in small)
        if rest:
            hidden.add(rest[0][1])
    return hidden


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
