"""Cost per patient and cost per responder per arm, with percentile bootstrap CIs. Pure.

Definitions (docs/algorithms/cost.md, with a worked example):

* The cost of a patient is the ``price`` of the index episode (the one the report analyses),
  what the clinic charged for it whoever paid; ``patient_paid`` is the part paid out of pocket.
  Amounts are only added up within one currency: the report's currency is the one most
  patients with a price have; prices in another currency are counted
  (``n_other_currency``) and left out, never converted (ADR 0018).
* cost per patient = mean price over the arm's patients with a price (``n``).
* cost per responder = total price / number of responders, two ways as for responder rates:
  ``cost_per_responder`` among patients with a price and a response known at the time point
  (baseline and follow-up score: ``n_evaluable``), and ``cost_per_responder_all`` among every
  patient with a price whose time point was due (``n_due``), one without an answer counting as a
  non-responder (the honest worst case: everyone treated was paid for).
* CIs: percentile bootstrap over patients (resampling whole patients, so a patient's cost and
  response stay together), ``n_boot`` resamples from ``numpy.random.default_rng(seed)``. A
  resample with no responder has an infinite cost per responder; when more than
  (1 - level) / 2 of them do, the upper limit is unbounded (None, ``ci_upper_unbounded``).

The numbers are descriptive: the arms differ in who was treated, so neither is a cost
effectiveness comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import Panel
from vertebra.core.analytics.headline import SUPPRESSED, count_text, is_suppressed
from vertebra.core.analytics.outcomes import responder_flags
from vertebra.core.analytics.results import Rate, jsonable
from vertebra.core.analytics.schema import MEASURES
from vertebra.core.analytics.stats import wilson_ci
from vertebra.core.labels import label

__all__ = [
    "BILLED_TO",
    "COST_COLUMNS",
    "COST_HEADER",
    "ArmCost",
    "CostResult",
    "Estimate",
    "bootstrap_ratio",
    "cost_rows",
    "cost_summary",
    "money_text",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Optional columns of the patients table that carry the index episode's cost.
COST_COLUMNS: tuple[str, ...] = (
    "cost_price",
    "cost_patient_paid",
    "cost_currency",
    "cost_billed_to",
)
#: Payer codes, in report order (registry.models.BilledTo; labels.yaml ``billed_to``).
BILLED_TO: tuple[str, ...] = ("self_pay", "insurer", "trial", "other")
#: Default bootstrap settings: fixed seed so that a report is reproducible.
N_BOOT = 1000
SEED = 20261206
LEVEL = 0.95
#: Up to this many patients the bootstrap resamples patients; above, random blocks of them.
EXACT_ROWS = 200
#: Blocks of patients resampled above EXACT_ROWS (see bootstrap_ratio).
BLOCKS = 200


def bootstrap_ratio(
    numerator: FloatArray,
    denominator: FloatArray,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of sum(numerator) / sum(denominator) over resampled rows.

    Rows (patients) are first put in a canonical order (by value, :func:`_canonical`), so that
    the interval depends only on the values (de-identification shuffles patients into
    pseudonym order). Up to :data:`EXACT_ROWS` rows,
    each of ``n_boot`` resamples draws n rows with replacement from
    ``numpy.random.default_rng(seed)``. Above it, the rows are dealt at random into
    :data:`BLOCKS` blocks and the blocks are resampled instead (each resample draws
    ``BLOCKS`` blocks with replacement, a cluster bootstrap of the ratio): the blocks are
    random sets of patients of equal size, so the resampled ratio varies as with patients
    (``BLOCKS`` x the variance of a block sum = n x the variance of a row), at a cost that no
    longer grows with n (the coverage test checks both paths). The mean is the case
    ``denominator`` = 1. A resample with a zero denominator gives +inf; a limit that falls on
    it is None (unbounded). Fewer than 2 rows give (None, None).
    """
    num, den = _canonical(np.asarray(numerator, float), np.asarray(denominator, float))
    n = len(num)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    if n > EXACT_ROWS:  # blocks of equal size (+-1): a random permutation dealt round robin
        block = rng.permutation(n) % BLOCKS
        num = np.bincount(block, weights=num, minlength=BLOCKS).astype(np.float64)
        den = np.bincount(block, weights=den, minlength=BLOCKS).astype(np.float64)
        n = BLOCKS
    stats = np.empty(n_boot, dtype=np.float64)
    step = max(1, 1_000_000 // n)  # resamples per batch: about 10^6 draws at a time
    for first in range(0, n_boot, step):
        rows = min(step, n_boot - first)
        idx = rng.integers(0, n, size=(rows, n))
        top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[first : first + rows] = np.where(bottom > 0, top / bottom, np.inf)
    alpha = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):  # inf - inf between two unbounded order statistics
        lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)


