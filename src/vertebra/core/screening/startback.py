"""STarT Back risk group for screening. The scoring itself belongs to the instruments package
(``vertebra/data/instruments/startback.yaml``), so the thresholds live in one place only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

from vertebra.core.instruments import score
from vertebra.core.screening.model import StartBackResult

RISK_GROUPS = ("low", "medium", "high")


def startback_risk(answers: Sequence[int]) -> StartBackResult:
    """Score 9 STarT Back answers in questionnaire order (items 1-8 coded 0/1, item 9 0-4).

    The facts validator has already checked the answers, so an unscored or unbanded result here
    would be a disagreement between the two schemas: it raises ``ValueError`` rather than
    silently dropping the risk group.
    """
    result = score("startback", list(answers))
    subscale = result.extras.get("psychosocial_subscale")
    if result.score is None or result.band not in RISK_GROUPS or not isinstance(subscale, int):
        raise ValueError(f"STarT Back answers could not be scored: {result.to_dict()}")
    risk = cast(Literal["low", "medium", "high"], result.band)
    return StartBackResult(risk_group=risk, total=int(result.score), subscale=subscale)
