"""Vectorised ODI scoring for large arrays (synthetic cohorts, benchmarks, analytics).

`score_odi_matrix` gives exactly the scalar scorer's result for every row; a hypothesis test
proves it. It reads the missing-section limit and rounding from the same definition file.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vertebra.core.instruments.model import InvalidAnswerError
from vertebra.core.instruments.registry import get_definition
from vertebra.core.instruments.scoring import ODI_MAX_SECTION


def score_odi_matrix(responses: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Score an n x 10 array of ODI section answers (0-5, NaN = missing).

    Returns a float64 array of n index scores; NaN where the row has more missing sections than
    the definition allows. Raises InvalidAnswerError naming the first bad row, section and
    value if any non-NaN entry is not an integer 0-5, or if the shape is not (n, 10).
    """
    defn = get_definition("odi")
    arr = np.asarray(responses, dtype=np.float64)
    n_items = len(defn.items)
    if arr.ndim != 2 or arr.shape[1] != n_items:
        raise InvalidAnswerError(f"odi: expected an array of shape (n, {n_items}), got {arr.shape}")
    missing = np.isnan(arr)
    _check_codes(arr, missing, defn.item_ids)
    answered = n_items - missing.sum(axis=1)
    raw = np.where(missing, 0.0, arr).sum(axis=1)
    decimals: int = defn.scoring.params["decimals"]
    max_missing: int = defn.scoring.params["max_missing"]
    scale = 10.0**decimals
    ok = (n_items - answered) <= max_missing
    with np.errstate(divide="ignore", invalid="ignore"):
        # Same formula as the scalar scorer: half-up rounding of 100*raw/(5*answered). The
        # quotient of two small exact integers is correctly rounded, and a true tie k+0.5 is
        # exactly representable, so floor(x + 0.5) matches the integer arithmetic.
        scaled = (100.0 * scale * raw) / (ODI_MAX_SECTION * answered)
        scores = np.floor(scaled + 0.5) / scale
    return np.where(ok, scores, np.nan)


def _check_codes(
    arr: npt.NDArray[np.float64], missing: npt.NDArray[np.bool_], ids: tuple[str, ...]
) -> None:
    """Raise InvalidAnswerError for the first entry that is neither NaN nor an integer 0-5."""
    bad = ~missing & ((arr < 0) | (arr > ODI_MAX_SECTION) | (arr != np.floor(arr)))
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise InvalidAnswerError(
            f"odi item {ids[col]!r} (row {row}, column {col}): {arr[row, col]!r} is not allowed; "
            f"allowed values: 0, 1, 2, 3, 4, 5 (or NaN for missing)"
        )
