"""Validate resources against the FHIR R4 models of the ``fhir.resources`` library.

Why ``fhir.resources.R4B``: ``fhir.resources`` 8.x (pydantic 2, like the rest of Vertebra) ships
R5 as its default models and R4B (4.3.0) and STU3 as sub-packages; no 8.x release ships 4.0.1
itself, and the last releases that did (6.x) need pydantic 1. R4B is the R4 technical correction:
Patient, Condition, Procedure, Observation, QuestionnaireResponse, AdverseEvent,
MedicationStatement, Consent, Organization and BiologicallyDerivedProduct are not among the
parts R4B changed (medication definition, evidence, subscriptions: from the R4B release notes,
not re-read for this work, U), so a resource that validates against R4B is structurally R4.

What the models check: element names, types, cardinality, primitive formats (dates, ids, codes,
URIs) and required elements. They do not check terminology bindings or invariants (FHIRPath
rules), so the mapping's own tests check the codes it uses.

Speed (ADR 0016, issue 16): most of a resource's validation time is ``fhir_core``'s Python
validators run on every nested element (each Coding, Reference, Extension, meta). An export
repeats the same elements thousands of times (the same codes, the same extensions, the same
patient reference), and validating an element depends only on its model class and its value,
so :func:`_nested_cache` remembers the elements that validated and hands the validated element
back when the identical value comes again. Only successes are remembered: an element that
fails is validated afresh every time, so every refusal, and its message, is the library's own
(``tests/fhir/test_validate_cache.py`` compares them with and without the cache).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = ["FhirValidationError", "validate_resource"]


class FhirValidationError(ValueError):
    """A resource does not conform to the R4(B) model; the message names type, id and fields."""


#: The fhir_core release whose nested-element validator :func:`_nested_cache` wraps (another
#: release is used unwrapped: slower, never different).
FHIR_CORE_VERSION = "1.1.12"
#: Validated nested elements remembered, (model class, JSON text) -> element; cleared when full
#: (an export's repeated elements come back within a few hundred resources).
NESTED_CACHE_MAX = 20_000
#: Longer elements are not remembered: they rarely repeat and their key costs the most.
NESTED_KEY_MAX = 2_000
_NESTED: dict[tuple[Any, str], Any] = {}
#: Whether the cache is consulted (the equivalence test turns it off to compare).
cache_enabled = True


@cache
def _model(resource_type: str) -> Any:
    """The R4B model class for ``resource_type`` (imported lazily: the library is large)."""
    from fhir.resources.R4B import get_fhir_model_class

    _nested_cache()
    return get_fhir_model_class(resource_type)


@cache
def _nested_cache() -> bool:
    """Wrap fhir_core's validator of nested elements (``FhirBase.fhir_model_validator``, which
    pydantic looks up on each call) with the cache of validated elements; once per process.
    False (nothing wrapped) for a fhir_core release other than :data:`FHIR_CORE_VERSION`."""
    from importlib.metadata import version

    from fhir_core.types import FhirBase

    if version("fhir_core") != FHIR_CORE_VERSION:
        return False
    original = FhirBase.__dict__["fhir_model_validator"].__func__

    def validator(cls: Any, value: Any, model_klass: Any) -> Any:
        if not cache_enabled or type(value) is not dict:
            return original(cls, value, model_klass)
        try:
            text = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError):  # not plain JSON (a caller's own objects)
            return original(cls, value, model_klass)
        if len(text) > NESTED_KEY_MAX:
            return original(cls, value, model_klass)
        key = (model_klass, text)
        found = _NESTED.get(key)
        if found is None:
            found = original(cls, value, model_klass)  # raises as the library does
            if len(_NESTED) >= NESTED_CACHE_MAX:
                _NESTED.clear()
            _NESTED[key] = found
        return found

    FhirBase.fhir_model_validator = classmethod(validator)  # type: ignore[method-assign,assignment]
    return True


def validate_resource(resource: Mapping[str, Any]) -> None:
    """Raise FhirValidationError unless ``resource`` validates against its R4B model."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise FhirValidationError("not a FHIR resource: no resourceType")
    try:
        model = _model(resource_type)
    except (KeyError, ValueError) as exc:
        raise FhirValidationError(f"unknown resource type {resource_type!r}") from exc
    try:
        model.model_validate(dict(resource))
    except Exception as exc:  # pydantic.ValidationError and the models' own ValueErrors
        where = f"{resource_type}/{resource.get('id', '?')}"
        raise FhirValidationError(f"{where} is not valid FHIR R4: {exc}") from exc
