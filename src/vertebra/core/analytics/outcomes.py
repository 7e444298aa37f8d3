"""Per arm x time point outcomes: completeness, scores, change from baseline, responders, opioids.

Definitions (see docs/algorithms/analytics.md):

* n_expected: patients whose time point was due by `as_of` (or who answered it anyway).
* n_completed: of those, questionnaires completed; n_missing = n_expected - n_completed.
* mean/median of a score: over completed questionnaires with that score.
* mean change: follow-up minus baseline over completers with both scores ("pairs"), with a
  paired-t 95 % CI.
* responder rate "completers": responders / pairs. "all": responders / n_expected, i.e. every
  patient who was due but has no pair counts as a non-responder (the worst case that honest
  reporting shows beside the completers' figure).
* responder rule: from vertebra/data/responders.yaml via `vertebra.core.responders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import Panel
from vertebra.core.analytics.results import Mean, Rate, jsonable
from vertebra.core.analytics.schema import MEASURES
from vertebra.core.analytics.stats import t_ci, wilson_ci
from vertebra.core.instruments import get_definition
from vertebra.core.responders import NoResponderRuleError, responder_rule

__all__ = [
    "MeasureSummary",
    "OpioidSummary",
    "TimepointOutcome",
    "arm_outcomes",
    "responder_flags",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# Same tolerance as vertebra.core.responders: differences of rounded scores (45.6 - 35.6 =
# 9.999999999999996) must count as exactly 10 points.
_EPS = 1e-9


def responder_flags(
    instrument_id: str, baseline: FloatArray, follow_up: FloatArray
) -> tuple[BoolArray, BoolArray | None]:
    """Vectorised `vertebra.core.responders.classify_change`: (mcid_met, substantial).

    NaN in either score gives False. `substantial` is None when the instrument has no
    substantial rule (PROMIS T-scores). Raises NoResponderRuleError for instruments without
    a rule. Tests check equality with the scalar classifier on random inputs.
    """
    rule = responder_rule(instrument_id)
    higher_is_better = get_definition(instrument_id).direction == "higher_is_better"
    change = follow_up - baseline
    improvement = change if higher_is_better else -change
    valid = ~np.isnan(change)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(baseline != 0, improvement / np.abs(baseline) * 100.0, np.nan)
    mcid = valid & (improvement >= rule.points - _EPS)
    if rule.percent is not None:
        mcid |= valid & (pct >= rule.percent - _EPS)
    substantial: BoolArray | None = None
    if rule.substantial_percent is not None:
        substantial = valid & (pct >= rule.substantial_percent - _EPS)  # NaN pct -> False
    return mcid, substantial


@dataclass(frozen=True)
class MeasureSummary:
    """One score at one time point for one arm. Change/responder fields None at baseline."""

    measure: str
    instrument_id: str
    n_scored: int
    mean: float | None
    median: float | None
    sd: float | None
    change: Mean | None
    responder_rate_completers: Rate | None
    responder_rate_all: Rate | None
    substantial_rate_completers: Rate | None
    substantial_rate_all: Rate | None

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON: mean_change, mean_change_ci, n_change and the four rates."""
        ch = self.change
        return {
            "instrument_id": self.instrument_id,
            "n_scored": self.n_scored,
            "mean": self.mean,
            "median": self.median,
            "sd": self.sd,
            "n_change": ch.n if ch else 0,
            "mean_change": ch.mean if ch else None,
            "mean_change_sd": ch.sd if ch else None,
            "mean_change_ci": list(ch.ci) if ch and ch.ci else None,
            "responder_rate_completers": jsonable(self.responder_rate_completers),
            "responder_rate_all": jsonable(self.responder_rate_all),
            "substantial_rate_completers": jsonable(self.substantial_rate_completers),
            "substantial_rate_all": jsonable(self.substantial_rate_all),
        }


@dataclass(frozen=True)
class OpioidSummary:
    """Share on opioids (among those who answered) and MME/day change from baseline."""

    on_opioids: Rate
    mme_mean: Mean
    mme_change: Mean | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "on_opioids": self.on_opioids.to_dict(),
            "mme_mean": self.mme_mean.to_dict(),
            "mme_change": self.mme_change.to_dict() if self.mme_change else None,
        }


@dataclass(frozen=True)
class TimepointOutcome:
    """Everything for one arm at one time point."""

    timepoint: str
    months: float
    n_expected: int
    n_completed: int
    n_missing: int
    completeness: Rate
    measures: dict[str, MeasureSummary]
    opioids: OpioidSummary | None

    def to_dict(self) -> dict[str, Any]:
        """Measures are top-level keys (`odi`, `nrs_back`, ...) beside the counts."""
        out: dict[str, Any] = {
            "timepoint": self.timepoint,
            "months": self.months,
            "n_expected": self.n_expected,
            "n_completed": self.n_completed,
            "n_missing": self.n_missing,
            "completeness": self.completeness.to_dict(),
        }
        for name, m in self.measures.items():
            out[name] = m.to_dict()
        out["opioids"] = self.opioids.to_dict() if self.opioids else None
        return out


