"""Patient-reported outcome instruments: versioned definitions and exact scoring.

Public API::

    score(instrument_id, answers) -> ScoreResult
    list_instruments() -> tuple[InstrumentDefinition, ...]
    get_definition(instrument_id) -> InstrumentDefinition
    score_odi_matrix(array n x 10, NaN = missing) -> ndarray of scores (NaN = not scoreable)
    load_instrument_text(path) -> InstrumentDefinition     # a site's licensed wording
    parse_answers_text(defn, ["3", "", "yes", ...]) -> tuple of answers

Definitions are data (``vertebra/data/instruments/*.yaml``); this package holds no clinical
numbers of its own. Pure Python: no Django, no database, no network, no clock.
"""

from __future__ import annotations

from vertebra.core.instruments.answers import (
    Answers,
    normalise_answers,
    parse_answer_text,
    parse_answers_text,
)
from vertebra.core.instruments.model import (
    PLACEHOLDER_MARKER,
    Band,
    DefinitionError,
    InstrumentDefinition,
    InstrumentError,
    InstrumentTextError,
    InvalidAnswerError,
    Item,
    Licence,
    ResponseOption,
    ScoreResult,
    ScoringRule,
    UnknownInstrumentError,
)
from vertebra.core.instruments.registry import (
    ENV_TEXT_DIR,
    apply_text_overlay,
    clear_instrument_text,
    get_definition,
    list_instruments,
    load_instrument_text,
)
from vertebra.core.instruments.scoring import score_values
from vertebra.core.instruments.vectorised import score_odi_matrix

__all__ = [
    "ENV_TEXT_DIR",
    "PLACEHOLDER_MARKER",
    "Answers",
    "Band",
    "DefinitionError",
    "InstrumentDefinition",
    "InstrumentError",
    "InstrumentTextError",
    "InvalidAnswerError",
    "Item",
    "Licence",
    "ResponseOption",
    "ScoreResult",
    "ScoringRule",
    "UnknownInstrumentError",
    "apply_text_overlay",
    "clear_instrument_text",
    "get_definition",
    "list_instruments",
    "load_instrument_text",
    "parse_answer_text",
    "parse_answers_text",
    "score",
    "score_odi_matrix",
]


def score(instrument_id: str, answers: Answers) -> ScoreResult:
    """Score one response to `instrument_id`.

    `answers` is a mapping item_id -> value (absent = missing) or a sequence with one value per
    item in questionnaire order; None (or float NaN) = missing. Values are option codes (ints,
    or strings for named choices), or numbers for number items.

    Returns a ScoreResult; its `score` is None when the missing-item rule forbids a score.
    Raises UnknownInstrumentError for an unknown id and InvalidAnswerError (a ValueError) for
    out-of-range or wrong-type answers, naming the item and the allowed values.
    """
    defn = get_definition(instrument_id)
    return score_values(defn, normalise_answers(defn, answers))
