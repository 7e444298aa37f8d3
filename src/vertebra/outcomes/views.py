"""Outcome pages under /clinic/outcomes/: parse the filters, call selectors/core, render.

Contracts
---------
* Sign-in required; the user acts in their current staff role (``registry.views.current_actor``).
  Clinic staff see their clinics; a registry-wide researcher sees every clinic, de-identified
  (aggregates only; the per-patient page needs ``patient.read``). Other roles get 403.
* Every response is ``Cache-Control: no-store``. Every read is audited by the selectors.
* Invalid filters re-render the form with errors (status 400); nothing is computed.
* The dashboard and the reports answer from the analysis snapshot (ADR 0022): the dashboard
  says "Figures as of <time>" and when they may be out of date; with no snapshot yet, or
  while the worker prepares a wide scope's filter (amendment 8), it says the figures are being
  prepared (and reloads itself after the refresh interval); the reports answer 503 with
  Retry-After.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vertebra.core.analytics import CohortFilter
from vertebra.core.analytics.headline import ALL_CLINICS_KEY, clinic_letters
from vertebra.core.disclosure import policy
from vertebra.directory.selectors import registry_is_synthetic
from vertebra.followup.progress import psfs_for_patient
from vertebra.outcomes import presenters, selectors, trajectory
from vertebra.outcomes.forms import FilterForm
from vertebra.outcomes.median_paths import paths_for
from vertebra.outcomes.rendering import notice_pdf
from vertebra.outcomes.reports import render_pdf, report_for, report_ready
from vertebra.outcomes.snapshot import Status
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.permissions import Actor
from vertebra.registry.selectors import get_patient_for
from vertebra.registry.views import current_actor

View = Callable[..., HttpResponse]


def outcomes_view(view: View) -> View:
    """Sign-in, GET only, no caching; refusals as 403 and unknown patients as 404 pages."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, current_actor(request), *args, **kwargs)
        except PermissionDeniedError as exc:
            return render(request, "registry/denied.html", {"message": str(exc)}, status=403)
        except NotFound:
            return render(request, "registry/not_found.html", status=404)

    return login_required(never_cache(require_GET(wrapper)))


def _form(request: HttpRequest, actor: Actor) -> FilterForm:
    return FilterForm(request.GET or None, clinics=selectors.clinic_choices(actor))


def _filter(form: FilterForm) -> CohortFilter | None:
    """The form's filter; an unbound form means no filter; None when the input is invalid."""
    if not form.is_bound:
        return CohortFilter()
    return form.to_filter() if form.is_valid() else None


@outcomes_view
def dashboard(request: HttpRequest, actor: Actor) -> HttpResponse:
    """The outcomes dashboard of the actor's (filtered) patients."""
    form = _form(request, actor)
    flt = _filter(form)
    context: dict[str, Any] = {"form": form, "query": request.GET.urlencode(), "actor": actor}
    context["synthetic"] = registry_is_synthetic()  # the demo: say so beside every figure
    # a researcher reads de-identified aggregates only: no link to the patient list
    context["deidentified"] = selectors.scope_for(actor).deidentified
    if flt is None:
        return render(request, "outcomes/dashboard.html", context, status=400)
    report, status = report_for(actor, flt, timezone.localdate())
    context["snapshot"] = status  # "Figures as of ..." (None: being prepared)
    # this filter's figures are being built by the worker: say so; the page asks
    # ready.json every SNAPSHOT_REQUEST_POLL_SECONDS and shows them when they are
    context["pending"] = status is not None and status.pending
    if context["pending"]:
        context["poll_seconds"] = settings.SNAPSHOT_REQUEST_POLL_SECONDS
        context["ready_url"] = f"{reverse('outcomes:ready-json')}?{request.GET.urlencode()}"
    names = clinic_names(actor)
    suppressed = report is not None and report.cohort_suppressed
    context["board"] = presenters.dashboard(report, names) if report and not suppressed else None
    context["deidentified"] = selectors.scope_for(actor).deidentified
    context["filter_words"] = presenters.filter_summary(
        flt, names, deidentified=context["deidentified"]
    )
    if report is not None and report.min_cell is not None:  # researchers: minimum cell size
        context["cohort_suppressed"] = suppressed
        context["disclosure_note"] = policy().note
        context["withheld_arms"] = sorted(report.withheld.arms) if report.withheld else []
    return render(request, "outcomes/dashboard.html", context)


@outcomes_view
def ready_json(request: HttpRequest, actor: Actor) -> HttpResponse:
    """``{"ready": true|false}``: whether the dashboard's figures for the request's filter can
    be shown now (the page that waits for the worker asks this, then reloads). Says nothing
    of the figures themselves, reads no patient row and writes no audit row; 400 for an
    invalid filter."""
    flt = _filter(_form(request, actor))
    if flt is None:
        return JsonResponse({"ready": False, "error": "invalid filter"}, status=400)
    return JsonResponse({"ready": report_ready(actor, flt, timezone.localdate())})


