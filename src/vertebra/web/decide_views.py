"""View of the public decision aid ("patients like you"). Parses input, reads, renders."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vertebra.core.decision import ProfileError
from vertebra.directory.selectors import registry_is_synthetic
from vertebra.web import decide
from vertebra.web.decision_selectors import (
    FiguresNotReady,
    decision_result,
    evidence,
    figures_status,
)
from vertebra.web.knowledge_selectors import knowledge_base


@never_cache  # the answers in the query are the person's own: no shared caches
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """The form; with answers in the query, the registry figures per arm beside the evidence.

    Invalid answers re-render the form with the errors next to the fields (400). The figures
    come from the analysis snapshot's de-identified cell table (ADR 0022), never from a
    per-request registry read; with no snapshot yet the page says they are being prepared.
    """
    asked = any(request.GET.get(name) for name in ("condition", "age", "odi", "startback"))
    form = decide.DecideForm(request.GET if asked else None)
    result = None
    status = 200
    preparing = False
    if asked:
        if form.is_valid():
            try:
                result = decision_result(form.profile())
            except ProfileError as exc:  # the form and the core disagree: say so, no 500
                form.add_error(None, str(exc))
                status = 400
            except FiguresNotReady:
                preparing = True
        else:
            status = 400
    context = decide.page_context(
        result,
        evidence(),
        knowledge_base(),
        synthetic=result is not None and registry_is_synthetic(),
    )
    context["form"] = form
    context["preparing"] = preparing
    context["snapshot"] = figures_status() if result is not None else None
    return render(request, "vertebra/decide/page.html", context, status=status)
