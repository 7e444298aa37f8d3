"""Clinic benchmarking: case-mix-adjusted responder rates on a funnel plot.

Indirect standardisation (e.g. Spiegelhalter 2005, Stat Med 24:1185): a logistic model of
"responder" on case mix (age, sex, baseline ODI, baseline back NRS, pain duration, condition,
STarT Back group and treatment arm; NOT clinic) fitted to all completers gives each patient an
expected probability. Treatment arm is in the model by default, so a clinic is compared with
what its own mix of treatments gives elsewhere, like with like: without it a clinic that offers
mostly a treatment with lower responder rates is flagged for its treatment mix, not for how well
it delivers care (issue 18; ``include_arm=False`` reproduces the old model). For a clinic, O = observed responders, E = sum of expected probabilities,
adjusted rate = (O / E) x overall rate. The funnel's control limits are exact binomial limits
around the overall rate for each clinic size n (95 % and 99.8 %), so small clinics are not
flagged for noise. Completeness at the time point is reported per clinic, because a clinic
that follows up only its successes will look good on completers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics.cohort import Panel, str_categorical
from vertebra.core.analytics.descriptive import female_mask
from vertebra.core.analytics.outcomes import responder_flags
from vertebra.core.analytics.results import Rate, jsonable
from vertebra.core.analytics.schema import MEASURES
from vertebra.core.analytics.stats import (
    funnel_limits,
    logistic_fit,
    logistic_predict,
    wilson_ci,
)

__all__ = ["ClinicBenchmark", "ClinicRow", "clinic_benchmark"]


@dataclass(frozen=True)
class ClinicRow:
    """One clinic: raw and adjusted responder rate, O/E, completeness, funnel position."""

    clinic_id: str
    n: int
    observed: int
    expected: float
    o_e: float | None
    raw_rate: Rate
    adjusted_rate: float | None
    limits_95: tuple[float, float]
    limits_998: tuple[float, float]
    position: str
    completeness: Rate

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class ClinicBenchmark:
    """Funnel-plot data for every clinic plus the limit curves for plotting."""

    timepoint: str
    measure: str
    overall_rate: float | None
    n_total: int
    n_excluded_missing_covariate: int
    case_mix: tuple[str, ...]
    includes_arm: bool
    clinics: tuple[ClinicRow, ...]
    funnel_n: tuple[float, ...]
    funnel_95: tuple[tuple[float, float], ...]
    funnel_998: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(
            {
                "timepoint": self.timepoint,
                "measure": self.measure,
                "outcome": "MCID responder among completers with baseline",
                "method": "indirect standardisation (logistic case-mix model"
                + (
                    " including treatment arm, so each clinic is compared with what its own "
                    "mix of treatments gives elsewhere"
                    if self.includes_arm
                    else "; treatment arm NOT in the model, so a clinic's treatment mix "
                    "counts against it"
                )
                + "); exact binomial funnel limits around the overall rate",
                "case_mix_includes_arm": self.includes_arm,
                "overall_rate": self.overall_rate,
                "n_total": self.n_total,
                "n_excluded_missing_covariate": self.n_excluded_missing_covariate,
                "case_mix": self.case_mix,
                "clinics": self.clinics,
                "funnel": {
                    "n": self.funnel_n,
                    "limits_95": self.funnel_95,
                    "limits_998": self.funnel_998,
                },
            }
        )
        return out


def _position(rate: float | None, l95: tuple[float, float], l998: tuple[float, float]) -> str:
    if rate is None:
        return "no data"
    if rate > l998[1]:
        return "above 99.8% limit"
    if rate > l95[1]:
        return "above 95% limit"
    if rate < l998[0]:
        return "below 99.8% limit"
    if rate < l95[0]:
        return "below 95% limit"
    return "within limits"


def clinic_benchmark(
    panel: Panel, timepoint: str = "month_12", measure: str = "odi", include_arm: bool = True
) -> ClinicBenchmark:
    """Case-mix-adjusted responder rate per clinic at `timepoint` (see module doc).

    ``include_arm`` puts treatment arm in the case-mix model (the default: like with like);
    the result says which (`includes_arm`, and the method text).
    """
    t = panel.tp_ids.index(timepoint)
    grid = panel.values[measure]
    base, fu = grid[:, 0], grid[:, t]
    pair = ~np.isnan(base) & ~np.isnan(fu)
    mcid, _ = responder_flags(MEASURES[measure], base, fu)
    pts = panel.patients
    clinic = str_categorical(pts["clinic_id"])
    k = len(clinic.categories)
    ccodes = np.asarray(clinic.codes, dtype=np.int64)

    cont = np.column_stack(
        [
            pts["age"].to_numpy(dtype=np.float64),
            female_mask(pts["sex"]).astype(np.float64),
            base,
            panel.values["nrs_back"][:, 0],
            pts["pain_duration_months"].to_numpy(dtype=np.float64),
        ]
    )
    ok = pair & ~np.isnan(cont).any(axis=1)
    for col in ("condition", "startback_group"):
        ok &= pts[col].notna().to_numpy()
    cat_codes: list[Any] = []
    if include_arm:
        arm_codes: Any = panel.arm_codes  # pandas-stubs wants a Sequence[int]
        cat_codes.append(pd.Categorical.from_codes(arm_codes, pd.Index(panel.arms)))
    for col in ("condition", "startback_group"):
        cat = (
            pts[col]
            if isinstance(pts[col].dtype, pd.CategoricalDtype)
            else pts[col].astype("category")
        )
        codes: Any = cat.cat.codes.to_numpy()
        cat_codes.append(pd.Categorical.from_codes(codes, cat.cat.categories))
    n_missing = int((pair & ~ok).sum())
    y = mcid[ok].astype(np.float64)
    expected_p = np.full(int(ok.sum()), np.nan)
    if ok.sum() > 0:
        c = cont[ok]
        sd = c.std(axis=0)
        cz = (c - c.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        cats = pd.get_dummies(
            pd.DataFrame({f"c{i}": c[ok] for i, c in enumerate(cat_codes)}),
            drop_first=True,
            dtype=np.float64,
        ).to_numpy()
        x = np.column_stack([np.ones(len(y)), cz, cats])
        x = x[:, np.r_[True, x[:, 1:].std(axis=0) > 0]]
        if 0 < y.sum() < len(y):
            beta, _, _ = logistic_fit(x, y)
            expected_p = logistic_predict(x, beta)
        else:
            expected_p = np.full(len(y), y.mean())  # everyone (or no one) responded
    cc = ccodes[ok]
    n = np.bincount(cc, minlength=k).astype(np.float64)
    obs = np.bincount(cc, weights=y, minlength=k)
    exp = np.bincount(cc, weights=expected_p, minlength=k)
    overall = float(y.mean()) if len(y) else None
    lo, hi = wilson_ci(obs, n)
    due = np.bincount(ccodes, weights=panel.expected[:, t], minlength=k)
    done = np.bincount(ccodes, weights=panel.completed[:, t], minlength=k)
    clo, chi = wilson_ci(done, due)
    p0 = overall if overall is not None else 0.0
    l95 = funnel_limits(p0, n, 0.95)
    l998 = funnel_limits(p0, n, 0.998)
    rows = []
    for j, cid in enumerate(clinic.categories):
        oe = float(obs[j] / exp[j]) if exp[j] > 0 else None
        adj = float(min(oe * p0, 1.0)) if oe is not None else None
        lim95 = (float(l95[0][j]), float(l95[1][j]))
        lim998 = (float(l998[0][j]), float(l998[1][j]))
        rows.append(
            ClinicRow(
                clinic_id=str(cid),
                n=int(n[j]),
                observed=int(obs[j]),
                expected=float(exp[j]),
                o_e=oe,
                raw_rate=Rate.of(int(obs[j]), int(n[j]), lo[j], hi[j]),
                adjusted_rate=adj,
                limits_95=lim95,
                limits_998=lim998,
                position=_position(adj if n[j] > 0 else None, lim95, lim998),
                completeness=Rate.of(int(done[j]), int(due[j]), clo[j], chi[j]),
            )
        )
    top = max(float(n.max()) if k else 1.0, 10.0)
    grid_n = np.unique(np.round(np.geomspace(5, top * 1.1, 60)))
    g95 = funnel_limits(p0, grid_n, 0.95)
    g998 = funnel_limits(p0, grid_n, 0.998)
    return ClinicBenchmark(
        timepoint=timepoint,
        measure=measure,
        overall_rate=overall,
        n_total=len(y),
        n_excluded_missing_covariate=n_missing,
        case_mix=(
            "age",
            "sex",
            f"baseline_{measure}",
            "baseline_nrs_back",
            "pain_duration_months",
            "condition",
            "startback_group",
            *(("arm",) if include_arm else ()),
        ),
        includes_arm=include_arm,
        clinics=tuple(rows),
        funnel_n=tuple(grid_n.tolist()),
        funnel_95=tuple(zip(g95[0].tolist(), g95[1].tolist(), strict=False)),
        funnel_998=tuple(zip(g998[0].tolist(), g998[1].tolist(), strict=False)),
    )