def clinic_names(actor: Actor) -> dict[str, str]:
    """What clinics are called on the actor's pages: their names for clinic staff (and, under
    ``ALL_CLINICS_KEY``, their clinic's name or "Your N clinics" for a filter that names
    none); for a researcher (de-identified) "Clinic A", "Clinic B" ... in the order of ids."""
    choices = selectors.clinic_choices(actor)
    scope = selectors.scope_for(actor)
    if scope.deidentified:
        names = clinic_letters([cid for cid, _name in choices])
        names["pooled"] = "Small clinics (pooled)"  # see data/deidentification.yaml
        return names
    names = {str(cid): name for cid, name in choices}
    if scope.clinic_ids is not None and choices:  # staff see their own clinics only
        names[ALL_CLINICS_KEY] = (
            choices[0][1] if len(choices) == 1 else f"Your {len(choices)} clinics"
        )
    return names


def _report_or_problem(request: HttpRequest, actor: Actor, *, pdf: bool = False) -> Any:
    """``(report, snapshot status)`` for the request's filter, or the response that says why
    there is none (a bad filter, figures being prepared, no patient, a suppressed cohort)."""
    form = _form(request, actor)
    flt = _filter(form)
    if flt is None:
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return HttpResponse(f"Invalid filter: {errors}", status=400, content_type="text/plain")
    report, status = report_for(actor, flt, timezone.localdate())
    if status is None or status.pending:  # never a full read in the request
        wait = status.refresh_seconds if status else 60
        message = (
            "The figures are being prepared; try again in a minute."
            if status is None
            else f"The figures for these filters are being prepared by the worker; try again "
            f"in {wait} s."
        )
        response = HttpResponse(message, status=503, content_type="text/plain")
        response["Retry-After"] = str(wait)
        return response
    if report is None:
        return HttpResponse(
            "No patients match these filters.", status=404, content_type="text/plain"
        )
    if report.cohort_suppressed and pdf:  # the JSON says so itself (disclosure)
        # A PDF that says why, not an error page: a report link never dead-ends.
        message = (
            f"Fewer than {report.min_cell} patients match these filters, so no figure is "
            f"shown. {policy().note}"
        )
        response = HttpResponse(notice_pdf(message), content_type="application/pdf")
        response["Content-Disposition"] = 'attachment; filename="vertebra-outcomes-suppressed.pdf"'
        return response
    return report, status


def _figures_headers(response: HttpResponse, status: Status) -> HttpResponse:
    """Say in headers which snapshot the figures are from (``Vertebra-Figures-As-Of``, ISO
    time) and, while the worker builds the newest ones, that these are the previous
    snapshot's (``Vertebra-Figures-Superseded: true``; ADR 0022 §11)."""
    response["Vertebra-Figures-As-Of"] = status.checked_at.isoformat()
    if status.superseded:
        response["Vertebra-Figures-Superseded"] = "true"
    return response


@outcomes_view
def report_pdf(request: HttpRequest, actor: Actor) -> HttpResponse:
    """The filtered report as a PDF download (the same report as ``vertebra report``)."""
    answer = _report_or_problem(request, actor, pdf=True)
    if isinstance(answer, HttpResponse):
        return answer
    report, status = answer
    pdf = render_pdf(report, clinic_names(actor), synthetic=registry_is_synthetic())
    response = HttpResponse(pdf, content_type="application/pdf")
    # A de-identified report names no calendar date, not even in its file name.
    stamp = report.as_of.isoformat() if report.time_base == "calendar" else "deidentified"
    name = f"vertebra-outcomes-{stamp}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return _figures_headers(response, status)


@outcomes_view
def report_json(request: HttpRequest, actor: Actor) -> HttpResponse:
    """The filtered report as JSON (the report contract of ``Report.to_dict()``), plus
    ``synthetic_data``: true when the registry is the demo's synthetic one; the headers say
    which snapshot the figures are from (:func:`_figures_headers`)."""
    answer = _report_or_problem(request, actor)
    if isinstance(answer, HttpResponse):
        return answer
    report, status = answer
    payload = {**report.to_dict(), "synthetic_data": registry_is_synthetic()}
    response = JsonResponse(
        payload, json_dumps_params={"allow_nan": False}, encoder=json.JSONEncoder
    )
    return _figures_headers(response, status)


@outcomes_view
def patient_trajectory(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
    """One patient's ODI and NRS over time against the MCID lines and the median path of the
    patient's arm in the actor's clinics: the patient's own scores read now (this patient's
    rows only), the median from the analysis snapshot, as of its time (being prepared: the
    patient's own line alone, and the page says so).

    ``?fragment=1`` returns only the fragment (for embedding in the patient page).
    """
    patient = get_patient_for(actor=actor, patient_id=patient_id)
    tables = selectors.patient_tables(actor=actor, patient_id=patient.pk)
    paths, status = paths_for(actor, timezone.localdate())
    try:
        view = trajectory.patient_trajectory(tables, patient.pk, paths)
    except KeyError:
        # No episode yet, or left out of the analyses for an implausible stored date: say so.
        view = None
    template = (
        "outcomes/_patient_trajectory.html"
        if request.GET.get("fragment")
        else "outcomes/patient_trajectory.html"
    )
    return render(
        request,
        template,
        {
            "patient": patient,
            "view": view,
            "snapshot": status,
            "median_pending": paths is None,
            "psfs": psfs_for_patient(patient.pk),
            "data_notes": [e.note for e in tables.exclusions],
            "dashboard_url": reverse("outcomes:dashboard"),
        },
    )
