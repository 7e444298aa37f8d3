"""View of the public decision aid ("patients like you"). Parses input, reads, renders."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vertebra.core.decision import ProfileError
from vertebra.directory.selectors import registry_is_synthetic
from vertebra.web import decide
from vertebra.web.decision_selectors import decision_result, evidence
from vertebra.web.knowledge_selectors import knowledge_base


@never_cache  # the answers in the query are the person's own: no shared caches
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """The form; with answers in the query, the registry figures per arm beside the evidence.

    Invalid answers re-render the form with the errors next to the fields (400). The figures
    come from the cached de-identified cell table, never from a per-request registry read.
    """
    asked = any(request.GET.get(name) for name in ("condition", "age", "odi", "startback"))
    form = decide.DecideForm(request.GET if asked else None)
    result = None
    status = 200
    if asked:
        if form.is_valid():
            try:
                result = decision_result(form.profile())
            except ProfileError as exc:  # the form and the core disagree: say so, no 500
                form.add_error(None, str(exc))
                status = 400
        else:
            status = 400
    context = decide.page_context(
        result,
        evidence(),
        knowledge_base(),
        cache_seconds=settings.DECISION_AID_CACHE_SECONDS,
        synthetic=result is not None and registry_is_synthetic(),
    )
    context["form"] = form
    return render(request, "vertebra/decide/page.html", context, status=status)
