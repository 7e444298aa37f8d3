"""Facts schema: validation errors name the path and what is allowed; the JSON Schema agrees."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from vertebra.core.screening import (
    InvalidFactsError,
    evaluate,
    facts_json_schema,
    load_ruleset,
    validate_facts,
)


@pytest.mark.parametrize(
    ("facts", "path", "fragment"),
    [
        ({"agee": 40}, "agee", "unknown fact; allowed: age, pain_duration_months"),
        ({"startback_risk": "high"}, "startback_risk", "computed by the engine"),
        ({"findings": {"modic": 3}}, "findings.modic", "unknown fact; allowed: severe_deformity"),
        ({"age": "52"}, "age", "whole number from 0 to 120"),
        ({"age": 52.5}, "age", "whole number from 0 to 120"),
        ({"age": True}, "age", "whole number"),
        ({"age": -1}, "age", "whole number from 0 to 120"),
        ({"age": 121}, "age", "whole number from 0 to 120"),
        ({"pain_duration_months": -0.5}, "pain_duration_months", "number at least 0"),
        ({"pain_duration_months": math.nan}, "pain_duration_months", "number at least 0"),
        ({"pain_duration_months": math.inf}, "pain_duration_months", "number at least 0"),
        ({"pain_duration_months": False}, "pain_duration_months", "number"),
        ({"conservative_care_failed": "yes"}, "conservative_care_failed", "true or false"),
        ({"conservative_care_failed": 1}, "conservative_care_failed", "true or false"),
        ({"general_health": "excellent"}, "general_health", "one of good, fair, poor"),
        ({"red_flags": "fever"}, "red_flags", "list of ids"),
        ({"red_flags": ["fever", "headache"]}, "red_flags[1]", "unknown id 'headache'"),
        ({"red_flags": ["fever", "fever"]}, "red_flags[1]", "duplicate id 'fever'"),
        ({"diagnoses": ["back_pain"]}, "diagnoses[0]", "allowed: degenerative_disc_disease"),
        ({"findings": [1]}, "findings", "must be an object"),
        ({"findings": {"modic_type": 4}}, "findings.modic_type", "from 0 to 3"),
        (
            {"findings": {"modified_pfirrmann_grade": 0}},
            "findings.modified_pfirrmann_grade",
            "from 1 to 8",
        ),
        (
            {"findings": {"spondylolisthesis_grade": 6}},
            "findings.spondylolisthesis_grade",
            "0 to 5",
        ),
        ({"findings": {"severe_deformity": "no"}}, "findings.severe_deformity", "true or false"),
        ({"startback": [0] * 8}, "startback", "list of 9 answers"),
        ({"startback": [0] * 10}, "startback", "list of 9 answers"),
        ({"startback": [0, 0, 2, 0, 0, 0, 0, 0, 0]}, "startback[2]", "item 3 must be"),
        ({"startback": [0] * 8 + [5]}, "startback[8]", "item 9 must be a whole number from 0 to 4"),
        ({"startback": [0] * 8 + [True]}, "startback[8]", "item 9"),
    ],
)
def test_invalid_facts_name_the_path(facts: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(InvalidFactsError) as caught:
        evaluate(facts)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize("facts", [[], "age=52", None, 52])
def test_facts_must_be_an_object(facts: Any) -> None:
    with pytest.raises(InvalidFactsError, match="facts must be a JSON object"):
        evaluate(facts)


def test_invalid_facts_error_is_a_value_error() -> None:
    assert issubclass(InvalidFactsError, ValueError)


def test_values_are_normalised() -> None:
    known = validate_facts(
        {
            "age": 52.0,
            "pain_duration_months": 7.5,
            "red_flags": [],
            "findings": {"modic_type": 2.0, "severe_deformity": None},
            "startback": [1.0, 0, 0, 0, 0, 0, 0, 0, 3],
            "general_health": None,
        },
        load_ruleset(),
    )
    assert known == {
        "age": 52,
        "pain_duration_months": 7.5,
        "red_flags": (),
        "findings.modic_type": 2,
        "startback": (1, 0, 0, 0, 0, 0, 0, 0, 3),
    }
    assert type(known["age"]) is int


def test_findings_null_is_unknown() -> None:
    assert validate_facts({"findings": None}, load_ruleset()) == {}


# --- JSON Schema -------------------------------------------------------------------------------


def test_json_schema_lists_every_input_fact() -> None:
    schema = facts_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert list(properties) == [
        "age",
        "pain_duration_months",
        "conservative_care_months",
        "conservative_care_failed",
        "wants_to_avoid_surgery",
        "general_health",
        "understands_variable_results",
        "red_flags",
        "diagnoses",
        "imaging",
        "worse_pain",
        "inflammatory_features",
        "pregnancy",
        "blood_thinners",
        "bleeding_disorder",
        "findings",
        "startback",
    ]
    assert properties["age"]["type"] == ["integer", "null"]
    assert (properties["age"]["minimum"], properties["age"]["maximum"]) == (0, 120)
    assert properties["general_health"]["enum"] == ["good", "fair", "poor", None]
    flags = [entry["const"] for entry in properties["red_flags"]["items"]["oneOf"]]
    assert flags == [flag.id for flag in load_ruleset().red_flags]
    findings = properties["findings"]
    assert findings["additionalProperties"] is False
    assert findings["properties"]["modic_type"]["maximum"] == 3
    startback = properties["startback"]
    assert startback["minItems"] == 9 and startback["items"] is False
    assert len(startback["prefixItems"]) == 9
    json.dumps(schema)  # serialisable


def test_json_schema_describes_each_fact_with_its_question() -> None:
    properties = facts_json_schema()["properties"]
    assert isinstance(properties, dict)
    for key, prop in properties.items():
        assert prop["title"], key
        if key != "findings":
            assert prop["description"], key


def _conforms(value: Any, schema: dict[str, Any]) -> bool:
    """A tiny JSON Schema checker for the keywords facts_json_schema uses (no extra deps)."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if "oneOf" in schema and sum(_conforms(value, s) for s in schema["oneOf"]) != 1:
        return False
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        kinds = {
            "null": value is None,
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list),
            "object": isinstance(value, dict),
        }
        if not any(kinds[t] for t in types):
            return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return False
        if schema.get("uniqueItems") and len(set(map(json.dumps, value))) != len(value):
            return False
        prefix = schema.get("prefixItems", [])
        if schema.get("items") is False and len(value) > len(prefix):
            return False
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else schema.get("items")
            if isinstance(sub, dict) and not _conforms(item, sub):
                return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(_conforms(v, props[k]) for k, v in value.items() if k in props)
    return True


@pytest.mark.parametrize(
    "facts",
    [
        {"age": 121},
        {"red_flags": ["fever", "fever"]},
        {"findings": {"modic": 1}},
        {"startback": [0] * 8 + [5]},
        {"startback": [0] * 10},
        {"general_health": "great"},
        {"unknown": 1},
    ],
)
def test_json_schema_rejects_what_the_validator_rejects(facts: dict[str, Any]) -> None:
    assert not _conforms(facts, facts_json_schema())
    with pytest.raises(InvalidFactsError):
        validate_facts(facts, load_ruleset())


def test_json_schema_accepts_the_examples() -> None:
    from tests.core.test_screening import EXAMPLES

    for path in sorted(EXAMPLES.glob("*.json")):
        assert _conforms(json.loads(path.read_text(encoding="utf-8")), facts_json_schema()), path
