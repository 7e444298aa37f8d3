"""Validate answers against a definition, and parse answers typed as text (CLI, CSV, forms)."""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from vertebra.core.instruments.model import (
    Answer,
    InstrumentDefinition,
    InvalidAnswerError,
    Item,
)

Answers = Mapping[str, Any] | Sequence[Any]

_YES = frozenset({"yes", "y", "true", "t"})
_NO = frozenset({"no", "n", "false", "f"})


def normalise_answers(defn: InstrumentDefinition, answers: Answers) -> tuple[Answer, ...]:
    """Return one validated answer per item, in item order (None = missing).

    `answers` is either a mapping item_id -> value (absent ids are missing) or a sequence in
    item order of exactly one value per item. Float NaN is read as missing, so rows coming from
    numpy or pandas work unchanged. Raises InvalidAnswerError naming the item and the allowed
    values for anything else that does not fit.
    """
    if isinstance(answers, Mapping):
        unknown = [k for k in answers if k not in defn.item_ids]
        if unknown:
            raise InvalidAnswerError(
                f"{defn.id}: unknown item id(s) {', '.join(map(repr, unknown))}; "
                f"items are: {', '.join(defn.item_ids)}"
            )
        values: Sequence[Any] = [answers.get(i) for i in defn.item_ids]
    elif isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
        raise InvalidAnswerError(
            f"{defn.id}: answers must be a mapping of item id to value or a sequence in item "
            f"order, got {type(answers).__name__}"
        )
    else:
        if len(answers) != len(defn.items):
            raise InvalidAnswerError(
                f"{defn.id}: expected {len(defn.items)} answers in item order "
                f"({', '.join(defn.item_ids)}), got {len(answers)}"
            )
        values = answers
    return tuple(check_answer(defn, item, v) for item, v in zip(defn.items, values, strict=True))


def check_answer(defn: InstrumentDefinition, item: Item, value: Any) -> Answer:
    """Validate one answer and return it in canonical form (int code, str code, float, None)."""
    if value is None or _is_nan(value):
        return None
    if item.type == "number":
        return _check_number(defn, item, value)
    codes = item.codes
    if isinstance(value, bool):
        # True/False are accepted only for yes/no items, where they cannot be misread.
        if set(codes) == {0, 1}:
            return int(value)
    elif isinstance(value, str):
        if value in codes:
            return value
    elif isinstance(value, numbers.Integral):
        if operator.index(value) in codes:
            return operator.index(value)
    elif isinstance(value, numbers.Real):
        # 3.0 from JSON or a float array means code 3.
        number = float(value)
        if number.is_integer() and int(number) in codes:
            return int(number)
    raise _invalid(defn, item, value)


def _is_nan(value: Any) -> bool:
    """True for any real NaN (float, numpy float32/64), which means "missing"."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and math.isnan(float(value))
    )


def _check_number(defn: InstrumentDefinition, item: Item, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(defn, item, value)
    number = float(value)
    lo = -math.inf if item.minimum is None else item.minimum
    hi = math.inf if item.maximum is None else item.maximum
    if not (math.isfinite(number) and lo <= number <= hi):
        raise _invalid(defn, item, value)
    return number


def _invalid(defn: InstrumentDefinition, item: Item, value: Any) -> InvalidAnswerError:
    return InvalidAnswerError(
        f"{defn.id} item {item.id!r}: {value!r} is not allowed; "
        f"allowed values: {item.allowed_description()} (or empty for missing)"
    )


def parse_answer_text(defn: InstrumentDefinition, item: Item, text: str) -> Answer:
    """Turn one answer typed as text into a validated answer.

    Empty text = missing. Choice items accept the option code or the option key; yes/no items
    (codes 0/1) also accept yes/no/y/n/true/false. Number items accept a decimal number.
    Raises InvalidAnswerError naming the item and the allowed values.
    """
    t = text.strip()
    if not t:
        return None
    low = t.lower()
    if item.type == "number":
        try:
            return check_answer(defn, item, float(t))
        except ValueError:
            raise _invalid(defn, item, t) from None
    if set(item.codes) == {0, 1}:
        if low in _YES:
            return 1
        if low in _NO:
            return 0
    for opt in item.options:
        if low == str(opt.code).lower() or (opt.key is not None and low == opt.key.lower()):
            return opt.code
    raise _invalid(defn, item, t)


def parse_answers_text(defn: InstrumentDefinition, texts: Sequence[str]) -> tuple[Answer, ...]:
    """Parse one text answer per item, in item order (e.g. from a comma-separated list).

    Trailing optional items may be left off (they are then missing): ``3,5,7`` is a complete
    PSFS response with three activities rated. Anything else must give one text per item.
    """
    n_given = len(texts)
    if n_given < len(defn.items) and all(it.optional for it in defn.items[n_given:]):
        texts = [*texts, *([""] * (len(defn.items) - n_given))]
    if len(texts) != len(defn.items):
        raise InvalidAnswerError(
            f"{defn.id}: expected {len(defn.items)} answers in item order "
            f"({', '.join(defn.item_ids)}), got {len(texts)}"
        )
    return tuple(parse_answer_text(defn, it, t) for it, t in zip(defn.items, texts, strict=True))
