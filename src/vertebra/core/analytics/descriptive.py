"""Baseline characteristics and adverse-event rates per arm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import Panel, cutoff_days, event_days, take_rows
from vertebra.core.analytics.results import Mean, Rate, jsonable
from vertebra.core.analytics.stats import poisson_ci, t_ci, wilson_ci

__all__ = [
    "AdverseEventSummary",
    "BaselineSummary",
    "EventCount",
    "adverse_events",
    "baseline_table",
    "female_mask",
]

BoolArray = npt.NDArray[np.bool_]


def female_mask(sex: pd.Series) -> BoolArray:
    """True where sex is recorded as female ("female", "F", "f", "Female", ...)."""
    if isinstance(sex.dtype, pd.CategoricalDtype):
        cats = np.asarray(sex.cat.categories.astype(str).str.lower().str.startswith("f"))
        codes = sex.cat.codes.to_numpy()
        return np.asarray((codes >= 0) & cats[np.maximum(codes, 0)], dtype=bool)
    return np.asarray(sex.astype(str).str.lower().str.startswith("f").to_numpy(), dtype=bool)


@dataclass(frozen=True)
class BaselineSummary:
    """Baseline table column for one arm. Means carry their n; mixes are Rates over the arm n."""

    arm: str
    n: int
    age: Mean
    female: Rate
    odi: Mean
    nrs_back: Mean
    nrs_leg: Mean | None
    pain_duration_months: Mean
    condition: dict[str, Rate]
    startback_group: dict[str, Rate]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(
            {
                "arm": self.arm,
                "n": self.n,
                "age": self.age,
                "female": self.female,
                "odi": self.odi,
                "nrs_back": self.nrs_back,
                "nrs_leg": self.nrs_leg,
                "pain_duration_months": self.pain_duration_months,
                "condition": self.condition,
                "startback_group": self.startback_group,
            }
        )
        return out


def _mean_by(codes: npt.NDArray[np.int64], x: npt.NDArray[np.float64], g: int) -> list[Mean]:
    ok = ~np.isnan(x)
    c, v = codes[ok], x[ok]
    n = np.bincount(c, minlength=g).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(c, weights=v, minlength=g) / n
        sd = np.sqrt(np.bincount(c, weights=(v - mean[c]) ** 2, minlength=g) / (n - 1))
    sd = np.where(n >= 2, sd, np.nan)
    lo, hi = t_ci(mean, sd, n)
    return [Mean.of(int(n[a]), mean[a], sd[a], lo[a], hi[a]) for a in range(g)]


def _mix(codes: npt.NDArray[np.int64], col: pd.Series, g: int) -> list[dict[str, Rate]]:
    """Counts of each category per arm as Rates over the arm's n (missing -> "unknown")."""
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    names = [str(c) for c in cat.cat.categories]
    cc = cat.cat.codes.to_numpy().astype(np.int64)
    if (cc < 0).any():
        names.append("unknown")
        cc = np.where(cc < 0, len(names) - 1, cc)
    k = len(names)
    counts = np.bincount(codes * k + cc, minlength=g * k).reshape(g, k).astype(float)
    totals = counts.sum(axis=1, keepdims=True).repeat(k, axis=1)
    lo, hi = wilson_ci(counts, totals)
    return [
        {
            name: Rate.of(int(counts[a, j]), int(totals[a, j]), lo[a, j], hi[a, j])
            for j, name in enumerate(names)
        }
        for a in range(g)
    ]


def baseline_table(panel: Panel) -> dict[str, BaselineSummary]:
    """Baseline characteristics per arm (scores from the baseline time point)."""
    g, codes, pts = len(panel.arms), panel.arm_codes, panel.patients
    n = np.bincount(codes, minlength=g)
    fem = np.bincount(codes, weights=female_mask(pts["sex"]), minlength=g)
    flo, fhi = wilson_ci(fem, n)
    age = _mean_by(codes, pts["age"].to_numpy(dtype=np.float64), g)
    dur = _mean_by(codes, pts["pain_duration_months"].to_numpy(dtype=np.float64), g)
    odi = _mean_by(codes, panel.values["odi"][:, 0], g)
    nrs = _mean_by(codes, panel.values["nrs_back"][:, 0], g)
    leg = _mean_by(codes, panel.values["nrs_leg"][:, 0], g) if "nrs_leg" in panel.values else None
    cond = _mix(codes, pts["condition"], g)
    sb = _mix(codes, pts["startback_group"], g)
    return {
        arm: BaselineSummary(
            arm=arm,
            n=int(n[a]),
            age=age[a],
            female=Rate.of(int(fem[a]), int(n[a]), flo[a], fhi[a]),
            odi=odi[a],
            nrs_back=nrs[a],
            nrs_leg=leg[a] if leg else None,
            pain_duration_months=dur[a],
            condition=cond[a],
            startback_group=sb[a],
        )
        for a, arm in enumerate(panel.arms)
    }


