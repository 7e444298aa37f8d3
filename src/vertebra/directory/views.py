"""Public pages of the clinic directory (no sign-in): the list, one clinic, a comparison.

Views parse input, call a selector and render; figures come cached and suppressed from
:mod:`vertebra.directory.selectors`. An unpublished or missing clinic is the site's 404.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from vertebra.core.directory import FIGURE_KEYS
from vertebra.directory import selectors
from vertebra.registry.errors import NotFound


def _common() -> dict[str, object]:
    """What every directory page shows: the words of each figure, synthetic or not."""
    words = selectors.texts()
    return {
        "fields": words.fields,
        "field_sources": words.field_sources,
        "figure_keys": FIGURE_KEYS,
        "synthetic": selectors.registry_is_synthetic(),
        "statuses": list(words.statuses.values()),
        "max_compared": selectors.MAX_COMPARED,
    }


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Every published clinic, with the count of those that have not published."""
    found = selectors.directory()
    return render(
        request, "directory/index.html", {**_common(), "directory": found, "clinics": found.clinics}
    )


@require_GET
def clinic(request: HttpRequest, clinic_id: int) -> HttpResponse:
    """One published clinic: status and evidence, figures per treatment, its answers."""
    try:
        entry = selectors.clinic_entry(clinic_id)
    except NotFound:
        raise Http404("No published clinic with this number.") from None
    return render(request, "directory/clinic.html", {**_common(), "clinic": entry})


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """Published clinics side by side (``?c=1&c=2``): the same sections in the same order."""
    asked = request.GET.getlist("c")
    clinics = selectors.compared(asked)
    found = selectors.directory() if len(clinics) < 2 else None
    return render(
        request,
        "directory/compare.html",
        {
            **_common(),
            "clinics": clinics,
            "asked": len(asked),
            "choices": found.clinics if found else (),
        },
        status=200,
    )
