"""The cache of validated nested elements (``vertebra.core.fhir.validate``) changes nothing but
speed: every resource of a sample export, and thousands of broken variants of them (an element
removed, nulled, of the wrong type, an unknown element added, a null in a list, a bad date),
get the same verdict and the same message with the cache warm as without it.

Requirement ids: issue 16 (import speed; every refusal kept), ADR 0016. The sample is one
resource of each kind from a ``load_cohort`` export (synthetic people).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vertebra.core.fhir import FhirValidationError, validate
from vertebra.core.fhir.validate import validate_resource

SAMPLE = Path(__file__).parent / "data" / "validate_sample.ndjson"
RESOURCES = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _verdict(resource: dict[str, Any], cached: bool) -> str:
    validate.cache_enabled = cached
    try:
        validate_resource(copy.deepcopy(resource))
    except FhirValidationError as exc:
        return str(exc)
    finally:
        validate.cache_enabled = True
    return "valid"


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*path, index)
            yield from _paths(child, (*path, index))


def _broken(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Variants of ``resource`` with one thing wrong (or harmlessly changed) at each path."""
    for path in _paths(resource):
        *parent_path, last = path
        for change in ("drop", "null", "type", "unknown", "date", "null-in-list"):
            variant = copy.deepcopy(resource)
            parent = variant
            for step in parent_path:
                parent = parent[step]
            value = parent[last]
            if change == "drop":
                del parent[last]
            elif change == "null":
                parent[last] = None
            elif change == "type":
                parent[last] = 7 if isinstance(value, str) else "seven"
            elif change == "unknown" and isinstance(value, dict):
                value["bogusElement"] = "x"
            elif change == "date" and isinstance(value, str) and value[:2] in ("19", "20"):
                parent[last] = value.replace("-", "/", 1)
            elif change == "null-in-list" and isinstance(value, list):
                value.append(None)
            else:
                continue
            yield variant


@pytest.mark.parametrize("resource", RESOURCES, ids=[r["id"] for r in RESOURCES])
def test_same_verdict_and_message_with_and_without_the_cache(resource: dict[str, Any]) -> None:
    assert _verdict(resource, cached=True) == "valid"  # warms the cache with its elements
    refused = 0
    for variant in _broken(resource):
        warm = _verdict(variant, cached=True)
        assert warm == _verdict(variant, cached=False)
        assert _verdict(variant, cached=True) == warm  # and again, from a warmer cache
        refused += warm != "valid"
    assert refused > 10  # the variants do exercise refusals


def test_the_cache_is_used() -> None:
    validate._NESTED.clear()
    for resource in RESOURCES:
        validate_resource(resource)
    assert validate._nested_cache() is True
    assert len(validate._NESTED) > len(RESOURCES)
