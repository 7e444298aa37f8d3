"""Kaplan-Meier surgery-free survival per arm, with 95 % CI, numbers at risk and a log-rank test.

Estimation is lifelines' `KaplanMeierFitter` (Greenwood variance; 95 % CI on the log(-log)
scale, Kalbfleisch-Prentice, which lifelines calls "exponential Greenwood": see
`CI_METHOD`, printed with the report) and `multivariate_logrank_test`. To stay fast at 10^6 patients the data are
first collapsed to (arm, day, event) counts and passed as integer `weights`; KM and log-rank
depend on the data only through those counts, so this is exact (a test compares it with the
uncollapsed fit).

Time origin: treatment date (day 0 of a de-identified table). Event: first subsequent surgery
on or before `as_of` (a de-identified table's data cut-off). That event means two different
things: after a non-surgical treatment it is a *conversion* to surgery; after surgery it is a
*re-operation*. Each curve names its event, and the log-rank test compares like with like: only
the non-surgical arms (time to conversion); surgical arms (`SURGICAL_ARMS`) keep their
re-operation curve but are left out of the test, and the result says so.
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
    "CI_METHOD",
    "DAYS_PER_MONTH",
    "LANDMARK_MONTHS",
    "SURGICAL_ARMS",
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

#: How the 95 % CI of S(t) is computed: exactly lifelines' KaplanMeierFitter (a test recomputes
#: it by hand). Kalbfleisch & Prentice 1980 (The Statistical Analysis of Failure Time Data).
CI_METHOD = (
    "95% CI on the log(-log) scale with Greenwood's variance (Kalbfleisch-Prentice; "
    "lifelines' 'exponential Greenwood')"
)
#: Arms whose treatment is itself surgery (the registry's arm "surgery"): a later surgery is a
#: re-operation, not a conversion, so they are not in the log-rank test of conversion.
SURGICAL_ARMS: frozenset[str] = frozenset({"surgery"})
CONVERSION = "conversion to surgery (first surgery after a non-surgical treatment)"
REOPERATION = "re-operation (first surgery after the index surgery)"


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
    event: str
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
            "event": self.event,
            "landmarks": [p.to_dict() for p in self.landmarks],
            "monthly": jsonable(curve),
        }


@dataclass(frozen=True)
class LogRank:
    """Log-rank test of equal time to conversion across the non-surgical arms.

    ``excluded`` names the arms with patients left out because their event is a re-operation.
    """

    statistic: float | None
    df: int
    p_value: float | None
    arms: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    event: str = CONVERSION

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
            "event_definition": {"non_surgical_arms": CONVERSION, "surgical_arms": REOPERATION},
            "ci_method": CI_METHOD,
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
            event=REOPERATION if arm in SURGICAL_ARMS else CONVERSION,
            landmarks=tuple(points),
            months=tuple((timeline / DAYS_PER_MONTH).tolist()),
            survival=tuple(s.tolist()),
            lower=tuple(np.nan_to_num(lo, nan=1.0).tolist()),
            upper=tuple(np.nan_to_num(hi, nan=1.0).tolist()),
        )
    return SurvivalResult(
        censoring=censoring, curves=curves, logrank=_conversion_logrank(panel.arms, agg)
    )


def _conversion_logrank(arms: list[str], agg: pd.DataFrame) -> LogRank | None:
    """Log-rank test of time to conversion across the non-surgical arms with patients.

    ``agg`` holds (arm code, t, e, w) counts. None with fewer than two non-surgical arms.
    """
    from lifelines.statistics import multivariate_logrank_test  # type: ignore[import-untyped]

    present = sorted(int(a) for a in agg["arm"].unique())
    compared = [a for a in present if arms[a] not in SURGICAL_ARMS]
    if len(compared) < 2:
        return None
    d = agg[agg["arm"].isin(compared)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns about weights; they are counts
        res = multivariate_logrank_test(
            d["t"].to_numpy(), d["arm"].to_numpy(), d["e"].to_numpy(), weights=d["w"].to_numpy()
        )
    return LogRank(
        statistic=float(res.test_statistic),
        df=len(compared) - 1,
        p_value=float(res.p_value),
        arms=tuple(arms[a] for a in compared),
        excluded=tuple(arms[a] for a in present if a not in compared),
    )
