"""Statistical building blocks against independent implementations and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from vertebra.core.analytics.stats import (
    Z95,
    funnel_limits,
    kish_ess,
    logistic_fit,
    logistic_fit_fe,
    poisson_ci,
    smd,
    smd_columns,
    t_ci,
    weighted_difference,
    weighted_mean_var,
    wilson_ci,
)


def test_z95_is_scipys_quantile_to_the_last_bit() -> None:
    """Z95 is written out (so that importing the module does not import scipy.stats); it must
    stay the very float scipy gives."""
    assert float(stats.norm.ppf(0.975)) == Z95


def test_importing_the_analytics_does_not_import_scipy_stats() -> None:
    """Every web process imports the analytics through its URL configuration; scipy.stats
    (~0.5 s) is imported only when an interval is computed."""
    import subprocess
    import sys

    code = "import sys, vertebra.core.analytics; print('scipy.stats' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_wilson_hand_worked_example() -> None:
    """x = 8, n = 10, z = 1.959964: z² = 3.841459, p̂ = 0.8.

    centre = (8 + 1.920729) / 13.841459 = 0.716738
    half   = 1.959964 · sqrt(10·0.8·0.2 + 0.960365) / 13.841459
           = 1.959964 · 1.600114 / 13.841459 = 0.226576
    -> (0.490162, 0.943318)  (bounds from unrounded intermediates)
    """
    lo, hi = wilson_ci(8, 10)
    assert float(lo) == pytest.approx(0.490162, abs=1e-6)
    assert float(hi) == pytest.approx(0.943318, abs=1e-6)


@pytest.mark.parametrize(("x", "n"), [(0, 1), (0, 10), (10, 10), (3, 7), (50, 120), (999, 1000)])
def test_wilson_matches_statsmodels(x: int, n: int) -> None:
    lo, hi = wilson_ci(x, n)
    elo, ehi = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert float(lo) == pytest.approx(elo, abs=1e-12)
    assert float(hi) == pytest.approx(ehi, abs=1e-12)


def test_wilson_zero_denominator_is_nan() -> None:
    lo, hi = wilson_ci(0, 0)
    assert math.isnan(float(lo)) and math.isnan(float(hi))


@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_within_unit_interval_and_contains_p(xn: tuple[int, int]) -> None:
    x, n = xn
    lo, hi = (float(v) for v in wilson_ci(x, n))
    assert 0.0 <= lo <= x / n <= hi <= 1.0


def test_t_ci_matches_scipy_paired() -> None:
    """A paired t interval is the one-sample interval of the differences."""
    before = np.array([50.0, 42, 38, 61, 47, 55, 40])
    after = np.array([38.0, 40, 30, 45, 47, 41, 36])
    d = after - before
    lo, hi = t_ci(d.mean(), d.std(ddof=1), len(d))
    res = stats.ttest_rel(after, before).confidence_interval(0.95)
    assert float(lo) == pytest.approx(res.low, rel=1e-12)
    assert float(hi) == pytest.approx(res.high, rel=1e-12)


def test_t_ci_undefined_below_two() -> None:
    lo, _ = t_ci(3.0, float("nan"), 1)
    assert math.isnan(float(lo))


def test_poisson_ci_matches_exact_gamma_bounds() -> None:
    lo, hi = poisson_ci([0, 5])
    assert lo[0] == 0.0
    assert hi[0] == pytest.approx(-math.log(0.025), rel=1e-9)  # k=0: upper = -ln(α/2)
    assert lo[1] == pytest.approx(stats.gamma.ppf(0.025, 5), rel=1e-9)
    assert hi[1] == pytest.approx(stats.gamma.ppf(0.975, 6), rel=1e-9)


def test_smd_by_hand() -> None:
    """Treated ages 50, 60 (mean 55, var 50); control 40, 50, 60 (mean 50, var 100).

    SMD = (55 - 50) / sqrt((50 + 100) / 2) = 5 / sqrt(75) = 0.57735.
    Binary: p1 = 0.5, p0 = 0.25 -> 0.25 / sqrt((0.25 + 0.1875) / 2) = 0.534522.
    """
    x = np.array([50.0, 60, 40, 50, 60])
    t = np.array([True, True, False, False, False])
    assert smd(x, t) == pytest.approx(5 / math.sqrt(75))
    tb = np.array([True, True, False, False, False, False])
    b = np.array([1.0, 0, 1, 0, 0, 0])  # treated 1, 0 -> p1 = 0.5; control 1, 0, 0, 0 -> 0.25
    assert smd(b, tb, binary=True) == pytest.approx(0.25 / math.sqrt((0.25 + 0.1875) / 2))
    assert smd_columns(np.column_stack([x]), t, None, [False])[0] == pytest.approx(smd(x, t))


def test_weighted_smd_and_columns_agree() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    x[:, 2] = rng.random(200) < 0.3
    t = rng.random(200) < 0.4
    w = rng.uniform(0.5, 3, 200)
    cols = smd_columns(x, t, w, [False, False, True])
    for j, binary in enumerate([False, False, True]):
        assert cols[j] == pytest.approx(smd(x[:, j], t, w, binary=binary))


def test_weighted_mean_var_equal_weights_is_sample_var() -> None:
    x = np.array([1.0, 2, 4, 8])
    m, v = weighted_mean_var(x, np.full(4, 2.5))
    assert m == pytest.approx(x.mean())
    assert v == pytest.approx(x.var(ddof=1))


def test_kish_ess() -> None:
    assert kish_ess(np.ones(10)) == pytest.approx(10)
    assert kish_ess(np.array([1.0, 3.0])) == pytest.approx(16 / 10)


def test_funnel_limits_approach_normal_for_large_n() -> None:
    n = np.array([20_000.0])
    lo, hi = funnel_limits(0.6, n, 0.95)
    half = 1.959964 * math.sqrt(0.24 / 20_000)
    assert float(lo[0]) == pytest.approx(0.6 - half, abs=2e-4)
    assert float(hi[0]) == pytest.approx(0.6 + half, abs=2e-4)
    lo3, hi3 = funnel_limits(0.6, n, 0.998)
    assert lo3[0] < lo[0] and hi3[0] > hi[0]


def test_funnel_limits_exact_binomial_small_n() -> None:
    """n = 10, p0 = 0.6, lower 2.5 %: F(2) = 0.01229, F(3) = 0.05476, so r = 3,
    α = (0.05476 - 0.025) / (0.05476 - 0.01229) = 0.7007, limit = (3 - 0.7007) / 10."""
    lo, _ = funnel_limits(0.6, np.array([10.0]), 0.95)
    f2, f3 = stats.binom.cdf(2, 10, 0.6), stats.binom.cdf(3, 10, 0.6)
    assert float(lo[0]) == pytest.approx((3 - (f3 - 0.025) / (f3 - f2)) / 10)


def test_logistic_fit_matches_statsmodels() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(3000), rng.normal(size=(3000, 3))])
    y = (rng.random(3000) < 1 / (1 + np.exp(-(x @ [0.2, 1.0, -0.5, 0.3])))).astype(float)
    beta, cov, ok = logistic_fit(x, y)
    ref = sm.Logit(y, x).fit(disp=0, method="newton")
    assert ok
    np.testing.assert_allclose(beta, ref.params, rtol=1e-7)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), ref.bse, rtol=1e-6)


def test_weighted_difference_matches_statsmodels_wls_hc1() -> None:
    rng = np.random.default_rng(1)
    t = rng.random(500) < 0.4
    y = rng.normal(size=500) + 2 * t
    w = rng.uniform(0.2, 4, 500)
    m1, m0, diff, se = weighted_difference(y, t, w)
    x = np.column_stack([np.ones(500), t.astype(float)])
    ref = sm.WLS(y, x, weights=w).fit(cov_type="HC1")
    assert diff == pytest.approx(ref.params[1], rel=1e-10)
    assert se == pytest.approx(ref.bse[1], rel=1e-10)
    assert m1 == pytest.approx(np.average(y[t], weights=w[t]))
    assert m0 == pytest.approx(np.average(y[~t], weights=w[~t]))


def test_logistic_fit_fe_matches_statsmodels_with_group_dummies() -> None:
    rng = np.random.default_rng(7)
    n, groups = 4000, 12
    g = rng.integers(0, groups, n)
    x = rng.normal(size=(n, 2))
    eta = x @ [0.8, -0.4] + np.linspace(-1, 1, groups)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    beta, gamma, ok = logistic_fit_fe(x, g, y)
    dense = np.column_stack([x, np.eye(groups)[g]])
    ref = sm.Logit(y, dense).fit(disp=0, method="newton")
    assert ok
    np.testing.assert_allclose(beta, ref.params[:2], rtol=1e-7)
    np.testing.assert_allclose(gamma, ref.params[2:], rtol=1e-6, atol=1e-9)