def _group_mean_sd(
    codes: IntArray, x: FloatArray, groups: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-group n, mean and SD (ddof 1) by two-pass bincount (stable for large n)."""
    n = np.bincount(codes, minlength=groups).astype(np.float64)
    s = np.bincount(codes, weights=x, minlength=groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        ss = np.bincount(codes, weights=(x - mean[codes]) ** 2, minlength=groups)
        sd = np.sqrt(ss / (n - 1.0))
    return n, mean, np.where(n >= 2, sd, np.nan)


def _rates(num: FloatArray, den: FloatArray) -> list[Rate]:
    lo, hi = wilson_ci(num, den)
    return [Rate.of(int(a), int(b), float(c), float(d)) for a, b, c, d in zip(num, den, lo, hi)]


def _means(n: FloatArray, mean: FloatArray, sd: FloatArray) -> list[Mean]:
    lo, hi = t_ci(mean, sd, n)
    return [
        Mean.of(int(a), float(b), float(c), float(d), float(e))
        for a, b, c, d, e in zip(n, mean, sd, lo, hi)
    ]


def _medians(codes: IntArray, grid: FloatArray, groups: int) -> FloatArray:
    """Per group x time point median of a score grid, in one groupby over the whole grid."""
    t_count = grid.shape[1]
    flat = grid.ravel()
    ok = ~np.isnan(flat)
    key = (codes[:, None] * t_count + np.arange(t_count)[None, :]).ravel()[ok]
    med = pd.Series(flat[ok]).groupby(key).median()
    out = np.full(groups * t_count, np.nan)
    out[med.index.to_numpy()] = med.to_numpy()
    return out.reshape(groups, t_count)


def arm_outcomes(panel: Panel) -> dict[str, list[TimepointOutcome]]:
    """Outcomes per arm (keys = panel.arms) and time point (ordered by months)."""
    g = len(panel.arms)
    codes = panel.arm_codes
    per_tp: list[dict[str, Any]] = []
    medians = {m: _medians(codes, grid, g) for m, grid in panel.values.items()}
    for t, (tp_id, months) in enumerate(zip(panel.tp_ids, panel.tp_months)):
        exp = np.bincount(codes, weights=panel.expected[:, t], minlength=g)
        comp = np.bincount(codes, weights=panel.completed[:, t], minlength=g)
        item: dict[str, Any] = {
            "exp": exp,
            "comp": comp,
            "completeness": _rates(comp, exp),
            "measures": {},
        }
        for measure, grid in panel.values.items():
            item["measures"][measure] = _measure(
                measure, codes, grid, t, g, exp, medians[measure][:, t]
            )
        item["opioids"] = _opioids(panel, t, g) if panel.opioid is not None else None
        per_tp.append(item)

    result: dict[str, list[TimepointOutcome]] = {}
    for a, arm in enumerate(panel.arms):
        rows = []
        for t, item in enumerate(per_tp):
            rows.append(
                TimepointOutcome(
                    timepoint=panel.tp_ids[t],
                    months=float(panel.tp_months[t]),
                    n_expected=int(item["exp"][a]),
                    n_completed=int(item["comp"][a]),
                    n_missing=int(item["exp"][a] - item["comp"][a]),
                    completeness=item["completeness"][a],
                    measures={m: v[a] for m, v in item["measures"].items()},
                    opioids=item["opioids"][a] if item["opioids"] is not None else None,
                )
            )
        result[arm] = rows
    return result


def _measure(
    measure: str,
    codes: IntArray,
    grid: FloatArray,
    t: int,
    g: int,
    exp: FloatArray,
    median: FloatArray,
) -> list[MeasureSummary]:
    inst = MEASURES[measure]
    v = grid[:, t]
    ok = ~np.isnan(v)
    n, mean, sd = _group_mean_sd(codes[ok], v[ok], g)
    changes: list[Mean | None] = [None] * g
    rc: list[Rate | None] = [None] * g
    ra: list[Rate | None] = [None] * g
    sc: list[Rate | None] = [None] * g
    sa: list[Rate | None] = [None] * g
    if t > 0:
        base = grid[:, 0]
        pair = ok & ~np.isnan(base)
        d = v[pair] - base[pair]
        pn, pm, psd = _group_mean_sd(codes[pair], d, g)
        changes = list(_means(pn, pm, psd))
        try:
            mcid, subst = responder_flags(inst, base[pair], v[pair])
        except NoResponderRuleError:
            mcid, subst = None, None
        if mcid is not None:
            num = np.bincount(codes[pair], weights=mcid, minlength=g)
            rc, ra = list(_rates(num, pn)), list(_rates(num, exp))
        if subst is not None:
            num = np.bincount(codes[pair], weights=subst, minlength=g)
            sc, sa = list(_rates(num, pn)), list(_rates(num, exp))
    return [
        MeasureSummary(
            measure=measure,
            instrument_id=inst,
            n_scored=int(n[a]),
            mean=float(mean[a]) if n[a] > 0 else None,
            median=float(median[a]) if n[a] > 0 else None,
            sd=float(sd[a]) if n[a] > 1 else None,
            change=changes[a],
            responder_rate_completers=rc[a],
            responder_rate_all=ra[a],
            substantial_rate_completers=sc[a],
            substantial_rate_all=sa[a],
        )
        for a in range(g)
    ]


def _opioids(panel: Panel, t: int, g: int) -> list[OpioidSummary]:
    codes = panel.arm_codes
    assert panel.opioid is not None
    use = panel.opioid[:, t]
    ok = ~np.isnan(use)
    den = np.bincount(codes[ok], minlength=g).astype(np.float64)
    num = np.bincount(codes[ok], weights=use[ok], minlength=g)
    share = _rates(num, den)
    if panel.mme is None:
        nan = np.full(g, np.nan)
        return [OpioidSummary(share[a], Mean.of(0, *nan[:4]), None) for a in range(g)]
    mme = panel.mme[:, t]
    okm = ~np.isnan(mme)
    mm = _means(*_group_mean_sd(codes[okm], mme[okm], g))
    changes: list[Mean | None] = [None] * g
    if t > 0:
        base = panel.mme[:, 0]
        pair = okm & ~np.isnan(base)
        changes = list(_means(*_group_mean_sd(codes[pair], mme[pair] - base[pair], g)))
    return [OpioidSummary(share[a], mm[a], changes[a]) for a in range(g)]
