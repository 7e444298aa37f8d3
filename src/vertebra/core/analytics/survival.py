"""Kaplan-Meier surgery-free survival per arm, with 95 % CI, numbers at risk and a log-rank test.

Estimation is lifelines' `KaplanMeierFitter` (Greenwood variance, log(-log) "exponential
Greenwood" CI) and `multivariate_logrank_test`. To stay fast at 10^6 patients the data are
first collapsed to (arm, day, event) counts and passed as integer `weights`; KM and log-rank
depend on the data only through those counts, so this is exact (a test compares it with the
uncollapsed fit).

Time origin: treatment date (day 0 of a de-identified table). Event: first subsequent surgery
on or before `as_of` (a de-identified table's data cut-off).
Censoring (stated in the output): "as_of" (default) censors everyone else at the data cut-off,
assuming surgeries are captured for all treated patients until then; "last_contact" censors at
the last completed follow-up instead (a sensitivity analysis for incomplete event capture).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import (
    SURGERY_KINDS,
    Panel,
    cutoff_days,
    event_days,
    take_rows,
)
from vertebra.core.analytics.results import jsonable
from vertebra.core.analytics.schema import SchemaError, time_base

__all__ = [
    "DAYS_PER_MONTH",
    "LANDMARK_MONTHS",
    "KMPoint",
    "LogRank",
    "SurvivalCurve",
    "SurvivalResult",
    "can_censor_at_cutoff",
    "surgery_free_survival",
]

#: Mean Gregorian month; landmarks at m months are evaluated at day m * 30.4375.
DAYS_PER_MONTH = 365.25 / 12
LANDMARK_MONTHS: tuple[int, ...] = (6, 12, 24)
Censoring = Literal["as_of", "last_contact"]


@dataclass(frozen=True)
class KMPoint:
    """Survival at a landmark: S(t), its 95 % CI, and the number still at risk at t."""

    months: float
    survival: float | None
    ci: tuple[float, float] | None
    at_risk: int
    events_before: int

    def to_dict(self) -> dict[str, Any]:
        """{months, survival, ci, at_risk, events_before}."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class SurvivalCurve:
    """One arm's curve: landmarks, totals, and the step function (months, S, lower, upper)."""

    arm: str
    n: int
    events: int
    landmarks: tuple[KMPoint, ...]
    months: tuple[float, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Landmarks plus a monthly grid of the curve (compact enough for JSON dashboards)."""
        grid = np.arange(0, int(max(self.months, default=0.0)) + 1)
        idx = np.searchsorted(np.asarray(self.months), grid, side="right") - 1
        s, lo, hi = (np.asarray(a) for a in (self.survival, self.lower, self.upper))
        curve = [
            {"months": int(m), "survival": float(s[i]), "ci": [float(lo[i]), float(hi[i])]}
            for m, i in zip(grid, idx, strict=False)
            if i >= 0
        ]
        return {
            "arm": self.arm,
            "n": self.n,
            "events": self.events,
            "landmarks": [p.to_dict() for p in self.landmarks],
            "monthly": jsonable(curve),
        }


@dataclass(frozen=True)
class LogRank:
    """Log-rank test of equal survival across arms."""

    statistic: float | None
    df: int
    p_value: float | None
    arms: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class SurvivalResult:
    """Curves per arm plus the log-rank test (None with fewer than two arms)."""

    censoring: str
    curves: dict[str, SurvivalCurve]
    logrank: LogRank | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "endpoint": "time from treatment to first subsequent surgery",
            "censoring": self.censoring,
            "curves": {k: v.to_dict() for k, v in self.curves.items()},
            "logrank": self.logrank.to_dict() if self.logrank else None,
        }


def can_censor_at_cutoff(patients: pd.DataFrame) -> bool:
    """Whether ``patients`` allows censoring at the data cut-off: calendar tables always do,
    de-identified ones only with ``followup_days`` (the research export drops it)."""
    return time_base(patients) == "calendar" or "followup_days" in patients.columns


def _durations(
    panel: Panel, events: pd.DataFrame, as_of: date, censoring: Censoring
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per patient: days to first surgery (event) or to censoring.

    Days are counted from each patient's treatment, so calendar and de-identified
    (days_from_treatment) tables give the same durations. Censoring at ``as_of`` needs each
    patient's days to the cut-off; a released research table has none (SchemaError).
    """
    n = panel.n
    cutoff = cutoff_days(panel.patients, as_of)
    if censoring == "as_of":
        if not np.isfinite(cutoff).all():
            raise SchemaError(
                "patients: no followup_days (days to the data cut-off), needed to censor "
                "surgery-free survival at the cut-off; censor at the last contact instead"
            )
        cens = cutoff.copy()
    else:
        assert panel.contact_days is not None
        cens = panel.contact_days.copy()
    cens = np.maximum(cens, 0.0)
    kind = events["kind"].to_numpy(dtype=object)
    row = pd.Index(panel.patients["patient_id"]).get_indexer(events["patient_id"])
    days = event_days(events, panel.patients, row)
    sel = (row >= 0) & np.isin(kind, SURGERY_KINDS) & (days <= take_rows(cutoff, row, -np.inf))
    first = np.full(n, np.inf)
    if sel.any():
        ok = days[sel] >= 0  # a surgery before treatment is history, not an outcome
        s = pd.Series(days[sel][ok]).groupby(row[sel][ok]).min()
        first[s.index.to_numpy()] = s.to_numpy()
    event = np.isfinite(first)
    return np.where(event, first, cens), event


def surgery_free_survival(
    panel: Panel,
    events: pd.DataFrame,
    as_of: date,
    censoring: Censoring = "as_of",
    landmarks: tuple[int, ...] = LANDMARK_MONTHS,
) -> SurvivalResult:
    """KM surgery-free survival per arm and a log-rank test across the arms with patients."""
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]
    from lifelines.statistics import multivariate_logrank_test  # type: ignore[import-untyped]

    dur, ev = _durations(panel, events, as_of, censoring)
    agg = (
        pd.DataFrame({"arm": panel.arm_codes, "t": dur, "e": ev})
        .groupby(["arm", "t", "e"], sort=True)
        .size()
        .reset_index(name="w")
    )
    curves: dict[str, SurvivalCurve] = {}
    for a, arm in enumerate(panel.arms):
        d = agg[agg["arm"] == a]
        if d.empty:
            continue
        t = d["t"].to_numpy()
        e = d["e"].to_numpy()
        w = d["w"].to_numpy()
        kmf = KaplanMeierFitter()
        kmf.fit(t, event_observed=e, weights=w)
        timeline = kmf.survival_function_.index.to_numpy(dtype=np.float64)
        s = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=np.float64)
        ci = kmf.confidence_interval_survival_function_
        lo = ci.iloc[:, 0].to_numpy(dtype=np.float64)
        hi = ci.iloc[:, 1].to_numpy(dtype=np.float64)
        points = []
        for m in landmarks:
            day = m * DAYS_PER_MONTH
            i = int(np.searchsorted(timeline, day, side="right") - 1)
            at_risk = int(w[t >= day].sum())
            events_before = int(w[(t <= day) & e].sum())
            if t.max() < day:  # no one followed that long: S(t) is not estimable
                points.append(KMPoint(float(m), None, None, 0, events_before))
                continue
            bounds = (float(lo[i]), float(hi[i]))
            points.append(
                KMPoint(
                    float(m),
                    float(s[i]),
                    bounds if np.isfinite(bounds).all() else None,
                    at_risk,
                    events_before,
                )
            )
        curves[arm] = SurvivalCurve(
            arm=arm,
            n=int(w.sum()),
            events=int(w[e].sum()),
            landmarks=tuple(points),
            months=tuple((timeline / DAYS_PER_MONTH).tolist()),
            survival=tuple(s.tolist()),
            lower=tuple(np.nan_to_num(lo, nan=1.0).tolist()),
            upper=tuple(np.nan_to_num(hi, nan=1.0).tolist()),
        )
    logrank = None
    present = sorted(int(a) for a in agg["arm"].unique())
    if len(present) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines warns about weights; they are counts
            res = multivariate_logrank_test(
                agg["t"].to_numpy(),
                agg["arm"].to_numpy(),
                agg["e"].to_numpy(),
                weights=agg["w"].to_numpy(),
            )
        logrank = LogRank(
            statistic=float(res.test_statistic),
            df=len(present) - 1,
            p_value=float(res.p_value),
            arms=tuple(panel.arms[a] for a in present),
        )
    return SurvivalResult(censoring=censoring, curves=curves, logrank=logrank)
