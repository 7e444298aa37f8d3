"""The optimised paths of the analytics core give the same numbers as the straightforward ones.

The 10^6-patient report relies on shortcuts (a reshape instead of an id lookup for the panel,
index-based selection and one bincount per statistic for the outcomes, one bincount for the
per-clinic sums of the propensity fit and for the level SMDs, Arrow-side conversions when
reading Parquet). The whole report JSON is also byte-identical before and after at 10^5 and
10^6 patients (bench/RESULTS-analytics.md). Each
test runs the shortcut and a plain implementation on small data and requires identical
results: exactly equal arrays, or for means computed by a different summation order in the
plain oracle, agreement to 1e-12.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from vertebra.core.analytics import AnalysisTables, CohortFilter, Panel, arm_outcomes, build_panel
from vertebra.core.analytics.cohort import str_categorical
from vertebra.core.analytics.outcomes import responder_flags
from vertebra.core.analytics.propensity import _drop_unused, _level_smd
from vertebra.core.analytics.schema import MEASURES, read_tables
from vertebra.core.analytics.stats import logistic_fit_fe
from vertebra.core.analytics.toy import toy_tables

AS_OF = date(2026, 11, 25)


def _assert_same_panel(a: Panel, b: Panel) -> None:
    assert a.arms == b.arms and a.tp_ids == b.tp_ids and list(a.values) == list(b.values)
    assert a.patients["patient_id"].tolist() == b.patients["patient_id"].tolist()
    for name in ("arm_codes", "tp_months", "expected", "completed", "opioid", "mme"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
    for m in a.values:
        assert np.array_equal(a.values[m], b.values[m], equal_nan=True), m
    if a.contact_days is not None or b.contact_days is not None:
        assert np.array_equal(a.contact_days, b.contact_days), "contact_days"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "flt",
    [CohortFilter(), CohortFilter.build(arms=["bmac", "physical_therapy"], clinics=[1, 2, 5])],
)
def test_panel_reshape_equals_id_lookup(flt: CohortFilter) -> None:
    """The reshape fast path (ordered table) equals the general id-lookup scatter."""
    tables = toy_tables(2_000, seed=3, today=AS_OF)
    fast = build_panel(tables, flt, AS_OF, with_contact=True)
    slow = build_panel(tables, flt, AS_OF, with_contact=True, allow_reshape=False)
    _assert_same_panel(fast, slow)


def test_panel_unordered_or_incomplete_tables_take_the_general_path() -> None:
    """Shuffled rows, a permuted time point order and a missing row all give the same panel
    as the id lookup on the original rows (the reshape is only used when it is exact)."""
    tables = toy_tables(500, seed=4, today=AS_OF)
    reference = build_panel(tables, CohortFilter(), AS_OF, allow_reshape=False)
    tp = tables.timepoints
    shuffled = tp.sample(frac=1.0, random_state=1).reset_index(drop=True)
    t_count = tp["timepoint"].nunique()
    order = np.arange(len(tp)).reshape(-1, t_count)[:, ::-1].ravel()  # same order per block
    reversed_blocks = tp.iloc[order].reset_index(drop=True)
    for variant in (shuffled, reversed_blocks):
        got = build_panel(replace(tables, timepoints=variant), CohortFilter(), AS_OF)
        _assert_same_panel(got, reference)
    dropped = tp.drop(index=7).reset_index(drop=True)  # one cell without a row
    got = build_panel(replace(tables, timepoints=dropped), CohortFilter(), AS_OF)
    ref = build_panel(
        replace(tables, timepoints=dropped), CohortFilter(), AS_OF, allow_reshape=False
    )
    _assert_same_panel(got, ref)
    assert not got.expected[7 // t_count, 7 % t_count]


def _plain_cell(
    values: npt.NDArray[np.float64], base: npt.NDArray[np.float64], measure: str
) -> dict[str, float | int | None]:
    """One (arm, time point) cell the obvious way, for `test_outcomes_equal_plain_loop`."""
    scored = values[~np.isnan(values)]
    pair = ~np.isnan(values) & ~np.isnan(base)
    change = values[pair] - base[pair]
    try:
        mcid, _ = responder_flags(MEASURES[measure], base[pair], values[pair])
        responders: int | None = int(mcid.sum())
    except Exception:  # no responder rule (never raised for the toy measures)
        responders = None
    return {
        "n": len(scored),
        "mean": float(np.mean(scored)) if len(scored) else None,
        "median": float(np.median(scored)) if len(scored) else None,
        "sd": float(np.std(scored, ddof=1)) if len(scored) > 1 else None,
        "n_change": len(change),
        "mean_change": float(np.mean(change)) if len(change) else None,
        "responders": responders,
    }


def test_outcomes_equal_plain_loop() -> None:
    """`arm_outcomes` (index selection + grouped bincounts) against a loop over the cells."""
    tables = toy_tables(3_000, seed=5, today=AS_OF)
    panel = build_panel(tables, CohortFilter(), AS_OF)
    out = arm_outcomes(panel)
    for a, arm in enumerate(panel.arms):
        rows = panel.arm_codes == a
        for t, cell in enumerate(out[arm]):
            assert cell.n_expected == int(panel.expected[rows, t].sum())
            assert cell.n_completed == int(panel.completed[rows, t].sum())
            for m, grid in panel.values.items():
                want = _plain_cell(grid[rows, t], grid[rows, 0], m)
                got = cell.measures[m]
                assert got.n_scored == want["n"]
                assert got.median == want["median"]
                assert got.mean == pytest.approx(want["mean"], rel=1e-12, abs=1e-12)
                assert got.sd == pytest.approx(want["sd"], rel=1e-12, abs=1e-12)
                if t == 0:
                    assert got.change is None
                    continue
                assert got.change is not None and got.change.n == want["n_change"]
                assert got.change.mean == pytest.approx(want["mean_change"], rel=1e-12, abs=1e-12)
                rc = got.responder_rate_completers
                assert rc is not None and rc.numerator == want["responders"]
                assert rc.denominator == want["n_change"]
                ra = got.responder_rate_all
                assert ra is not None and ra.denominator == cell.n_expected


def _fe_fit_columnwise(
    x: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], y: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The block-Newton fixed-effects fit with one bincount per column (the plain form)."""
    g_count, k = int(groups.max()) + 1, x.shape[1]
    beta, gamma = np.zeros(k), np.zeros(g_count)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta + gamma[groups], -30.0, 30.0)))
        wgt, r = p * (1.0 - p), y - p
        gx, gg = x.T @ r, np.bincount(groups, weights=r, minlength=g_count)
        a = (x * wgt[:, None]).T @ x
        b = np.column_stack(
            [np.bincount(groups, weights=wgt * x[:, j], minlength=g_count) for j in range(k)]
        ).T
        d = np.bincount(groups, weights=wgt, minlength=g_count)
        d = np.where(d > 0, d, 1e-12)
        dbeta = np.linalg.solve(a - (b / d) @ b.T, gx - (b / d) @ gg)
        dgamma = (gg - b.T @ dbeta) / d
        beta, gamma = beta + dbeta, gamma + dgamma
        step = max(float(np.max(np.abs(dbeta))), float(np.max(np.abs(dgamma))))
        if step < 1e-8 * (1.0 + max(float(np.max(np.abs(beta))), 1.0)):
            break
    return beta, gamma


