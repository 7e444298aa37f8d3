"""The JSON nesting guard: the depth read off the text equals the depth of the parsed value,
and ``load_json`` still refuses nesting deeper than ``MAX_JSON_DEPTH`` with one sentence.

Requirement ids: issue 14 "hostile input" (deep nesting refused), issue 16 (import speed: the
guard is read off the text, ADR 0016).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.safeinput import (
    MAX_JSON_DEPTH,
    JsonInputError,
    json_depth,
    json_text_depth,
    load_json,
)

#: Strings full of what a text scan could mistake for structure: brackets, quotes, escapes.
TRICKY = st.text(alphabet='[]{}"\\ ,:abc\n\t\u00e9\u2028', max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=40,
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.booleans(), st.integers(min_value=0, max_value=12))
def test_text_depth_equals_the_parsed_depth(value: object, ascii_only: bool, limit: int) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=None if limit % 2 else 1)
    assert json_text_depth(text, limit) == json_depth(value, limit)
    assert json_text_depth(text, 64) == json_depth(value, 64)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[{{{"', 0),
        ("[]", 1),
        ("[[]]", 2),
        ('{"a": [{"b": "]]]}}}\\"[["}]}', 3),
        ('["\\\\", ["\\"]"]]', 2),
        ("[" * 64 + "]" * 64, 64),
    ],
)
def test_text_depth_examples(text: str, depth: int) -> None:
    assert json_text_depth(text, MAX_JSON_DEPTH) == depth
    assert json_depth(json.loads(text), MAX_JSON_DEPTH) == depth


@pytest.mark.parametrize(
    "text",
    [
        "[" * 65 + "]" * 65,
        '{"a": ' + "[" * 70 + "1" + "]" * 70 + "}",
        '{"age": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError in the parser
    ],
    ids=["65", "70-in-object", "100000"],
)
def test_load_json_refuses_deep_nesting(text: str) -> None:
    with pytest.raises(JsonInputError, match="nested deeper than 64 levels"):
        load_json(text)
    with pytest.raises(JsonInputError, match="nested deeper than 64 levels"):
        load_json(text.encode())


def test_load_json_accepts_64_levels_and_strings_that_look_deep() -> None:
    assert load_json("[" * 64 + "]" * 64) is not None
    assert load_json('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}
    with pytest.raises(JsonInputError, match="nested deeper than 3 levels"):
        load_json("[[[[]]]]", max_depth=3)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.integers(min_value=0, max_value=6))
def test_load_json_refuses_exactly_what_is_deeper_than_the_limit(value: object, limit: int) -> None:
    text = json.dumps(value)
    if json_depth(value, limit) > limit:
        with pytest.raises(JsonInputError, match=f"nested deeper than {limit} levels"):
            load_json(text, max_depth=limit)
    else:
        assert load_json(text, max_depth=limit) == value
