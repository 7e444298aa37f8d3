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
    "MeasureCells",
    "MeasureSummary",
    "OpioidSummary",
    "TimepointOutcome",
    "arm_outcomes",
    "assemble_outcomes",
    "measure_summaries",
    "opioid_summaries",
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
    key: IntArray, x: FloatArray, groups: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-group n, mean and SD (ddof 1) in one pass of three bincounts.

    Sums are taken about a global shift c (the overall mean) so that Σ(x-c)² - n(x̄-c)² does
    not lose precision: scores are bounded (0-100), so after the shift the terms are small.
    """
    n = np.bincount(key, minlength=groups).astype(np.float64)
    c = float(x.mean()) if len(x) else 0.0
    xc = x - c
    s1 = np.bincount(key, weights=xc, minlength=groups)
    s2 = np.bincount(key, weights=xc * xc, minlength=groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = s1 / n
        var = np.maximum(s2 - n * mean_c * mean_c, 0.0) / (n - 1.0)
    return n, mean_c + c, np.where(n >= 2, np.sqrt(var), np.nan)


def _rates(num: npt.NDArray[Any], den: npt.NDArray[Any]) -> list[Rate]:
    lo, hi = wilson_ci(num, den)
    return [
        Rate.of(int(a), int(b), float(c), float(d))
        for a, b, c, d in zip(num, den, lo, hi, strict=False)
    ]


def _means(n: FloatArray, mean: FloatArray, sd: FloatArray) -> list[Mean]:
    lo, hi = t_ci(mean, sd, n)
    return [
        Mean.of(int(a), float(b), float(c), float(d), float(e))
        for a, b, c, d, e in zip(n, mean, sd, lo, hi, strict=False)
    ]


def _grouped_median(key: IntArray, x: FloatArray, groups: int) -> FloatArray:
    """Median of x within each key (NaN for empty keys).

    Scores take few distinct values (NRS 0-10, ODI in steps of 2 or 0.x), so a per-key
    histogram over the distinct values plus cumulative counts finds both middle order
    statistics without sorting millions of rows; many distinct values fall back to pandas.
    """
    out = np.full(groups, np.nan)
    if len(x) == 0:
        return out
    codes, uniques = pd.factorize(x, sort=True)
    u = len(uniques)
    if u * groups > 5_000_000:
        med = pd.Series(x).groupby(key).median()
        out[med.index.to_numpy()] = med.to_numpy()
        return out
    hist = np.bincount(key * u + codes, minlength=groups * u).reshape(groups, u)
    cum = np.cumsum(hist, axis=1)
    n = cum[:, -1]
    has = n > 0
    lo_rank = (n - 1) // 2  # 0-based ranks of the two middle order statistics
    hi_rank = n // 2
    vals = np.asarray(uniques, dtype=np.float64)
    lo_idx = np.array([np.searchsorted(cum[g], lo_rank[g], side="right") for g in range(groups)])
    hi_idx = np.array([np.searchsorted(cum[g], hi_rank[g], side="right") for g in range(groups)])
    lo_idx, hi_idx = np.minimum(lo_idx, u - 1), np.minimum(hi_idx, u - 1)
    out[has] = ((vals[lo_idx] + vals[hi_idx]) / 2.0)[has]
    return out


def _cell_keys(arm_codes: IntArray, t_count: int) -> IntArray:
    """key = arm * T + t for every cell of the flattened patients x time points grid."""
    return np.asarray((arm_codes[:, None] * t_count + np.arange(t_count)[None, :]).ravel())


def _where(mask: BoolArray) -> IntArray:
    """Flat indices of the True cells.

    Selecting with `a.take(_where(m))` gives exactly `a[m]`, but a random boolean mask over
    6M cells costs ~35 ms per array, against ~6 ms for the indices plus ~8 ms per take; the
    indices are reused for the key and the values.
    """
    return np.flatnonzero(mask)


def arm_outcomes(panel: Panel) -> dict[str, list[TimepointOutcome]]:
    """Outcomes per arm (keys = panel.arms) and time point (ordered by months).

    All arms x time points are computed together: key = arm * T + t over the flattened
    patients x time points grid, so each statistic is one bincount over the grid.
    """
    g, t_count = len(panel.arms), len(panel.tp_ids)
    gt = g * t_count
    key = _cell_keys(panel.arm_codes, t_count)
    exp = np.bincount(key.take(_where(panel.expected.ravel())), minlength=gt).astype(np.float64)
    comp = np.bincount(key.take(_where(panel.completed.ravel())), minlength=gt).astype(np.float64)
    measures = {m: _measure(m, key, grid, gt, exp) for m, grid in panel.values.items()}
    opioids = _opioids(panel, key, gt) if panel.opioid is not None else None
    return assemble_outcomes(
        panel.arms, panel.tp_ids, panel.tp_months, exp, comp, measures, opioids
    )


def assemble_outcomes(
    arms: list[str],
    tp_ids: list[str],
    tp_months: npt.NDArray[Any],
    exp: npt.NDArray[Any],
    comp: npt.NDArray[Any],
    measures: dict[str, list[MeasureSummary]],
    opioids: list[OpioidSummary] | None,
) -> dict[str, list[TimepointOutcome]]:
    """`arm_outcomes`' result from per-cell counts (cell j = arm * T + t): `exp` expected,
    `comp` completed, the measures' summaries and the opioid summaries of every cell."""
    t_count = len(tp_ids)
    completeness = _rates(comp, exp)
    result: dict[str, list[TimepointOutcome]] = {}
    for a, arm in enumerate(arms):
        rows = []
        for t in range(t_count):
            j = a * t_count + t
            rows.append(
                TimepointOutcome(
                    timepoint=tp_ids[t],
                    months=float(tp_months[t]),
                    n_expected=int(exp[j]),
                    n_completed=int(comp[j]),
                    n_missing=int(exp[j] - comp[j]),
                    completeness=completeness[j],
                    measures={m: v[j] for m, v in measures.items()},
                    opioids=opioids[j] if opioids is not None else None,
                )
            )
        result[arm] = rows
    return result