@dataclass(frozen=True)
class EventCount:
    """Events and patients with >= 1 event, each per 100 patients (exact Poisson CI for events)."""

    events: int
    events_per_100: float | None
    events_per_100_ci: tuple[float, float] | None
    patients: int
    patients_per_100: float | None
    patients_ci: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class AdverseEventSummary:
    """Adverse events in one arm; every rate is per 100 patients of `n_patients`."""

    arm: str
    n_patients: int
    any: EventCount
    serious: EventCount
    by_grade: dict[str, EventCount]
    by_relatedness: dict[str, EventCount]
    repeat_injections: EventCount

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(
            {
                "arm": self.arm,
                "n_patients": self.n_patients,
                "denominator": "patients in the arm (per 100 patients)",
                "any": self.any,
                "serious": self.serious,
                "by_grade": self.by_grade,
                "by_relatedness": self.by_relatedness,
                "repeat_injections": self.repeat_injections,
            }
        )
        return out


def _count(
    patient_arm: npt.NDArray[np.int64],
    patient_of_event: npt.NDArray[np.int64],
    mask: BoolArray,
    n: npt.NDArray[np.int64],
    g: int,
) -> list[EventCount]:
    rows = patient_of_event[mask]
    ev = np.bincount(patient_arm[rows], minlength=g)
    # patients with >= 1 such event, each counted once (a flag per patient, not np.unique)
    has = np.zeros(len(patient_arm), dtype=bool)
    has[rows] = True
    pat = np.bincount(patient_arm[has], minlength=g)
    elo, ehi = poisson_ci(ev)
    plo, phi = wilson_ci(pat, n)
    out = []
    for a in range(g):
        if n[a] == 0:
            out.append(EventCount(int(ev[a]), None, None, int(pat[a]), None, None))
            continue
        k = 100.0 / n[a]
        out.append(
            EventCount(
                events=int(ev[a]),
                events_per_100=float(ev[a] * k),
                events_per_100_ci=(float(elo[a] * k), float(ehi[a] * k)),
                patients=int(pat[a]),
                patients_per_100=float(pat[a] * k),
                patients_ci=(float(plo[a] * 100), float(phi[a] * 100)),
            )
        )
    return out


def adverse_events(
    panel: Panel, events: pd.DataFrame, as_of: date
) -> dict[str, AdverseEventSummary]:
    """Adverse events (kind "adverse_event") and repeat injections, on or before `as_of`.

    Grades come from `ctcae_grade` (missing -> "unknown"), seriousness from `serious`,
    relatedness from `relatedness` (missing -> "unknown"). Events of patients outside the
    cohort are ignored.
    """
    g = len(panel.arms)
    n = np.bincount(panel.arm_codes, minlength=g)
    row = pd.Index(panel.patients["patient_id"]).get_indexer(events["patient_id"])
    # "On or before as_of" as days after treatment, so that de-identified tables (no dates)
    # select the same events; an event without a date is never counted.
    days = event_days(events, panel.patients, row)
    keep = (row >= 0) & (days <= take_rows(cutoff_days(panel.patients, as_of), row, -np.inf))
    ev = events.loc[keep]
    rows = row[keep].astype(np.int64)
    arm = panel.arm_codes
    kind = ev["kind"].to_numpy(dtype=object)  # no per-element str(): categoricals stay cheap
    ae = kind == "adverse_event"
    rep = kind == "repeat_injection"
    if "serious" in ev.columns:
        serious = ev["serious"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    else:
        serious = np.zeros(len(ev), dtype=bool)
    grade = (
        pd.to_numeric(ev["ctcae_grade"], errors="coerce").to_numpy()
        if "ctcae_grade" in ev.columns
        else np.full(len(ev), np.nan)
    )
    related = (
        ev["relatedness"].astype(object).where(ev["relatedness"].notna(), "unknown").to_numpy()
        if "relatedness" in ev.columns
        else np.full(len(ev), "unknown", dtype=object)
    )
    any_ae = _count(arm, rows, ae, n, g)
    ser = _count(arm, rows, ae & serious, n, g)
    reps = _count(arm, rows, rep, n, g)
    grades: dict[str, list[EventCount]] = {}
    for k in (1, 2, 3, 4, 5):
        grades[str(k)] = _count(arm, rows, ae & (grade == k), n, g)
    if (ae & np.isnan(grade)).any():
        grades["unknown"] = _count(arm, rows, ae & np.isnan(grade), n, g)
    rel_levels = sorted(set(related[ae].tolist())) if ae.any() else []
    rels = {r: _count(arm, rows, ae & (related == r), n, g) for r in rel_levels}
    return {
        a_name: AdverseEventSummary(
            arm=a_name,
            n_patients=int(n[a]),
            any=any_ae[a],
            serious=ser[a],
            by_grade={k: v[a] for k, v in grades.items()},
            by_relatedness={k: v[a] for k, v in rels.items()},
            repeat_injections=reps[a],
        )
        for a, a_name in enumerate(panel.arms)
    }
