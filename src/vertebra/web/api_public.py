"""Public, read-only JSON endpoints: knowledge base, screening rules, instruments.

Nothing here touches patient data; the screening endpoint evaluates the posted facts and
stores nothing.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router
from ninja.errors import HttpError

from vertebra.core.screening import InvalidFactsError, evaluate, facts_json_schema
from vertebra.web.knowledge_selectors import knowledge_base, page_by_path

learn_router = Router(tags=["knowledge base"])
screening_router = Router(tags=["screening"])


@learn_router.get("/pages", summary="Every knowledge-base page (without bodies)")
def list_pages(request: HttpRequest) -> list[dict[str, Any]]:
    """All pages with their metadata, in display order."""
    return [page.to_dict(include_body=False) for page in knowledge_base().pages]


@learn_router.get("/pages/{path:path}", summary="One page with its markdown, HTML and sources")
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


@screening_router.post("/evaluate", summary="Evaluate facts against the screening rules")
def evaluate_facts(request: HttpRequest) -> dict[str, object]:
    """Return verdict, fired rules, missing facts and rule-set version; stores nothing.

    The body is a facts object (see ``/screening/facts-schema``); invalid facts → 422 with the
    offending path.
    """
    import json

    try:
        facts = json.loads(request.body or b"{}")
    except ValueError:
        raise HttpError(400, "The body is not valid JSON") from None
    try:
        return evaluate(facts).to_dict()
    except InvalidFactsError as exc:
        raise HttpError(422, str(exc)) from None
