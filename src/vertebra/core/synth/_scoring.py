"""Bridges from the generator's arrays to the core scorers.

Scores are never computed here from first principles: the STarT Back risk group and the PROMIS
T-scores are looked up in tables built by calling the scalar core scorer once for every possible
answer pattern (1,280 STarT Back patterns, 17 PROMIS raw sums), and ODI uses the core vectorised
scorer. A generated questionnaire therefore always re-scores to its stored score.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from vertebra.core.instruments import get_definition, score, score_odi_matrix
from vertebra.core.synth._num import FloatArray, IntArray

__all__ = ["STARTBACK_GROUPS", "odi_scores", "promis_t", "startback_groups"]

#: Risk groups in code order (the `startback_risk` column is a categorical with these).
STARTBACK_GROUPS = ("low", "medium", "high")


@cache
def _startback_table() -> tuple[IntArray, IntArray]:
    """(total, group code) for every pattern index = 8 binary items as bits + 256 x item 9."""
    defn = get_definition("startback")
    ids = [item.id for item in defn.items]
    totals = np.zeros(256 * 5, dtype=np.int64)
    groups = np.zeros(256 * 5, dtype=np.int64)
    for bother in range(5):
        for bits in range(256):
            answers = {ids[k]: (bits >> k) & 1 for k in range(8)}
            answers[ids[8]] = bother
            result = score("startback", answers)
            idx = bother * 256 + bits
            totals[idx] = int(result.score or 0)
            groups[idx] = STARTBACK_GROUPS.index(str(result.band))
    return totals, groups


def startback_groups(items: IntArray) -> tuple[IntArray, IntArray]:
    """Total score and risk-group code (index into STARTBACK_GROUPS) for an n x 9 answer array."""
    weights = (1 << np.arange(8)).astype(np.int64)
    idx = items[:, :8] @ weights + 256 * items[:, 8]
    totals, groups = _startback_table()
    return totals[idx], groups[idx]


@cache
def _promis_table(instrument_id: str) -> FloatArray:
    """T-score by raw sum (index 0..20; entries below 4 are NaN), via the scalar scorer."""
    n_items = len(get_definition(instrument_id).items)
    table = np.full(5 * n_items + 1, np.nan)
    for raw in range(n_items, 5 * n_items + 1):
        # Any answers with this raw sum: fill items greedily from 1 upwards.
        rest = raw - n_items
        answers = []
        for _ in range(n_items):
            step = min(4, rest)
            answers.append(1 + step)
            rest -= step
        result = score(instrument_id, answers)
        table[raw] = float(result.score) if result.score is not None else np.nan
    return table


def promis_t(instrument_id: str, raw: IntArray) -> FloatArray:
    """T-scores for complete raw sums (all items answered) of a PROMIS short form."""
    return _promis_table(instrument_id)[raw]


def odi_scores(items: FloatArray) -> FloatArray:
    """ODI index for an n x 10 float array (NaN = missing section), by the core scorer."""
    return score_odi_matrix(items)
