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
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import str_categorical
from vertebra.core.analytics.results import jsonable
from vertebra.core.analytics.survival import CI_METHOD, KMPoint
from vertebra.core.disclosure import is_small, suppressed

__all__ = [
    "RETURN_LANDMARKS",
    "PatientReturns",
    "ReturnAnalysis",
    "ReturnCurve",
    "activity_returns",
    "km_returns",
    "patient_rows",
    "return_to_activity",
    "return_to_work",
    "returns_analysis",
    "returns_from_counts",
    "work_bands",
    "work_returns",
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
    arms: Any,
    months: Any,
    returned: Any,
    landmarks: tuple[int, ...] = RETURN_LANDMARKS,
    weights: Any = None,
) -> dict[str, ReturnCurve]:
    """Kaplan-Meier of time to return per arm (``months`` to event or censoring, ``returned``).

    Arms with no patient get no curve; curves come in the order of the arm names as strings.
    A landmark beyond the longest follow-up of an arm has no estimate (survival None) and 0 at
    risk. ``arms`` may be a `pandas.Categorical` (cheap: no string comparison per patient).
    ``weights`` (optional, integer counts) lets one row stand for that many patients with the
    same (arm, months, returned): KM depends on the data only through those counts, so the
    estimates equal the per-patient fit up to floating-point summation order (the out-of-core
    engine passes collapsed counts).
    """
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]

    cat = (
        arms if isinstance(arms, pd.Categorical) else pd.Categorical(np.asarray(arms, dtype=object))
    )
    codes = np.asarray(cat.codes, dtype=np.int64)
    t_all = np.asarray(months, dtype=np.float64)
    e_all = np.asarray(returned, dtype=bool)
    w_all = None if weights is None else np.asarray(weights, dtype=np.float64)
    names = [str(c) for c in cat.categories]
    present = np.bincount(codes[codes >= 0], minlength=len(names)) > 0
    curves: dict[str, ReturnCurve] = {}
    for k in sorted(np.flatnonzero(present), key=lambda i: names[i]):
        sel = codes == k
        t, e = t_all[sel], e_all[sel]
        w = np.ones(len(t)) if w_all is None else w_all[sel]
        kmf = KaplanMeierFitter()
        if w_all is None:
            kmf.fit(t, event_observed=e)
        else:
            kmf.fit(t, event_observed=e, weights=w)
        timeline = kmf.survival_function_.index.to_numpy(dtype=np.float64)
        s = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=np.float64)
        ci = kmf.confidence_interval_survival_function_
        lo = ci.iloc[:, 0].to_numpy(dtype=np.float64)
        hi = ci.iloc[:, 1].to_numpy(dtype=np.float64)
        points = []
        for m in landmarks:
            at_risk = int(w[t >= m].sum())
            before = int(w[(t <= m) & e].sum())
            if t.max() < m:
                points.append(KMPoint(float(m), None, None, 0, before))
                continue
            i = int(np.searchsorted(timeline, m, side="right") - 1)
            bounds = (float(lo[i]), float(hi[i]))
            ok = bool(np.isfinite(bounds).all())
            points.append(KMPoint(float(m), float(s[i]), bounds if ok else None, at_risk, before))
        median = float(kmf.median_survival_time_)
        curves[names[k]] = ReturnCurve(
            arm=names[k],
            n=int(w.sum()),
            events=int(w[e].sum()),
            landmarks=tuple(points),
            median_months=median if np.isfinite(median) else None,
        )
    return curves


@dataclass(frozen=True)
class PatientReturns:
    """Per patient (rows of the patients table): what a return analysis needs.

    * group: index into `group_names` of the patient's baseline group (-1: none of them);
    * months / returned: months to the first return, else to the last answered follow-up;
    * followed: the patient has an answered follow-up (else months is NaN).
    """

    group: npt.NDArray[np.int64]
    group_names: tuple[str, ...]
    months: npt.NDArray[np.float64]
    returned: npt.NDArray[np.bool_]
    followed: npt.NDArray[np.bool_]


