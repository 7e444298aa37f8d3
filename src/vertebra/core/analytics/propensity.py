"""Propensity-score weighted comparison of two groups of arms (observational, ATE, IPTW).

Method (Austin & Stuart 2015, Stat Med 34:3661):

1. Propensity model: maximum-likelihood logistic regression (Newton-Raphson with one fixed
   effect per clinic; identical to statsmodels `Logit` with clinic indicators, checked by a
   test) of "in the treated group" on
   age, sex, baseline ODI, baseline back NRS, pain duration (continuous, standardised) and
   condition, STarT Back group and clinic (indicator-coded, first level as reference).
2. Positivity: patients with a missing covariate are excluded; so are patients in a category
   level (e.g. a clinic) where only one of the two groups occurs, because no comparison is
   possible there. Patients with a propensity score outside [trim, 1 - trim] are trimmed.
   All exclusions are counted in the result.
3. Stabilised ATE weights: w = P(T=1)/e(x) for treated, P(T=0)/(1-e(x)) for comparators.
   Optional truncation of weights at a quantile (off by default; stated in the result).
4. Balance: standardised mean differences before (unweighted) and after weighting (weighted
   means and variances); |SMD| < 0.1 is the conventional threshold. Kish effective sample size.
5. Outcomes (complete cases at the chosen time point): weighted least squares of the outcome
   on the group indicator, robust (HC1 sandwich) standard errors (closed form for this
   two-group design; equal to statsmodels `WLS(...).fit(cov_type="HC1")`, checked by a
   test). For a 0/1 responder outcome this is the weighted risk difference. The sandwich ignores estimation of the propensity
   score, which for ATE weights makes the interval conservative (Lunceford & Davidian 2004).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import Panel
from vertebra.core.analytics.descriptive import female_mask
from vertebra.core.analytics.outcomes import responder_flags
from vertebra.core.analytics.results import jsonable
from vertebra.core.analytics.stats import (
    Z95,
    kish_ess,
    logistic_fit_fe,
    scipy_stats,
    smd_columns,
    weighted_difference,
)

__all__ = [
    "OBSERVATIONAL_CAVEAT",
    "BalanceRow",
    "EffectEstimate",
    "PropensityComparison",
    "compare_arms",
]

OBSERVATIONAL_CAVEAT = (
    "Observational comparison, not a randomised trial. Propensity-score weighting balances "
    "only the measured covariates listed; unmeasured differences between the patients who "
    "chose each treatment (expectations, resources, clinic selection) can still bias the "
    "result. The only sham-controlled trial of intradiscal bone marrow concentrate found no "
    "difference from sham. Treat this as a hypothesis, not proof of benefit."
)

CONTINUOUS = ("age", "baseline_odi", "baseline_nrs_back", "pain_duration_months")
CATEGORICAL = ("condition", "startback_group", "clinic_id")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class BalanceRow:
    """SMD of one covariate (or one category level) before and after weighting."""

    covariate: str
    smd_before: float | None
    smd_after: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class EffectEstimate:
    """Difference treated - comparator in an outcome, with a 95 % CI (HC1 robust)."""

    outcome: str
    weighted: bool
    n_treated: int
    n_control: int
    mean_treated: float | None
    mean_control: float | None
    difference: float | None
    ci: tuple[float, float] | None
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(self.__dict__)
        return out


@dataclass(frozen=True)
class PropensityComparison:
    """Result of `compare_arms`; `observational_caveat` must be shown with any of it."""

    treated_arms: tuple[str, ...]
    control_arms: tuple[str, ...]
    timepoint: str
    covariates: tuple[str, ...]
    n_eligible: int
    n_excluded_missing_covariate: int
    n_excluded_no_overlap: int
    n_trimmed: int
    n_treated: int
    n_control: int
    trim: float
    truncation_quantile: float | None
    weights: str
    ess_treated: float
    ess_control: float
    max_abs_smd_before: float | None
    max_abs_smd_after: float | None
    balance: tuple[BalanceRow, ...]
    naive: tuple[EffectEstimate, ...]
    adjusted: tuple[EffectEstimate, ...]
    notes: tuple[str, ...]
    observational_caveat: str = OBSERVATIONAL_CAVEAT

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = jsonable(
            {k: getattr(self, k) for k in self.__dataclass_fields__}  # keep field order
        )
        return out


def _as_category(s: pd.Series) -> pd.Series:
    """Categorical view of a column (categoricals are reused as-is: no string conversion)."""
    return s if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category")


def _design(panel: Panel, rows: npt.NDArray[np.int64]) -> tuple[pd.DataFrame, list[str]]:
    """Covariate frame (one row per selected patient) and the list of categorical columns."""
    pts = panel.patients
    data = {
        "age": pts["age"].to_numpy(dtype=np.float64)[rows],
        "female": female_mask(pts["sex"])[rows].astype(np.float64),
        "baseline_odi": panel.values["odi"][rows, 0],
        "baseline_nrs_back": panel.values["nrs_back"][rows, 0],
        "pain_duration_months": pts["pain_duration_months"].to_numpy(dtype=np.float64)[rows],
    }
    frame = pd.DataFrame(data)
    for col in CATEGORICAL:
        cat = _as_category(pts[col])
        codes: Any = cat.cat.codes.to_numpy()[rows]
        frame[col] = pd.Categorical.from_codes(codes, categories=cat.cat.categories.astype(str))
    return frame, list(CATEGORICAL)


def _drop_unused(col: pd.Series) -> pd.Series:
    """`col.cat.remove_unused_categories()` by a bincount of the codes (no sort of n codes)."""
    codes = np.asarray(col.cat.codes.to_numpy(), dtype=np.int64)
    k = len(col.cat.categories)
    used = np.bincount(codes[codes >= 0], minlength=k) > 0
    if used.all():
        return col
    new_code = np.cumsum(used) - 1
    new_codes: Any = np.where(codes >= 0, new_code[np.maximum(codes, 0)], -1)
    cats = col.cat.categories[used]
    return pd.Series(pd.Categorical.from_codes(new_codes, categories=cats), index=col.index)


def _group_totals(treat: BoolArray, w: FloatArray | None) -> tuple[float, float]:
    """Sum of weights (or count) in the treated and in the comparator group."""
    ww = np.ones(len(treat)) if w is None else w
    return float(ww[treat].sum()), float(ww[~treat].sum())


def _level_smd(
    codes: npt.NDArray[np.int64],
    k: int,
    treat: BoolArray,
    w: FloatArray | None,
    totals: tuple[float, float] | None = None,
) -> FloatArray:
    """SMD of each category level's indicator (binary formula), weighted if `w` is given.

    One bincount keyed by (group, level) gives both groups' level sums (each adds the same
    weights in the same order as a bincount per group). `totals` = `_group_totals(treat, w)`,
    passed in when several categories share the weights.
    """
    ww = np.ones(len(codes)) if w is None else w
    tot_t, tot_c = totals if totals is not None else _group_totals(treat, w)
    sums = np.bincount(codes + k * treat, weights=ww, minlength=2 * k)
    p1, p0 = sums[k:] / tot_t, sums[:k] / tot_c
    pooled = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled > 0, (p1 - p0) / pooled, 0.0)


def _effect(outcome: str, y: FloatArray, t: BoolArray, w: FloatArray | None) -> EffectEstimate:
    """Weighted mean difference with HC1 robust 95 % CI (= WLS of y on [1, T], HC1)."""
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 < 2 or n0 < 2:
        return EffectEstimate(outcome, w is not None, n1, n0, None, None, None, None, None)
    m1, m0, diff, se = weighted_difference(y, t, w)
    p = float(2.0 * scipy_stats().norm.sf(abs(diff / se))) if se > 0 else None
    return EffectEstimate(
        outcome=outcome,
        weighted=w is not None,
        n_treated=n1,
        n_control=n0,
        mean_treated=m1,
        mean_control=m0,
        difference=diff,
        ci=(diff - Z95 * se, diff + Z95 * se),
        p_value=p,
    )


def compare_arms(
    panel: Panel,
    treated_arms: Sequence[str],
    control_arms: Sequence[str],
    timepoint: str = "month_12",
    trim: float = 0.01,
    truncation_quantile: float | None = None,
) -> PropensityComparison:
    """IPTW (ATE, stabilised) comparison of `treated_arms` vs `control_arms` (see module doc).

    Outcomes at `timepoint`: ODI change (completers with baseline), ODI MCID responder among
    completers, and ODI MCID responder counting missing as non-response (denominator: patients
    due). Raises ValueError if either group is empty in the cohort or the time point is unknown.
    """
    if timepoint not in panel.tp_ids:
        raise ValueError(f"unknown time point {timepoint!r}; known: {', '.join(panel.tp_ids)}")
    arm_names = np.asarray(panel.arms, dtype=object)
    is_t = np.isin(arm_names, list(treated_arms))[panel.arm_codes]
    is_c = np.isin(arm_names, list(control_arms))[panel.arm_codes]
    if not is_t.any() or not is_c.any():
        raise ValueError(
            "propensity comparison needs patients in both groups; treated arms "
            f"{list(treated_arms)} and comparator arms {list(control_arms)}"
        )
    rows = np.flatnonzero(is_t | is_c)
    treat = is_t[rows]
    n_eligible = len(rows)
    frame, cats = _design(panel, rows)
    notes: list[str] = []

    # 1. missing covariates
    ok = frame[["age", "female", *CONTINUOUS[1:]]].notna().all(axis=1).to_numpy()
    for c in cats:
        ok &= frame[c].notna().to_numpy()
    n_missing = int((~ok).sum())
    # 2. positivity within category levels
    no_overlap = np.zeros(len(rows), dtype=bool)
    for c in cats:
        codes = frame[c].cat.codes.to_numpy()
        k = len(frame[c].cat.categories)
        nt = np.bincount(codes[ok & treat & (codes >= 0)], minlength=k)
        nc = np.bincount(codes[ok & ~treat & (codes >= 0)], minlength=k)
        bad = (nt == 0) | (nc == 0)
        if bad.any():
            lost = bad[np.maximum(codes, 0)] & (codes >= 0) & ok
            if lost.any():
                levels = [str(x) for x in np.asarray(frame[c].cat.categories)[bad]]
                notes.append(
                    f"{c} level(s) {', '.join(levels)}: only one group present; "
                    f"{int(lost.sum())} patient(s) excluded (no overlap)"
                )
            no_overlap |= lost
    keep = np.flatnonzero(ok & ~no_overlap)
    if treat[keep].all() or not treat[keep].any():
        # Nothing left to model (a small, filtered cohort): say why instead of fitting nothing.
        raise ValueError(
            "no patients of both groups with every covariate and a shared clinic, condition "
            f"and STarT Back group ({n_missing} excluded for a missing covariate, "
            f"{int((ok & no_overlap).sum())} for no overlap); no adjusted estimate"
        )
    frame = frame.take(keep).reset_index(drop=True)
    rows, treat = rows[keep], treat[keep]
    for c in cats:
        frame[c] = _drop_unused(frame[c])

    # 3. design: standardised continuous + indicators (first level = reference) for
    # condition and STarT Back; clinic enters as one fixed effect per clinic (block Newton,
    # stats.logistic_fit_fe), so hundreds of clinics cost no more than a few.
    cont = frame[["age", *CONTINUOUS[1:]]].to_numpy(dtype=np.float64)
    sd = cont.std(axis=0)
    cont_z = (cont - cont.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    dense_cats = [c for c in cats if c != "clinic_id"]
    dummies = pd.get_dummies(frame[dense_cats], drop_first=True, dtype=np.float64)
    x = np.column_stack([cont_z, frame["female"].to_numpy(), dummies.to_numpy()])
    x = x[:, x.std(axis=0) > 0]  # constant columns make the Hessian singular
    clinic_codes = frame["clinic_id"].cat.codes.to_numpy().astype(np.int64)
    beta, gamma, converged = logistic_fit_fe(x, clinic_codes, treat.astype(np.float64))
    ps = 1.0 / (1.0 + np.exp(-np.clip(x @ beta + gamma[clinic_codes], -30.0, 30.0)))
    if not converged:
        notes.append("propensity model did not converge (possible separation); check overlap")

    # 4. trimming, stabilised weights, truncation
    inside = np.flatnonzero((ps >= trim) & (ps <= 1.0 - trim))
    n_trimmed = len(ps) - len(inside)
    frame, rows, treat, ps = (
        frame.take(inside).reset_index(drop=True),
        rows[inside],
        treat[inside],
        ps[inside],
    )
    if treat.all() or not treat.any():
        # Exclusions and trimming can empty a group in a small, filtered cohort.
        raise ValueError(
            "no overlap between the groups after excluding missing covariates and trimming "
            f"(propensity outside {trim:g}..{1 - trim:g}); no adjusted estimate"
        )
    p_t = float(treat.mean())
    w = np.where(treat, p_t / ps, (1.0 - p_t) / (1.0 - ps))
    if truncation_quantile is not None:
        w = np.minimum(w, float(np.quantile(w, truncation_quantile)))

    # 5. balance: every continuous covariate, every condition / STarT Back level, and the
    # clinics summarised (max |SMD| over levels) - one row per clinic would swamp the table
    # with hundreds of clinics. Level SMDs come from bincounts, never from an n x levels
    # indicator matrix (500 clinics x 10^6 patients would be 4 GB).
    names = ["age", "female", *CONTINUOUS[1:]]
    bx = frame[names].to_numpy(dtype=np.float64)
    binary = [n == "female" for n in names]
    before = smd_columns(bx, treat, None, binary)
    after = smd_columns(bx, treat, w, binary)
    balance = [
        BalanceRow(str(n), float(b), float(a)) for n, b, a in zip(names, before, after, strict=True)
    ]
    totals_unweighted, totals_weighted = _group_totals(treat, None), _group_totals(treat, w)
    for c in cats:
        lvl_codes = np.asarray(frame[c].cat.codes.to_numpy(), dtype=np.int64)
        levels = [str(x) for x in frame[c].cat.categories]
        sb = _level_smd(lvl_codes, len(levels), treat, None, totals_unweighted)
        sa = _level_smd(lvl_codes, len(levels), treat, w, totals_weighted)
        if c == "clinic_id":
            balance.append(
                BalanceRow(
                    f"clinic_id (max |SMD| over {len(levels)} clinics)",
                    float(np.nanmax(np.abs(sb))) if len(sb) else None,
                    float(np.nanmax(np.abs(sa))) if len(sa) else None,
                )
            )
        else:
            balance += [
                BalanceRow(f"{c}={lv}", float(b), float(a))
                for lv, b, a in zip(levels, sb, sa, strict=True)
            ]

    def _maxabs(vals: list[float | None]) -> float | None:
        fin = [abs(v) for v in vals if v is not None and np.isfinite(v)]
        return max(fin) if fin else None

    # 6. outcomes at the time point (complete cases / missing as non-response)
    t_idx = panel.tp_ids.index(timepoint)
    base = panel.values["odi"][rows, 0]
    fu = panel.values["odi"][rows, t_idx]
    pair = ~np.isnan(base) & ~np.isnan(fu)
    mcid, _ = responder_flags("odi", base, fu)
    due = panel.expected[rows, t_idx]
    outcomes = (
        (f"odi_change_{timepoint}", fu - base, pair),
        (f"odi_responder_completers_{timepoint}", mcid.astype(np.float64), pair),
        (f"odi_responder_all_{timepoint}", mcid.astype(np.float64), due),
    )
    naive = tuple(_effect(name, y[m], treat[m], None) for name, y, m in outcomes)
    adjusted = tuple(_effect(name, y[m], treat[m], w[m]) for name, y, m in outcomes)
    notes.append(
        "Outcome analyses use complete cases at the time point (missing-as-non-response for "
        "the '_all' responder outcome); weights are not re-estimated for the complete cases."
    )
    return PropensityComparison(
        treated_arms=tuple(treated_arms),
        control_arms=tuple(control_arms),
        timepoint=timepoint,
        covariates=("age", "sex", *CONTINUOUS[1:], *CATEGORICAL),
        n_eligible=n_eligible,
        n_excluded_missing_covariate=n_missing,
        n_excluded_no_overlap=int((ok & no_overlap).sum()),
        n_trimmed=n_trimmed,
        n_treated=int(treat.sum()),
        n_control=int((~treat).sum()),
        trim=trim,
        truncation_quantile=truncation_quantile,
        weights="ATE, stabilised: P(T)/e(x) for treated, P(not T)/(1-e(x)) for comparators",
        ess_treated=kish_ess(w[treat]),
        ess_control=kish_ess(w[~treat]),
        max_abs_smd_before=_maxabs([b.smd_before for b in balance]),
        max_abs_smd_after=_maxabs([b.smd_after for b in balance]),
        balance=tuple(balance),
        naive=naive,
        adjusted=adjusted,
        notes=tuple(notes),
    )