def _pairs(grid: FloatArray) -> tuple[IntArray, FloatArray, FloatArray]:
    """Follow-up cells with a baseline score: (flat indices, follow-up, follow-up - baseline).

    The baseline column itself is excluded. Cells are in grid (row-major) order.
    """
    pair = ~np.isnan(grid)
    pair &= pair[:, :1].copy()
    pair[:, 0] = False
    idx = _where(pair.ravel())
    fu = grid.ravel().take(idx)
    return idx, fu, fu - grid[:, 0].take(idx // grid.shape[1])


@dataclass(frozen=True)
class MeasureCells:
    """One score's statistics for every (arm, time point) cell j = arm * T + t (arrays of
    length arms x T): what `measure_summaries` turns into `MeasureSummary` values.

    n/mean/sd/median: completed questionnaires with the score; pair_n/pair_mean/pair_sd: the
    change follow-up - baseline over patients with both; mcid/substantial: responders among
    those pairs (None: the instrument has no such rule). Either engine fills them: the
    in-memory one with bincounts over the panel (`_measure_cells`), the out-of-core one with
    SQL aggregates (vertebra.analysis.duckdb_report).
    """

    n: FloatArray
    mean: FloatArray
    sd: FloatArray
    median: FloatArray
    pair_n: FloatArray
    pair_mean: FloatArray
    pair_sd: FloatArray
    mcid: npt.NDArray[Any] | None
    substantial: npt.NDArray[Any] | None


def _measure(
    measure: str, key: IntArray, grid: FloatArray, gt: int, exp: npt.NDArray[Any]
) -> list[MeasureSummary]:
    """Summaries for every (arm, time point) cell j = arm * T + t of one score grid."""
    return measure_summaries(measure, _measure_cells(measure, key, grid, gt), exp, grid.shape[1])


def _measure_cells(measure: str, key: IntArray, grid: FloatArray, gt: int) -> MeasureCells:
    """`MeasureCells` of one score grid.

    The cells of interest are selected once by index (`_where`) and reused; the arithmetic
    is the straightforward one, so results are identical to the bit.
    """
    inst = MEASURES[measure]
    flat = grid.ravel()
    idx = _where(~np.isnan(flat))
    k_ok, x_ok = key.take(idx), flat.take(idx)
    n, mean, sd = _group_mean_sd(k_ok, x_ok, gt)
    median = _grouped_median(k_ok, x_ok, gt)
    del k_ok, x_ok, idx
    # change = follow-up - baseline over completers with both scores (baseline column excluded)
    pidx, fu_p, dp = _pairs(grid)
    kp = key.take(pidx)
    pn, pm, psd = _group_mean_sd(kp, dp, gt)
    base_p = fu_p - dp
    try:
        mcid, subst = responder_flags(inst, base_p, fu_p)
    except NoResponderRuleError:
        mcid, subst = None, None
    num_m = np.bincount(kp, weights=mcid, minlength=gt) if mcid is not None else None
    num_s = np.bincount(kp, weights=subst, minlength=gt) if subst is not None else None
    return MeasureCells(n, mean, sd, median, pn, pm, psd, num_m, num_s)


def measure_summaries(
    measure: str, cells: MeasureCells, exp: npt.NDArray[Any], t_count: int
) -> list[MeasureSummary]:
    """`MeasureSummary` per cell j = arm * T + t (no change or response at baseline, t = 0);
    `exp` = patients expected per cell (the "all" responder rates' denominator)."""
    inst = MEASURES[measure]
    gt = len(cells.n)
    n, mean, sd, median = cells.n, cells.mean, cells.sd, cells.median
    changes = _means(cells.pair_n, cells.pair_mean, cells.pair_sd)
    none: list[Rate | None] = [None] * gt
    rc, ra, sc, sa = none, none, none, none
    if cells.mcid is not None:
        rc, ra = list(_rates(cells.mcid, cells.pair_n)), list(_rates(cells.mcid, exp))
    if cells.substantial is not None:
        sc = list(_rates(cells.substantial, cells.pair_n))
        sa = list(_rates(cells.substantial, exp))
    out = []
    for j in range(gt):
        baseline_cell = j % t_count == 0  # no change or response at baseline itself
        out.append(
            MeasureSummary(
                measure=measure,
                instrument_id=inst,
                n_scored=int(n[j]),
                mean=float(mean[j]) if n[j] > 0 else None,
                median=float(median[j]) if n[j] > 0 else None,
                sd=float(sd[j]) if n[j] > 1 else None,
                change=None if baseline_cell else changes[j],
                responder_rate_completers=None if baseline_cell else rc[j],
                responder_rate_all=None if baseline_cell else ra[j],
                substantial_rate_completers=None if baseline_cell else sc[j],
                substantial_rate_all=None if baseline_cell else sa[j],
            )
        )
    return out


def _opioids(panel: Panel, key: IntArray, gt: int) -> list[OpioidSummary]:
    """Opioid share and MME per (arm, time point) cell."""
    assert panel.opioid is not None
    t_count = panel.opioid.shape[1]
    use = panel.opioid.ravel()
    idx = _where(~np.isnan(use))
    k_ok = key.take(idx)
    den = np.bincount(k_ok, minlength=gt).astype(np.float64)
    num = np.bincount(k_ok, weights=use.take(idx), minlength=gt)
    if panel.mme is None:
        return opioid_summaries(num, den, None, None, t_count)
    mme = panel.mme.ravel()
    idx = _where(~np.isnan(mme))
    level = _group_mean_sd(key.take(idx), mme.take(idx), gt)
    pidx, _, change = _pairs(panel.mme)
    return opioid_summaries(num, den, level, _group_mean_sd(key.take(pidx), change, gt), t_count)


MeanCells = tuple[FloatArray, FloatArray, FloatArray]


def opioid_summaries(
    num: npt.NDArray[Any],
    den: npt.NDArray[Any],
    mme: MeanCells | None,
    mme_change: MeanCells | None,
    t_count: int,
) -> list[OpioidSummary]:
    """`OpioidSummary` per cell from: patients on opioids (`num`) among those who answered
    (`den`), and (n, mean, SD) of MME/day and of its change from baseline (None: no MME)."""
    share = _rates(num, den)
    gt = len(den)
    if mme is None or mme_change is None:
        empty = Mean(0, None, None, None)
        return [OpioidSummary(share[j], empty, None) for j in range(gt)]
    mm, ch = _means(*mme), _means(*mme_change)
    return [OpioidSummary(share[j], mm[j], None if j % t_count == 0 else ch[j]) for j in range(gt)]
