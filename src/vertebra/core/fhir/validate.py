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
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = ["FhirValidationError", "validate_resource"]


class FhirValidationError(ValueError):
    """A resource does not conform to the R4(B) model; the message names type, id and fields."""


@cache
def _model(resource_type: str) -> Any:
    """The R4B model class for ``resource_type`` (imported lazily: the library is large)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


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
