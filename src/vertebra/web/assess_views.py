"""Views of the public self-assessment. They parse input, call the screening core, render."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from vertebra.web import assess
from vertebra.web.decide import link_from_assess
from vertebra.web.knowledge_selectors import questions_to_ask


def _answers(request: HttpRequest) -> dict[str, dict[str, Any]]:
    stored = request.session.get(assess.SESSION_KEY)
    return stored if isinstance(stored, dict) else {}


@never_cache
def intro(request: HttpRequest) -> HttpResponse:
    """The start page: what the check is, what it is not, and that nothing identifying is kept."""
    return render(
        request,
        "vertebra/assess/intro.html",
        {"steps": assess.STEPS, "has_answers": bool(_answers(request))},
    )


@never_cache
@require_http_methods(["GET", "POST"])
def step(request: HttpRequest, slug: str) -> HttpResponse:
    """Show one step (pre-filled from earlier answers) or save it and move on."""
    current = assess.step_by_slug(slug)
    if current is None:
        raise Http404("No such step")
    answers = _answers(request)
    if request.method == "POST":
        form = assess.StepForm(current, request.POST)
        if form.is_valid():
            answers[current.slug] = assess.to_session(form)
            request.session[assess.SESSION_KEY] = answers
            if current.slug == "warning-signs" and assess.has_emergency_flag(answers):
                return redirect("assess-result")
            index = assess.STEP_SLUGS.index(current.slug)
            if index + 1 < len(assess.STEPS):
                return redirect("assess-step", slug=assess.STEP_SLUGS[index + 1])
            return redirect("assess-result")
    else:
        form = assess.StepForm(current, initial=answers.get(current.slug, {}))
    index = assess.STEP_SLUGS.index(current.slug)
    previous = assess.STEP_SLUGS[index - 1] if index else None
    return render(
        request,
        "vertebra/assess/step.html",
        {
            "form": form,
            "step": current,
            "number": index + 1,
            "total": len(assess.STEPS),
            "back_url": reverse("assess-step", args=[previous]) if previous else reverse("assess"),
        },
        status=200 if not form.errors else 400,
    )


@never_cache
def result(request: HttpRequest) -> HttpResponse:
    """Evaluate the answers and show the verdict, the reasons, what is missing and what next."""
    answers = _answers(request)
    if not answers:
        return redirect("assess")
    outcome = assess.assess(answers)
    missing = [{"fact": item, "step": assess.step_for_fact(item.fact)} for item in outcome.missing]
    return render(
        request,
        "vertebra/assess/result.html",
        {
            "result": outcome,
            "missing": missing,
            # Versioned data beside the verdict message (ruleset.yaml), not code.
            "next_steps": outcome.summary.next_steps,
            "questions": questions_to_ask() if outcome.verdict != "emergency" else [],
            # Outcomes of similar patients only where treatment is the next question, never
            # beside a warning sign (emergency or see-a-doctor-first).
            "decide_url": (
                link_from_assess(answers) if outcome.verdict not in ("emergency", "refer") else None
            ),
        },
    )


@require_POST
def restart(request: HttpRequest) -> HttpResponse:
    """Delete every stored answer and go back to the start."""
    request.session.pop(assess.SESSION_KEY, None)
    return redirect("assess")