@pytest.mark.parametrize("fortran", [False, True])
def test_fixed_effects_fit_equals_columnwise_sums(fortran: bool) -> None:
    """One bincount over all (group, column) cells gives bit-identical coefficients, for a
    row-major design and for a column-major one (what pandas usually hands over)."""
    rng = np.random.default_rng(11)
    n, k, g = 4_000, 5, 30
    x = rng.normal(size=(n, k))
    x = np.asfortranarray(x) if fortran else x
    groups = rng.integers(0, g, n).astype(np.int64)
    eta = x @ rng.normal(0, 0.5, k) + rng.normal(0, 0.5, g)[groups]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.float64)
    beta, gamma, converged = logistic_fit_fe(x, groups, y)
    ref_beta, ref_gamma = _fe_fit_columnwise(x, groups, y)
    assert converged
    assert np.array_equal(beta, ref_beta) and np.array_equal(gamma, ref_gamma)


def test_level_smd_equals_per_group_bincounts() -> None:
    """The (group, level) bincount gives exactly the per-group form's SMDs."""
    rng = np.random.default_rng(12)
    n, k = 5_000, 7
    codes = rng.integers(0, k, n).astype(np.int64)
    treat = rng.random(n) < 0.4
    for w in (None, rng.gamma(2.0, 1.0, n)):
        ww = np.ones(n) if w is None else w
        p1, p0 = (
            np.bincount(codes[grp], weights=ww[grp], minlength=k) / ww[grp].sum()
            for grp in (treat, ~treat)
        )
        pooled = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2.0)
        want = np.where(pooled > 0, (p1 - p0) / pooled, 0.0)
        assert np.array_equal(_level_smd(codes, k, treat, w), want)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([3, 10, 9, 3, 100], dtype="int32"),
        pd.Series(["b", "a", "b"], dtype="category"),
        pd.Series(pd.Categorical(["x", "y"], categories=["z", "y", "x"])),
        pd.Series([1.5, 2.0, np.nan]),
        pd.Series(["q", "p", "q"]),
    ],
)
def test_str_categorical_equals_astype_str(values: pd.Series) -> None:
    got, want = str_categorical(values), pd.Categorical(values.astype(str))
    assert list(got.categories) == list(want.categories)
    assert np.array_equal(got.codes, want.codes)


def test_drop_unused_equals_pandas() -> None:
    col = pd.Series(
        pd.Categorical.from_codes([0, 2, -1, 2], categories=pd.Index(["a", "b", "c", "d"]))
    )
    got, want = _drop_unused(col), col.cat.remove_unused_categories()
    assert list(got.cat.categories) == list(want.cat.categories)
    assert np.array_equal(got.cat.codes.to_numpy(), want.cat.codes.to_numpy())


def test_parquet_read_gives_the_same_panel(tmp_path: Path) -> None:
    """Arrow-side conversion (nullable Int8 / boolean scores -> float64 NaN) changes nothing."""
    tables = toy_tables(800, seed=6, today=AS_OF)
    tp = tables.timepoints.assign(
        nrs_back=tables.timepoints["nrs_back"].astype("Int8"),
        opioid_use=tables.timepoints["opioid_use"].astype("boolean"),
    )
    for name, df in (("patients", tables.patients), ("timepoints", tp), ("events", tables.events)):
        df.to_parquet(tmp_path / f"{name}.parquet")
    read = read_tables(tmp_path)
    assert read.timepoints["nrs_back"].dtype == np.float64
    memory = AnalysisTables.of(tables.patients, tp, tables.events)
    _assert_same_panel(
        build_panel(read, CohortFilter(), AS_OF), build_panel(memory, CohortFilter(), AS_OF)
    )
