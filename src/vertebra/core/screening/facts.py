"""The facts schema: validate input facts and publish the same schema as JSON Schema.

Both come from the rule set's ``facts`` section, so a new fact or a changed range is a data
change. Every fact is optional; an absent key or ``null`` means "unknown" (web forms send
``null`` for unanswered questions). An empty list is a *known* answer: ``red_flags: []`` means
"none of the red flags", which is different from not having asked.

Numbers follow JSON semantics: ``52.0`` is accepted as the integer 52, booleans are never numbers,
and NaN or infinity is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

from vertebra.core.screening.model import InvalidFactsError
from vertebra.core.screening.ruleset import (
    CatalogueEntry,
    FactSpec,
    RedFlag,
    Ruleset,
    load_ruleset,
)

STARTBACK_ITEMS = 9
#: Items 1-8 are agree/disagree (0/1); item 9 (bothersomeness) has 5 options coded 0-4.
STARTBACK_ITEM9_MAX = 4

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def validate_facts(facts: object, ruleset: Ruleset) -> dict[str, object]:
    """Check ``facts`` against the schema and return the known ones, flattened by path.

    The result maps paths (``age``, ``findings.modic_type``) to normalised values: integers as
    ``int``, lists as tuples. Unknown facts (absent or ``null``) are left out.

    Raises :class:`InvalidFactsError` naming the first bad key or path and what is allowed.
    """
    if not isinstance(facts, Mapping):
        raise InvalidFactsError("", f"facts must be a JSON object, got {_kind(facts)}")
    specs = {spec.key: spec for spec in ruleset.facts}
    _reject_unknown_keys(cast(Mapping[object, object], facts), specs, "")
    known: dict[str, object] = {}
    for spec in ruleset.facts:
        value = facts.get(spec.key)
        if value is not None:
            _validate(spec, value, ruleset, known)
    return known


def facts_json_schema(ruleset: Ruleset | None = None) -> dict[str, object]:
    """Return a JSON Schema (draft 2020-12) of the facts accepted by ``evaluate``.

    It is generated from the same rule-set data the validator uses, so the two cannot drift.
    """
    ruleset = ruleset or load_ruleset()
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Vertebra screening facts",
        "description": (
            f"Facts for rule set {ruleset.id} {ruleset.version}. Every fact is optional; an absent "
            "key or null means unknown. An empty list is a known answer (none)."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            spec.key: _schema_for(spec, ruleset) for spec in ruleset.facts if not spec.derived
        },
    }


# --- validation ------------------------------------------------------------------------------


def _reject_unknown_keys(
    data: Mapping[object, object], specs: Mapping[str, FactSpec], parent: str
) -> None:
    allowed = [key for key, spec in specs.items() if not spec.derived]
    for key in data:
        path = f"{parent}.{key}" if parent else str(key)
        spec = specs.get(key) if isinstance(key, str) else None
        if spec is not None and spec.derived:
            raise InvalidFactsError(path, "is computed by the engine and cannot be supplied")
        if spec is None:
            raise InvalidFactsError(path, f"unknown fact; allowed: {', '.join(allowed)}")


def _validate(spec: FactSpec, value: object, ruleset: Ruleset, known: dict[str, object]) -> None:
    """Validate one non-null value and store it (or, for an object, its fields) in ``known``."""
    if spec.derived:
        return  # rejected earlier; kept for safety if called directly
    if spec.type == "object":
        _validate_object(spec, value, ruleset, known)
    elif spec.type == "integer":
        known[spec.path] = _integer(spec, value)
    elif spec.type == "number":
        known[spec.path] = _number(spec, value)
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            raise InvalidFactsError(spec.path, f"must be true or false, got {_kind(value)}")
        known[spec.path] = value
    elif spec.type == "enum":
        if value not in spec.values:
            raise InvalidFactsError(
                spec.path, f"must be one of {', '.join(spec.values)}, got {value!r}"
            )
        known[spec.path] = value
    elif spec.type == "id_list":
        known[spec.path] = _id_list(spec, value, ruleset)
    elif spec.type == "startback_answers":
        known[spec.path] = _startback_answers(spec, value)
    else:  # pragma: no cover - the rule-set parser refuses other types
        raise AssertionError(spec.type)


def _validate_object(
    spec: FactSpec, value: object, ruleset: Ruleset, known: dict[str, object]
) -> None:
    if not isinstance(value, Mapping):
        raise InvalidFactsError(spec.path, f"must be an object, got {_kind(value)}")
    fields = {field.key: field for field in spec.fields}
    _reject_unknown_keys(cast(Mapping[object, object], value), fields, spec.path)
    for field in spec.fields:
        item = value.get(field.key)
        if item is not None:
            _validate(field, item, ruleset, known)


def _as_int(value: object) -> int | None:
    """Return ``value`` as an int if it is an integral JSON number (not a boolean), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _range_text(spec: FactSpec) -> str:
    if spec.maximum is None:
        return f"at least {_fmt(spec.minimum)}" if spec.minimum is not None else "any value"
    return f"from {_fmt(spec.minimum)} to {_fmt(spec.maximum)}"


