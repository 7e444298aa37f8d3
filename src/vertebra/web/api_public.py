"""Public, read-only JSON endpoints: knowledge base, screening rules, instruments, decision aid.

Nothing here touches identified patient data; the screening endpoint evaluates the posted
facts and stores nothing. The decision aid returns aggregates of de-identified registry data
(cached, with a minimum cell size), the same figures as the /decide/ page.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router
from ninja.errors import HttpError

from vertebra.core.decision import Profile, ProfileError
from vertebra.core.instruments import (
    InstrumentDefinition,
    InvalidAnswerError,
    UnknownInstrumentError,
    get_definition,
    list_instruments,
    score,
)
from vertebra.core.safeinput import JsonInputError, load_json
from vertebra.core.screening import InvalidFactsError, evaluate, facts_json_schema
from vertebra.directory.selectors import registry_is_synthetic
from vertebra.registry.api import ErrorOut, ValidationErrorOut
from vertebra.web.decide import payload
from vertebra.web.decision_selectors import FiguresNotReady, decision_result, evidence
from vertebra.web.knowledge_selectors import knowledge_base, page_by_path


def _body(request: HttpRequest) -> Any:
    """The JSON body (``{}`` when empty); 400 naming the problem when it is not UTF-8, not
    JSON, or nested deeper than :data:`~vertebra.core.safeinput.MAX_JSON_DEPTH`."""
    try:
        return load_json(request.body or b"{}")
    except JsonInputError as exc:
        raise HttpError(400, f"The body is not acceptable: {exc}") from exc


#: Documented answers of public endpoints besides their success (schemathesis checks them):
#: the API's one error shape, RFC 9457 problems (see vertebra.web.api).
NOT_FOUND: dict[int, Any] = {404: ErrorOut}
INVALID: dict[int, Any] = {400: ErrorOut, 422: ValidationErrorOut}

learn_router = Router(tags=["knowledge base"])
screening_router = Router(tags=["screening"])
decision_router = Router(tags=["decision aid"])


@learn_router.get("/pages", summary="Every knowledge-base page (without bodies)")
def list_pages(request: HttpRequest) -> list[dict[str, Any]]:
    """All pages with their metadata, in display order."""
    return [page.to_dict(include_body=False) for page in knowledge_base().pages]


@learn_router.get(
    "/pages/{path:path}",
    response={200: dict[str, Any], **NOT_FOUND},
    summary="One page with its markdown, HTML and sources",
)
def get_page(request: HttpRequest, path: str) -> dict[str, Any]:
    """The page at ``path`` (e.g. ``causes/sciatica``) or with that slug; 404 if none."""
    found = page_by_path(path)
    if found is None:
        raise HttpError(404, f"No knowledge-base page {path!r}")
    kb = knowledge_base()
    data = found.to_dict()
    data["sources"] = [kb.sources[sid].to_dict() for sid in found.citations if sid in kb.sources]
    return data


@learn_router.get("/comparison", summary="The five-treatment comparison table")
def comparison(request: HttpRequest) -> list[dict[str, Any]]:
    """One row per treatment: pros, cons, typical outcomes, certainty, risks, with sources."""
    return [row.to_dict() for row in knowledge_base().comparison_table()]


@learn_router.get("/sources", summary="The bibliography")
def sources(request: HttpRequest) -> list[dict[str, Any]]:
    """Every cited source with its verification status."""
    return [source.to_dict() for source in knowledge_base().sources.values()]


@learn_router.get("/questions", summary="Questions to ask a clinic")
def questions(request: HttpRequest) -> list[dict[str, Any]]:
    """The questions a patient should ask any clinic, each with why and sources."""
    return [question.to_dict() for question in knowledge_base().questions]


@screening_router.get("/facts-schema", summary="JSON Schema of the screening facts")
def schema(request: HttpRequest) -> dict[str, object]:
    """The facts object accepted by ``/screening/evaluate``."""
    return facts_json_schema()


@screening_router.post(
    "/evaluate",
    response={200: dict[str, object], **INVALID},
    summary="Evaluate facts against the screening rules",
)
def evaluate_facts(request: HttpRequest) -> dict[str, object]:
    """Return verdict, fired rules, missing facts and rule-set version; stores nothing.

    The body is a facts object (see ``/screening/facts-schema``); invalid facts → 422 with the
    offending path.
    """
    facts = _body(request)
    try:
        return evaluate(facts).to_dict()
    except InvalidFactsError as exc:
        raise HttpError(422, str(exc)) from None


instruments_router = Router(tags=["instruments"])


def _definition_dict(definition: InstrumentDefinition, *, with_items: bool) -> dict[str, Any]:
    """JSON form of an instrument definition (licence always shown; items on request)."""
    data: dict[str, Any] = {
        "id": definition.id,
        "version": definition.version,
        "title": definition.title,
        "recall": definition.recall,
        "direction": definition.direction,
        "range": [definition.range_min, definition.range_max],
        "unit": definition.unit,
        "item_text_shipped": definition.item_text_shipped,
        "text_source": definition.text_source,
        "licence": {
            "holder": definition.licence.holder,
            "terms": definition.licence.terms,
            "source": definition.licence.source,
        },
        "scoring": {
            "method": definition.scoring.method,
            "description": definition.scoring.description,
            "source": definition.scoring.source,
            "unverified": list(definition.scoring.unverified),
        },
        "bands": [{"id": band.id, "upper": band.upper} for band in definition.bands],
    }
    if with_items:
        data["instructions"] = definition.instructions
        data["items"] = [
            {
                "id": item.id,
                "text": item.text,
                "type": item.type,
                "optional": item.optional,
                "minimum": item.minimum,
                "maximum": item.maximum,
                "options": [{"code": o.code, "label": o.label} for o in item.options],
            }
            for item in definition.items
        ]
    return data


@instruments_router.get("", summary="Every instrument with version and licence status")
def list_all_instruments(request: HttpRequest) -> list[dict[str, Any]]:
    """All instrument definitions without their items."""
    return [_definition_dict(d, with_items=False) for d in list_instruments()]


@instruments_router.get(
    "/{instrument_id}",
    response={200: dict[str, Any], **NOT_FOUND},
    summary="One instrument with its items",
)
def instrument_detail(request: HttpRequest, instrument_id: str) -> dict[str, Any]:
    """The definition, items and options (placeholder wording where the licence requires)."""
    try:
        return _definition_dict(get_definition(instrument_id), with_items=True)
    except UnknownInstrumentError as exc:
        raise HttpError(404, str(exc)) from None


@instruments_router.post(
    "/{instrument_id}/score",
    response={200: dict[str, Any], **NOT_FOUND, **INVALID},
    summary="Score answers; stores nothing",
)
def score_answers(request: HttpRequest, instrument_id: str) -> dict[str, Any]:
    """Score ``{"answers": {item_id: value|null}}`` or ``{"answers": [v1, v2, ...]}``.

    Invalid answers → 422 naming the item and the allowed values; unknown instrument → 404.
    """
    body = _body(request)
    answers = body.get("answers") if isinstance(body, dict) else None
    if not isinstance(answers, dict | list):
        raise HttpError(422, 'Send {"answers": {...}} or {"answers": [...]}')
    try:
        return score(instrument_id, answers).to_dict()
    except UnknownInstrumentError as exc:
        raise HttpError(404, str(exc)) from None
    except InvalidAnswerError as exc:
        raise HttpError(422, str(exc)) from None


@decision_router.get(
    "",
    response={200: dict[str, Any], **INVALID},
    summary="Patients like you: registry figures per treatment beside the published evidence",
)
def decision_aid(
    request: HttpRequest,
    condition: str,
    age: int,
    odi: float | None = None,
    startback: str | None = None,
) -> dict[str, Any]:
    """What happened at 12 months to similar registry patients, per treatment arm, in a fixed
    order (never a ranking), with the published evidence and its certainty beside each arm.

    Similar: same ``condition`` and age band; when given, the same baseline ``odi`` band and
    STarT Back group (``startback``: low, medium, high). An arm with too few similar patients
    is widened step by step (``level``: profile, like_you, condition, everyone) to the
    narrowest group that may be shown; with none, ``"shown": false`` and no numbers.
    ``synthetic_registry`` is true for the demo's generated registry. Observational figures: they cannot show which
    treatment works better. Invalid input → 422 naming the problem.
    """
    try:
        result = decision_result(Profile(condition, age, odi, startback))
    except ProfileError as exc:
        raise HttpError(422, str(exc)) from None
    except FiguresNotReady:  # no analysis snapshot yet: never a registry read here
        raise HttpError(503, "The registry figures are being prepared; try again later.") from None
    return payload(result, evidence(), knowledge_base(), synthetic=registry_is_synthetic())