def patient_rows(patients: pd.DataFrame, timepoints: pd.DataFrame) -> npt.NDArray[np.intp]:
    """Row of each timepoints row's patient in `patients` (-1: not in the cohort)."""
    return np.asarray(
        pd.Index(patients["patient_id"]).get_indexer(timepoints["patient_id"]), dtype=np.intp
    )


def _answered_rows(
    timepoints: pd.DataFrame, answered: npt.NDArray[np.bool_], rows: npt.NDArray[np.intp]
) -> npt.NDArray[np.intp]:
    """Indices of the completed timepoints rows of cohort patients with an answer.

    ``completed`` is read as ``astype(bool)`` (as the first, pandas version of this module
    did), so the selection is the same row for row.
    """
    done = np.asarray(timepoints["completed"].astype(bool).to_numpy(), dtype=bool)
    return np.flatnonzero(done & answered & (rows >= 0))


def _first_per_patient(
    n: int, pid: npt.NDArray[np.intp], months: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(patients, positions): per patient with rows, the position of its row with the fewest
    months, ties broken by table order (= a stable sort by patient then months, first row)."""
    order = np.lexsort((months, pid))  # lexsort is stable: ties keep table order
    ps = pid[order]
    first = np.ones(len(ps), dtype=bool)
    first[1:] = ps[1:] != ps[:-1]
    return ps[first], order[first]


def _follow_up(
    n: int,
    pid: npt.NDArray[np.intp],
    months: npt.NDArray[np.float64],
    hit: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per patient from its follow-up rows (months > 0): (months, returned, followed).

    months = first month with a hit, else the last answered month (NaN without follow-up).
    """
    follow = months > 0
    last = np.full(n, -np.inf)
    np.maximum.at(last, pid[follow], months[follow])
    first_hit = np.full(n, np.inf)
    h = follow & hit
    np.minimum.at(first_hit, pid[h], months[h])
    followed = last > -np.inf
    returned = first_hit < np.inf
    out = np.where(returned, first_hit, np.where(followed, last, np.nan))
    return out, returned, followed


def work_returns(
    patients: pd.DataFrame, timepoints: pd.DataFrame, rows: npt.NDArray[np.intp] | None = None
) -> PatientReturns:
    """Per patient: baseline work band (`WORK_BANDS` + no_baseline_answer) and time to work."""
    n = len(patients)
    rows = patient_rows(patients, timepoints) if rows is None else rows
    codes, names = _band_codes(timepoints)
    idx = _answered_rows(timepoints, codes >= 0, rows)
    pid, m, c = rows[idx], timepoints["months"].to_numpy(dtype=np.float64)[idx], codes[idx]
    cats = (*WORK_BANDS, "no_baseline_answer")
    # band name -> group index (-1: a band outside the categories, counted in no group)
    to_group = np.array([cats.index(b) if b in cats else -1 for b in names], dtype=np.int64)
    group = np.full(n, len(cats) - 1, dtype=np.int64)
    base = m <= 0
    who, pos = _first_per_patient(n, pid[base], m[base])
    group[who] = to_group[c[base][pos]] if len(names) else group[who]
    working = np.array([b == "working" for b in names], dtype=bool)
    hit = working[c] if len(names) else np.zeros(len(c), dtype=bool)
    months, returned, followed = _follow_up(n, pid, m, hit)
    return PatientReturns(group, cats, months, returned, followed)


def activity_returns(
    patients: pd.DataFrame,
    timepoints: pd.DataFrame,
    mcid: float,
    rows: npt.NDArray[np.intp] | None = None,
) -> PatientReturns:
    """Per patient: baseline PSFS group and time to a PSFS gain of at least `mcid`."""
    n = len(patients)
    cats = ("room_to_improve", "near_ceiling", "no_baseline_answer")
    rows = patient_rows(patients, timepoints) if rows is None else rows
    if "psfs" in timepoints.columns:
        v_all = pd.to_numeric(timepoints["psfs"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    else:
        v_all = np.full(len(timepoints), np.nan)
    idx = _answered_rows(timepoints, ~np.isnan(v_all), rows)
    pid, m, v = rows[idx], timepoints["months"].to_numpy(dtype=np.float64)[idx], v_all[idx]
    base_val = np.full(n, np.nan)
    base = m <= 0
    who, pos = _first_per_patient(n, pid[base], m[base])
    base_val[who] = v[base][pos]
    group = np.where(np.isnan(base_val), 2, np.where(base_val <= 10.0 - mcid + 1e-9, 0, 1))
    with np.errstate(invalid="ignore"):
        hit = v >= base_val[pid] + mcid - 1e-9
    months, returned, followed = _follow_up(n, pid, m, hit)
    return PatientReturns(np.asarray(group, dtype=np.int64), cats, months, returned, followed)


def _band_codes(timepoints: pd.DataFrame) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Work-status band of every row as (codes, band names); code -1 where unanswered.

    Same bands as `work_bands`, without a Python string per row (categoricals keep codes).
    """
    if "work_status_band" in timepoints.columns:
        fcodes, uniques = pd.factorize(timepoints["work_status_band"])
        return np.asarray(fcodes, dtype=np.int64), [str(u) for u in uniques]
    if "work_status" not in timepoints.columns:
        return np.full(len(timepoints), -1, dtype=np.int64), []
    from vertebra.core.instruments import get_definition

    groups = get_definition("work_status").scoring.params["groups"]
    band_of = {float(code): band for band, codes in groups.items() for code in codes}
    names = sorted(set(band_of.values()))
    code_of = np.array([names.index(band_of[k]) for k in sorted(band_of)], dtype=np.int64)
    keys = np.array(sorted(band_of), dtype=np.float64)
    raw = pd.to_numeric(timepoints["work_status"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    pos = np.clip(np.searchsorted(keys, raw), 0, max(len(keys) - 1, 0))
    known = (keys[pos] == raw) if len(keys) else np.zeros(len(raw), dtype=bool)
    return np.where(known, code_of[pos], -1).astype(np.int64), names


def returns_analysis(
    key: str,
    event: str,
    definition: str,
    source: str,
    arm: pd.Categorical,
    per: PatientReturns,
    arms: Sequence[str],
    eligible_group: str,
) -> ReturnAnalysis:
    """Counts per arm and the curves of the eligible patients with follow-up.

    ``population[arm]``: one count per group of `per.group_names` (they add up to the arm's
    patients) and ``no_follow_up`` (eligible, no answered follow-up: not in the curve).
    """
    names = [str(c) for c in arm.categories]
    codes = np.asarray(arm.codes, dtype=np.int64)
    g = len(per.group_names)
    k = len(names)
    ok = (codes >= 0) & (per.group >= 0)
    counts = np.bincount(codes[ok] * g + per.group[ok], minlength=k * g).reshape(k, g)
    eligible = per.group == per.group_names.index(eligible_group)
    nofu = np.bincount(codes[(codes >= 0) & eligible & ~per.followed], minlength=k)
    population: dict[str, dict[str, int]] = {}
    for a in arms:
        j = names.index(a) if a in names else -1
        row = {name: int(counts[j, i]) if j >= 0 else 0 for i, name in enumerate(per.group_names)}
        row["no_follow_up"] = int(nofu[j]) if j >= 0 else 0
        population[a] = row
    use = np.flatnonzero(eligible & per.followed)
    use_codes: Any = codes[use]  # pandas-stubs wants a Sequence[int]
    curves = (
        km_returns(
            pd.Categorical.from_codes(use_codes, categories=arm.categories),
            per.months[use],
            per.returned[use],
        )
        if len(use)
        else {}
    )
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
    patients: pd.DataFrame,
    timepoints: pd.DataFrame,
    arms: Sequence[str],
    rows: npt.NDArray[np.intp] | None = None,
) -> ReturnAnalysis:
    """Time to return to work per arm (module docstring). `timepoints` needs
    ``work_status_band`` or ``work_status`` (see `work_bands`); without either the analysis is
    returned empty with ``available`` False. `rows` (optional): `patient_rows` of the tables,
    when the caller has it already."""
    out = returns_analysis(
        "return_to_work",
        "return to work (any hours or duties) after being off work because of the back",
        RTW_DEFINITION,
        RTW_SOURCE,
        str_categorical(patients["arm"]),
        work_returns(patients, timepoints, rows),
        arms,
        "off_work_back_pain",
    )
    if not {"work_status_band", "work_status"} & set(timepoints.columns):
        return replace(out, population={}, curves={}, available=False)
    return out


def return_to_activity(
    patients: pd.DataFrame,
    timepoints: pd.DataFrame,
    arms: Sequence[str],
    mcid: float,
    rows: npt.NDArray[np.intp] | None = None,
) -> ReturnAnalysis:
    """Time to a PSFS gain of at least `mcid` over baseline per arm (module docstring).
    `timepoints` needs ``psfs``; without it the analysis is empty with ``available`` False."""
    out = returns_analysis(
        "return_to_activity",
        f"PSFS mean improved by at least {mcid:g} points (MCID) over baseline",
        activity_definition(mcid),
        RTA_SOURCE,
        str_categorical(patients["arm"]),
        activity_returns(patients, timepoints, mcid, rows),
        arms,
        "room_to_improve",
    )
    if "psfs" not in timepoints.columns:
        return replace(out, population={}, curves={}, available=False)
    return out


def activity_definition(mcid: float) -> str:
    """The return-to-activity definition shown with the curves."""
    return (
        f"Among patients whose baseline PSFS mean is at most {10 - mcid:g} (room to improve by "
        f"the MCID of {mcid:g} points): first follow-up at which the mean rating of the "
        "patient's own named activities is at least baseline + MCID."
    )


def returns_from_counts(
    analysis: str,
    mcid: float,
    arms: Sequence[str],
    population: dict[str, dict[str, int]],
    curve_arm: Sequence[str],
    curve_months: Any,
    curve_returned: Any,
    curve_count: Any,
    available: bool = True,
) -> ReturnAnalysis:
    """A return analysis from counts (the out-of-core engine's input).

    ``analysis``: "return_to_work" or "return_to_activity" (``mcid`` used by the latter);
    ``population[arm][group]``: patients per baseline group and ``no_follow_up``;
    ``curve_*``: one row per (arm, months, returned) of the eligible patients with follow-up
    and how many patients it stands for. Gives what `return_to_work`/`return_to_activity`
    give on the same patients (KM from counts: see `km_returns`).
    """
    if analysis == "return_to_work":
        meta = (
            "return to work (any hours or duties) after being off work because of the back",
            RTW_DEFINITION,
            RTW_SOURCE,
            "off_work_back_pain",
        )
    else:
        meta = (
            f"PSFS mean improved by at least {mcid:g} points (MCID) over baseline",
            activity_definition(mcid),
            RTA_SOURCE,
            "room_to_improve",
        )
    if not available:
        return ReturnAnalysis(analysis, *meta[:3], {}, {}, meta[3], available=False)
    curves = (
        km_returns(
            pd.Categorical(np.asarray(curve_arm, dtype=object)),
            curve_months,
            curve_returned,
            weights=curve_count,
        )
        if len(curve_arm)
        else {}
    )
    pop = {a: dict(population[a]) for a in arms}
    return ReturnAnalysis(analysis, *meta[:3], pop, curves, meta[3])