def _in_range(spec: FactSpec, number: float) -> bool:
    low_ok = spec.minimum is None or number >= spec.minimum
    return low_ok and (spec.maximum is None or number <= spec.maximum)


def _integer(spec: FactSpec, value: object) -> int:
    number = _as_int(value)
    if number is None or not _in_range(spec, number):
        raise InvalidFactsError(
            spec.path, f"must be a whole number {_range_text(spec)}, got {_show(value)}"
        )
    return number


def _number(spec: FactSpec, value: object) -> float | int:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not _in_range(spec, cast(float, value)):
        raise InvalidFactsError(
            spec.path, f"must be a number {_range_text(spec)}, got {_show(value)}"
        )
    return cast(float | int, value)


def _id_list(spec: FactSpec, value: object, ruleset: Ruleset) -> tuple[str, ...]:
    allowed = ruleset.catalogue_ids(spec.catalogue or "")
    if not isinstance(value, list | tuple):
        raise InvalidFactsError(
            spec.path, f"must be a list of ids (empty for none), got {_kind(value)}"
        )
    for index, item in enumerate(value):
        if item not in allowed:
            raise InvalidFactsError(
                f"{spec.path}[{index}]", f"unknown id {item!r}; allowed: {', '.join(allowed)}"
            )
        if item in value[:index]:
            raise InvalidFactsError(f"{spec.path}[{index}]", f"duplicate id {item!r}")
    return tuple(cast(list[str], list(value)))


def _startback_answers(spec: FactSpec, value: object) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or len(value) != STARTBACK_ITEMS:
        raise InvalidFactsError(
            spec.path,
            f"must be a list of {STARTBACK_ITEMS} answers (items 1-8 coded 0 or 1, item 9 coded "
            f"0-{STARTBACK_ITEM9_MAX}), got {_show(value)}",
        )
    answers: list[int] = []
    for index, item in enumerate(value):
        top = STARTBACK_ITEM9_MAX if index == STARTBACK_ITEMS - 1 else 1
        number = _as_int(item)
        if number is None or not 0 <= number <= top:
            raise InvalidFactsError(
                f"{spec.path}[{index}]",
                f"item {index + 1} must be a whole number from 0 to {top}, got {_show(item)}",
            )
        answers.append(number)
    return tuple(answers)


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt(number: float | None) -> str:
    return "" if number is None else f"{number:g}"


# --- JSON Schema -----------------------------------------------------------------------------


def _schema_for(spec: FactSpec, ruleset: Ruleset) -> dict[str, object]:
    """JSON Schema of one fact; ``null`` is always allowed (unknown)."""
    schema: dict[str, object] = {"title": spec.label}
    if spec.question:
        schema["description"] = spec.question
    if spec.type in ("integer", "number", "boolean"):
        schema["type"] = [spec.type, "null"]
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    elif spec.type == "enum":
        schema["enum"] = [*spec.values, None]
        if spec.value_labels:
            schema["oneOf"] = [
                *(
                    {"const": v, "title": t}
                    for v, t in zip(spec.values, spec.value_labels, strict=True)
                ),
                {"const": None, "title": "Unknown"},
            ]
    elif spec.type == "id_list":
        entries = ruleset.catalogue(spec.catalogue or "")
        schema.update(
            type=["array", "null"],
            uniqueItems=True,
            items={"oneOf": [_const(entry) for entry in entries]},
        )
    elif spec.type == "object":
        schema.update(
            type=["object", "null"],
            additionalProperties=False,
            properties={field.key: _schema_for(field, ruleset) for field in spec.fields},
        )
    elif spec.type == "startback_answers":
        binary: dict[str, object] = {"enum": [0, 1]}
        item9: dict[str, object] = {"type": "integer", "minimum": 0, "maximum": STARTBACK_ITEM9_MAX}
        schema.update(
            type=["array", "null"],
            prefixItems=[binary] * (STARTBACK_ITEMS - 1) + [item9],
            items=False,
            minItems=STARTBACK_ITEMS,
        )
    return schema


def _const(entry: RedFlag | CatalogueEntry) -> dict[str, object]:
    """``{"const": id, "title": label}`` for a catalogue entry (labels help form builders)."""
    schema: dict[str, object] = {"const": entry.id, "title": entry.label}
    if isinstance(entry, RedFlag):
        schema["description"] = f"category {entry.category}; leads to {entry.urgency}"
    return schema
