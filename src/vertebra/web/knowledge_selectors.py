"""Reads of the knowledge base for pages and the API (the content is packaged data)."""

from __future__ import annotations

from vertebra.core.knowledge import KnowledgeBase, Page, Question, load_knowledge_base

LEARN_PREFIX = "/learn/"


def knowledge_base() -> KnowledgeBase:
    """The packaged, validated knowledge base (loaded once per process)."""
    return load_knowledge_base(url_prefix=LEARN_PREFIX)


def page_by_path(path: str) -> Page | None:
    """The page at ``path`` ("" for the index, "causes/sciatica", ...) or its slug; else None."""
    try:
        return knowledge_base().get_page(path.strip("/"))
    except KeyError:
        return None


def questions_to_ask() -> tuple[Question, ...]:
    """The questions every patient should ask a clinic, with sources."""
    return knowledge_base().questions