@dataclass(frozen=True)
class Estimate:
    """A cost figure with its bootstrap CI: ``value`` = ``total`` / ``per`` (mean: per = n)."""

    n: int  # patients it is computed from
    total: float
    per: float  # the divisor: n for a mean, the number of responders for cost per responder
    value: float | None
    ci: tuple[float | None, float | None] | None
    n_boot: int

    def to_dict(self, count_key: str = "n", per_key: str | None = None) -> dict[str, Any]:
        """JSON; ``count_key`` names ``n`` (``n_evaluable``, ``n_due``), ``per_key`` the divisor
        when it is a count of its own (``n_responders``)."""
        out: dict[str, Any] = {count_key: self.n}
        if per_key:
            out[per_key] = int(self.per)
        lo, hi = self.ci if self.ci else (None, None)
        out.update(
            {
                "total": self.total if self.n else None,
                "value": self.value,
                "ci": [lo, hi] if self.ci else None,
                "ci_upper_unbounded": bool(self.ci is not None and lo is not None and hi is None),
                "n_boot": self.n_boot,
            }
        )
        return out


def _canonical(num: FloatArray, den: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The rows sorted by (denominator, numerator): a canonical order of the same values.
    Denominators of 0/1 (responders, means) need only two value sorts, not a lexsort."""
    ones = den == 1.0
    if np.all(ones | (den == 0.0)):
        zeros = ~ones
        num = np.concatenate([np.sort(num[zeros]), np.sort(num[ones])])
        den = np.concatenate([np.zeros(int(zeros.sum())), np.ones(int(ones.sum()))])
        return num, den
    order = np.lexsort((num, den))
    return num[order], den[order]


def _estimate(cost: FloatArray, per: FloatArray, n_boot: int, seed: int) -> Estimate:
    n = len(cost)
    total, divisor = float(cost.sum()), float(per.sum())
    value = total / divisor if divisor > 0 else None
    ci = bootstrap_ratio(cost, per, n_boot=n_boot, seed=seed) if n >= 2 else None
    return Estimate(n, total, divisor, value, ci, n_boot)


def _share(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_ci(np.array([k]), np.array([n]))
    return jsonable(Rate.of(k, n, float(lo[0]), float(hi[0])))


@dataclass(frozen=True)
class ArmCost:
    """The cost figures of one arm (see the module docstring for each definition)."""

    n_patients: int
    n_cost_recorded: int
    n_other_currency: int
    per_patient: Estimate
    out_of_pocket: Estimate
    billed_to: dict[str, int]
    per_responder: Estimate
    per_responder_all: Estimate

    def to_dict(self) -> dict[str, Any]:
        """JSON: every key names cost; counts beside every figure (denominators)."""
        recorded = self.n_cost_recorded
        return {
            "n_patients": self.n_patients,
            "n_cost_recorded": recorded,
            "n_other_currency": self.n_other_currency,
            "cost_per_patient": self.per_patient.to_dict(),
            "cost_out_of_pocket_per_patient": self.out_of_pocket.to_dict(),
            # Payer -> share of the patients with a price (a Rate: numerator, denominator,
            # rate, Wilson CI), so that small cells and their complements are suppressed.
            "cost_billed_to": {code: _share(k, recorded) for code, k in self.billed_to.items()},
            "cost_per_responder": self.per_responder.to_dict("n_evaluable", "n_responders"),
            "cost_per_responder_all": self.per_responder_all.to_dict("n_due", "n_responders"),
        }


@dataclass(frozen=True)
class CostResult:
    """Cost per arm in one currency, and how it was computed."""

    currency: str | None
    timepoint: str
    measure: str
    seed: int
    level: float
    arms: dict[str, ArmCost]

    def method(self) -> dict[str, Any]:
        """The report's ``cost_method``: currency, response definition, bootstrap settings."""
        return {
            "currency": self.currency,
            "timepoint": self.timepoint,
            "measure": self.measure,
            "ci_method": "percentile bootstrap over patients",
            "level": self.level,
            "seed": self.seed,
            "note": (
                "Cost = the price of the index episode, whoever paid it. Cost per responder = "
                "total price / responders at the time point, two ways: among patients with a "
                "price and both scores (completers), and among every patient with a price who "
                "was due, missing answers counting as non-responders (all due). "
                "Prices in another currency are counted, not converted. Descriptive: the arms "
                "differ in who was treated."
            ),
        }


def _prices(frame: pd.DataFrame, column: str) -> FloatArray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return np.asarray(pd.to_numeric(frame[column], errors="coerce"), dtype=np.float64)


def _codes(
    frame: pd.DataFrame, column: str, vocabulary: Sequence[str] | None
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """A text column as integer codes (-1: missing or empty) and the code's words: the
    ``vocabulary``'s when given (other values -1), else the distinct upper-case values.
    Works on the few distinct values, not on every row (10^6-patient reports)."""
    if column not in frame.columns:
        return np.full(len(frame), -1, dtype=np.int64), list(vocabulary or [])
    col = frame[column]
    if isinstance(col.dtype, pd.CategoricalDtype):
        raw, uniques = col.cat.codes.to_numpy(np.int64), [str(c) for c in col.cat.categories]
    else:
        codes, found = pd.factorize(col, use_na_sentinel=True)
        raw, uniques = np.asarray(codes, dtype=np.int64), [str(c) for c in found]
    words = (
        list(vocabulary)
        if vocabulary is not None
        else sorted({u.strip().upper() for u in uniques if u.strip()})
    )
    lookup = {w: i for i, w in enumerate(words)}
    key = (lambda u: u.strip()) if vocabulary is not None else (lambda u: u.strip().upper())
    remap = np.array([lookup.get(key(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return remap[np.where(raw < 0, len(uniques), raw)], words


def cost_summary(
    panel: Panel,
    *,
    timepoint: str = "month_12",
    measure: str = "odi",
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> CostResult | None:
    """Cost per patient and per responder for every arm of ``panel``; None when the patients
    table has no cost column at all (tables from before cost was recorded)."""
    pts = panel.patients
    if "cost_price" not in pts.columns:
        return None
    price = _prices(pts, "cost_price")
    paid = _prices(pts, "cost_patient_paid")
    cur, currencies = _codes(pts, "cost_currency", None)
    payer, _ = _codes(pts, "cost_billed_to", BILLED_TO)
    has_price = ~np.isnan(price)
    # The report's currency: the one most priced patients have (ties: alphabetical).
    counts = np.bincount(cur[has_price & (cur >= 0)], minlength=len(currencies))
    pick = int(np.argmax(counts)) if counts.size and counts.max() > 0 else -1
    currency = currencies[pick] if pick >= 0 else None
    same = cur == pick if pick >= 0 else np.zeros(len(price), dtype=bool)
    priced = has_price & same
    other = has_price & ~same

    resp, evaluable, due = _responses(panel, timepoint, measure)
    # Patients grouped by arm once (a stable sort), so each arm's work is on its own rows.
    by_arm = np.argsort(panel.arm_codes, kind="stable")
    bounds = np.searchsorted(panel.arm_codes[by_arm], np.arange(len(panel.arms) + 1))
    arms: dict[str, ArmCost] = {}
    for code, arm in enumerate(panel.arms):
        rows = by_arm[bounds[code] : bounds[code + 1]]
        p, pd_, r = price[rows], paid[rows], resp[rows]
        have = priced[rows]
        oop = same[rows] & ~np.isnan(pd_)
        ev = have & evaluable[rows]
        dd = have & due[rows]
        who = payer[rows][have]
        by_payer = np.bincount(who[who >= 0], minlength=len(BILLED_TO))
        arms[arm] = ArmCost(
            n_patients=len(rows),
            n_cost_recorded=int(have.sum()),
            n_other_currency=int(other[rows].sum()),
            per_patient=_estimate(p[have], np.ones(int(have.sum())), n_boot, seed),
            out_of_pocket=_estimate(pd_[oop], np.ones(int(oop.sum())), n_boot, seed),
            billed_to={b: int(by_payer[i]) for i, b in enumerate(BILLED_TO)},
            per_responder=_estimate(p[ev], r[ev].astype(np.float64), n_boot, seed),
            per_responder_all=_estimate(p[dd], r[dd].astype(np.float64), n_boot, seed),
        )
    return CostResult(currency, timepoint, measure, seed, LEVEL, arms)


def _responses(
    panel: Panel, timepoint: str, measure: str
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Per patient: responder at ``timepoint`` on ``measure`` (its responders.yaml rule), with
    both scores known (evaluable), and due (expected) at ``timepoint``."""
    n = panel.n
    none = np.zeros(n, dtype=bool)
    grid = panel.values.get(measure)
    if grid is None or timepoint not in panel.tp_ids:
        return none, none, none
    t = panel.tp_ids.index(timepoint)
    base, follow = grid[:, 0], grid[:, t]
    mcid, _ = responder_flags(MEASURES[measure], base, follow)
    evaluable = ~np.isnan(base) & ~np.isnan(follow)
    due = np.asarray(panel.expected[:, t], dtype=bool)
    return mcid & evaluable, evaluable, due


# ------------------------------------------------------------------------------ for people

#: Column headers of :func:`cost_rows` (report HTML/PDF and the clinic dashboard).
COST_HEADER: tuple[str, ...] = (
    "Treatment",
    "Price recorded",
    "Cost per patient (95% CI)",
    "Paid out of pocket per patient",
    "Billed to",
    "Cost per responder, completers (95% CI)",
    "Cost per responder, all due (95% CI)",
)


def money_text(value: Any, currency: str | None) -> str:
    """12000.0, "USD" -> "USD 12,000"; suppressed -> the suppression words; None -> "–"."""
    if is_suppressed(value):
        return SUPPRESSED
    if value is None or isinstance(value, bool):
        return "–"
    return f"{currency or ''} {float(value):,.0f}".strip()


def _figure(est: dict[str, Any], currency: str | None) -> str:
    """ "USD 9,000 (7,100 to 10,900)"; an unbounded upper limit reads "no upper limit"."""
    if est.get("suppressed") and est.get("value") is None:
        return SUPPRESSED
    text = money_text(est.get("value"), currency)
    ci = est.get("ci")
    if ci and ci[0] is not None:
        hi = "no upper limit" if ci[1] is None else f"{float(ci[1]):,.0f}"
        text += f" ({float(ci[0]):,.0f} to {hi})"
    return SUPPRESSED if is_suppressed(text) else text


def cost_rows(report: dict[str, Any], arm_label: Any = str) -> list[tuple[str, ...]]:
    """One row per arm of a report's JSON (:data:`COST_HEADER`), denominators in words;
    empty when the report has no cost. ``arm_label`` turns an arm code into words."""
    method = report.get("cost_method") or {}
    currency = method.get("currency")
    rows: list[tuple[str, ...]] = []
    for arm, a in (report.get("arms") or {}).items():
        c = a.get("cost")
        if not c:
            continue
        recorded = f"{count_text(c['n_cost_recorded'])} of {count_text(c['n_patients'])}"
        if c.get("n_other_currency"):
            recorded += f" (+{count_text(c['n_other_currency'])} in another currency)"
        payers = "; ".join(
            f"{_payer(code)} {count_text(row['numerator'])}"
            for code, row in c["cost_billed_to"].items()
            if row["numerator"]
        )
        per = c["cost_per_responder"]
        per_all = c["cost_per_responder_all"]
        rows.append(
            (
                arm_label(arm),
                recorded,
                _figure(c["cost_per_patient"], currency),
                f"{_figure(c['cost_out_of_pocket_per_patient'], currency)} "
                f"(n {count_text(c['cost_out_of_pocket_per_patient']['n'])})",
                payers or "–",
                f"{_per_responder(per, currency)}; {_responders(per['n_responders'])} of "
                f"{count_text(per['n_evaluable'])} with both scores",
                f"{_per_responder(per_all, currency)}; {_responders(per_all['n_responders'])} "
                f"of {count_text(per_all['n_due'])} due",
            )
        )
    return rows


def _responders(count: Any) -> str:
    """ "1 responder", "3 responders", or the suppression words."""
    return f"{count_text(count)} responder{'' if count == 1 else 's'}"


def _per_responder(est: dict[str, Any], currency: str | None) -> str:
    """The figure, or "no responder yet" when there is none to divide by."""
    if est.get("value") is None and est.get("n_responders") == 0:
        return "no responder yet"
    return _figure(est, currency)


def _payer(code: str) -> str:
    return label("billed_to", code).lower()
