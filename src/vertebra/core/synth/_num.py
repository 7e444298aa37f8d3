"""Small vectorised numeric helpers shared by the generator (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
DateArray = npt.NDArray[np.datetime64]


def sigmoid(x: FloatArray) -> FloatArray:
    """Logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-x))


def norm_cdf(x: FloatArray) -> FloatArray:
    """Standard normal CDF, elementwise, absolute error < 2e-7.

    Abramowitz & Stegun 7.1.26 for erf; used instead of scipy so the core needs only numpy.
    """
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def weighted_choice(
    rng: np.random.Generator, weights: Mapping[str, float] | Sequence[float], n: int
) -> IntArray:
    """Draw n indices with probabilities proportional to `weights` (a mapping keeps its order)."""
    w = np.asarray(list(weights.values()) if isinstance(weights, Mapping) else weights, float)
    return rng.choice(len(w), size=n, p=w / w.sum()).astype(np.int64)


def add_months(days: DateArray, months: int) -> DateArray:
    """Vectorised calendar-month addition, clamped to month end (as vertebra.core.schedule)."""
    start_month = days.astype("datetime64[M]")
    day0 = (days - start_month.astype("datetime64[D]")).astype(np.int64)
    target = start_month + np.timedelta64(months, "M")
    length = (
        (target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")
    ).astype(np.int64)
    return target.astype("datetime64[D]") + np.minimum(day0, length - 1).astype("timedelta64[D]")


def solve_logit_intercept(eta: FloatArray, target: float, iterations: int = 50) -> float:
    """The intercept a with mean(sigmoid(a + eta)) == target (bisection; eta: per-row offsets).

    Used to keep a marginal rate (e.g. 72% completeness) exact while covariates move it between
    patients. `target` must lie strictly between 0 and 1.
    """
    lo, hi = -20.0, 20.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if float(sigmoid(mid + eta).mean()) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def round_clip(x: FloatArray, lo: float, hi: float) -> FloatArray:
    """Round half to even and clip into [lo, hi] (item codes, NRS points)."""
    return np.clip(np.rint(x), lo, hi)
