"""Knowledge-base pages at /learn/: causes, treatments, the comparison table, the pathway."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from vertebra.core.knowledge import SECTIONS
from vertebra.web.knowledge_selectors import knowledge_base, page_by_path

SECTION_TITLES = {
    "overview": "Start here",
    "causes": "Causes of low back pain",
    "treatments": "Treatment options",
    "cell-therapy": "Stem cell therapy: what to know",
}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The knowledge-base home: every section with its pages."""
    kb = knowledge_base()
    sections = [
        {
            "id": section,
            "title": SECTION_TITLES.get(section, section),
            "pages": kb.pages_in(section),
        }
        for section in SECTIONS
    ]
    return render(
        request,
        "vertebra/learn/index.html",
        {"sections": sections, "index_page": page_by_path("")},
    )


@require_GET
def comparison(request: HttpRequest) -> HttpResponse:
    """The side-by-side comparison of the five treatment options, with sources."""
    kb = knowledge_base()
    rows = kb.comparison_table()
    cited = sorted({sid for row in rows for sid in _row_sources(row)})
    return render(
        request,
        "vertebra/learn/compare.html",
        {"rows": rows, "sources": [kb.sources[sid] for sid in cited if sid in kb.sources]},
    )


@require_GET
def cost(request: HttpRequest) -> HttpResponse:
    """Typical cost ranges and insurance coverage of each treatment, with sources
    (data/learn/cost.yaml; the section itself is the ``cost_ranges`` template tag)."""
    return render(request, "vertebra/learn/cost.html")


def _row_sources(row: object) -> set[str]:
    comparison = getattr(row, "comparison", None)
    if comparison is None:
        return set()
    found: set[str] = set()
    for group in (comparison.pros, comparison.cons, comparison.main_risks):
        for item in group:
            found.update(item.sources)
    found.update(outcome.source for outcome in comparison.typical_outcomes)
    found.update(comparison.certainty.sources)
    found.update(comparison.time_to_effect.sources)
    return found


@require_GET
def page(request: HttpRequest, path: str) -> HttpResponse:
    """One knowledge-base page, rendered from its markdown with numbered citations."""
    found = page_by_path(path)
    if found is None or found.path == "":
        raise Http404("No such page")
    kb = knowledge_base()
    related = [p for p in (page_by_path(slug) for slug in found.related) if p is not None]
    return render(
        request,
        "vertebra/learn/page.html",
        {
            "page": found,
            "section_title": SECTION_TITLES.get(found.section, found.section),
            "related": related,
            "sources": [kb.sources[sid] for sid in found.citations if sid in kb.sources],
        },
    )
