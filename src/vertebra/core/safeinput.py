"""Hostile-input guards shared by the API, the portal and the CLI (pure: no Django, no I/O).

* :func:`load_json` parses JSON from bytes or text and refuses what a parser should never be
  asked to build: bytes that are not UTF-8, NaN/Infinity, and nesting deeper than
  :data:`MAX_JSON_DEPTH` (Python's parser recurses per level, so a few thousand ``[`` would
  otherwise end in ``RecursionError`` and a 500 or a traceback). Every refusal is a
  :class:`JsonInputError` (a ``ValueError``) with one plain sentence.
* :func:`neutralise_cell` makes a value safe to write into a CSV cell that a spreadsheet may
  open: text starting with ``= + - @`` (or a tab or carriage return) is prefixed with ``'`` so it
  is shown as text and never evaluated as a formula (OWASP "CSV Injection"). Numbers are left
  alone, so a negative number stays a number.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "FORMULA_TRIGGERS",
    "MAX_JSON_DEPTH",
    "JsonInputError",
    "json_depth",
    "json_text_depth",
    "load_json",
    "neutralise_cell",
    "neutralise_frame",
]

#: Deepest nesting of arrays/objects accepted. Real documents here (screening facts, API
#: bodies, FHIR resources) stay under 12; 64 leaves room and stays far from recursion limits.
MAX_JSON_DEPTH = 64

#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV Injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class JsonInputError(ValueError):
    """The input is not acceptable JSON; ``str()`` is one sentence safe to show the sender."""


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not allowed in JSON")


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted without recursion;
    stops counting once ``limit`` is exceeded and returns ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


#: A JSON string literal (escapes included); the unrolled form never backtracks.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
#: Everything of JSON text that is not a bracket (once the strings are gone).
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: An innermost (empty) array or object, once everything but brackets is gone.
_INNERMOST = re.compile(r"\[\]|\{\}")


def json_text_depth(text: str, limit: int) -> int:
    """Nesting depth of *well-formed* JSON ``text`` (a scalar is 0), read off the text without
    building anything; stops once ``limit`` is exceeded and returns ``limit + 1``.

    Equal to :func:`json_depth` of the parsed value (property-tested), but each step is a
    C-speed regular-expression pass: strings are removed (their brackets are not structure),
    then everything but brackets, then every innermost ``[]``/``{}`` pair at once, one pass a
    level, so a depth ``d`` costs ``d`` passes over the brackets. Only meaningful for text
    ``json.loads`` accepted (unbalanced brackets give a meaningless number).
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    while brackets:
        if depth == limit:
            return limit + 1
        brackets = _INNERMOST.sub("", brackets)
        depth += 1
    return depth


def _deeper_than(text: str, value: Any, limit: int) -> bool:
    """Whether the parsed ``value`` of ``text`` nests deeper than ``limit``. Cheap first: the
    depth cannot exceed the number of opening brackets (those inside strings included), two
    C-speed counts that settle nearly every real document (a FHIR resource has a few dozen);
    else the depth read off the text (:func:`json_text_depth`). The Python walk of the value
    (:func:`json_depth`) was 15 % of a bulk FHIR import's reading (ADR 0016)."""
    if not isinstance(value, dict | list):
        return False
    if text.count("[") + text.count("{") <= limit:
        return False
    return json_text_depth(text, limit) > limit


def load_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``data`` (UTF-8 bytes or text) as strict JSON no deeper than ``max_depth``.

    Raises JsonInputError naming the problem: not UTF-8, not JSON (with line and column),
    NaN/Infinity, or nested too deeply.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError(
                f"the content is not UTF-8 text (byte {exc.start + 1} is invalid)"
            ) from None
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write; not part of the JSON
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels") from None
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if _deeper_than(text, value, max_depth):
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels")
    return value


def neutralise_cell(value: Any) -> Any:
    """``value`` made safe for a CSV cell: formula-like text gets a leading ``'``; anything
    that is not text (numbers, dates, missing values) is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def neutralise_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame whose text cells went through :func:`neutralise_cell`
    (only object/string columns are touched; numbers, dates and booleans keep their type)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype).startswith("string"):
            out[column] = out[column].map(neutralise_cell, na_action="ignore")
    return out
