"""Clinician pages under /clinic/: they parse input, call a selector or service, render.

Contracts
---------
* Every page needs a signed-in user holding a staff role (:func:`current_actor`); the role the
  user acts in is kept in the session and may be switched among the roles they hold.
* Reads go through :mod:`vertebra.registry.selectors` and writes through
  :mod:`vertebra.registry.services`, which check permissions, scope to the actor's clinics and
  audit. A role that may not do something gets 403; an object outside the actor's clinics gets
  the same 404 page as one that does not exist (nothing about it is shown).
* Service refusals become form errors: field errors beside their field, chain-of-custody
  refusals as a message at the top; nothing is saved (the service's transaction rolled back).
* A stale edit gets 409 with the current values; nothing is overwritten.
* Every response is ``Cache-Control: no-store`` (``never_cache``): these pages show PHI.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from vertebra.core.labels import format_date
from vertebra.followup.services import (
    start_episode_with_follow_up,
    withdraw_consent_and_stop_invitations,
)
from vertebra.registry import selectors, services
from vertebra.registry.errors import (
    ChainOfCustodyError,
    MissingStepError,
    NotFound,
    PermissionDeniedError,
)
from vertebra.registry.forms import (
    AdjudicationForm,
    AdverseEventForm,
    ClinicalEventForm,
    ConsentForm,
    ConsentWithdrawForm,
    DiagnosisForm,
    EpisodeForm,
    HarvestForm,
    InjectionForm,
    PatientForm,
    PatientSearchForm,
    PriorTreatmentForm,
    ProcessingForm,
    ScreeningForm,
    SterilityForm,
)
from vertebra.registry.guidance import episode_guidance, guidance_for
from vertebra.registry.models import Clinic, ConsentKind, Membership, Role
from vertebra.registry.pathway import blockers
from vertebra.registry.permissions import Action, Actor, is_allowed, refusal_message

SESSION_ROLE = "registry_role"
#: When a user holds several roles and has not chosen, act in the first one held.
ROLE_PRIORITY = (
    Role.CLINICIAN,
    Role.COORDINATOR,
    Role.CLINIC_ADMIN,
    Role.REGISTRY_ADMIN,
    Role.RESEARCHER,
)
PAGE_SIZE = 25

_P = ParamSpec("_P")


# ------------------------------------------------------------------------------ plumbing


def held_roles(user: Any) -> list[str]:
    """The staff roles ``user`` holds, in :data:`ROLE_PRIORITY` order."""
    held = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    return [role.value for role in ROLE_PRIORITY if role.value in held]


def current_actor(request: HttpRequest) -> Actor:
    """The Actor for this request: the signed-in user in their chosen (or first) role.

    Raises PermissionDeniedError for users without a staff role (patients, for instance).
    """
    roles = held_roles(request.user)
    if not roles:
        raise PermissionDeniedError("Your account has no staff role at any clinic.")
    chosen = request.session.get(SESSION_ROLE)
    role = chosen if chosen in roles else roles[0]
    request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
    return Actor.for_user(request.user, role, request_id=request_id)


def clinic_view(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Sign-in required, no caching, and registry refusals rendered as 403 / 404 pages.

    The view receives the Actor as its second argument.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            actor = current_actor(request)
            return view(request, actor, *args, **kwargs)
        except PermissionDeniedError as exc:
            return render(request, "registry/denied.html", {"message": str(exc)}, status=403)
        except NotFound:
            # One body for "missing" and "another clinic's": existence is never revealed.
            return render(request, "registry/not_found.html", status=404)

    return login_required(never_cache(wrapper))


def _add_errors(form: Any, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form: beside its field when the form has one."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        form.add_error(name if name in form.fields else None, errors)


def _submit(
    request: HttpRequest,
    form: Any,
    call: Callable[[Any], HttpResponse],
    *,
    context: dict[str, Any],
    template: str = "registry/form.html",
    actor: Actor | None = None,
) -> HttpResponse:
    """On a valid POST run ``call(form)`` (a service call returning a redirect); otherwise, or
    when the service refuses the input, re-render the form with its errors (400). A refusal
    for something missing (MissingStepError) also shows the way forward (``guidance``)."""
    if request.method == "POST" and form.is_valid():
        try:
            return call(form)
        except ValidationError as exc:
            _add_errors(form, exc)
        except ChainOfCustodyError as exc:
            form.add_error(None, str(exc))
            if isinstance(exc, MissingStepError) and actor is not None:
                way = dataclasses.replace(guidance_for(exc, actor), in_errors=True)
                known = [g for g in context.get("guidance", []) if g.remedy != way.remedy]
                context = {**context, "guidance": [way, *known]}
    status = 400 if request.method == "POST" else 200
    return render(request, template, {**context, "form": form}, status=status)


def _patient_url(patient_id: int, anchor: str = "") -> str:
    url = reverse("registry:patient", args=[patient_id])
    return f"{url}#{anchor}" if anchor else url


def _created(request: HttpRequest, what: str, patient_id: int, obj: Any) -> HttpResponse:
    """After a write: say so, and show the new item on the patient's timeline."""
    from django.contrib import messages

    messages.success(request, f"{what} recorded.")
    kind = obj._meta.model_name
    return redirect(_patient_url(patient_id, f"{kind}-{obj.pk}"))


# ------------------------------------------------------------------------------ patients


@clinic_view
@require_http_methods(["GET"])
def patient_list(request: HttpRequest, actor: Actor) -> HttpResponse:
    """Patients of the actor's clinics with search (name/MRN), filters and pagination."""
    form = PatientSearchForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    page_number = filters.get("page") or 1
    result = selectors.search_patients(
        actor=actor,
        search=filters.get("q", ""),
        condition=filters.get("condition", ""),
        arm=filters.get("arm", ""),
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
    )
    pages = Paginator(range(result.total), PAGE_SIZE)
    query = request.GET.copy()
    query.pop("page", None)
    if result.total and page_number > pages.num_pages:
        # Past the end (an old link, a typed number): the last page, at its own address.
        last = query.copy()
        last["page"] = str(pages.num_pages)
        return redirect(f"{request.path}?{last.urlencode()}")
    page: Page[int] | None = pages.page(page_number) if result.total else None
    return render(
        request,
        "registry/patient_list.html",
        {
            "form": form,
            "result": result,
            "page": page,
            "query": query.urlencode(),
            "can_register": is_allowed(actor.role, Action.PATIENT_CREATE),
            "can_adjudicate": is_allowed(actor.role, Action.ADVERSE_EVENT_ADJUDICATE),
        },
    )


@clinic_view
@require_http_methods(["GET", "POST"])
def patient_create(request: HttpRequest, actor: Actor) -> HttpResponse:
    """Register a patient at one of the actor's clinics."""
    if not is_allowed(actor.role, Action.PATIENT_CREATE):
        raise PermissionDeniedError(
            refusal_message(actor.role, Action.PATIENT_CREATE), action=Action.PATIENT_CREATE
        )
    clinics = list(
        Clinic.objects.filter(pk__in=actor.clinic_ids).order_by("name").values_list("pk", "name")
    )
    form = PatientForm(request.POST or None, clinics=clinics)

    def call(form: PatientForm) -> HttpResponse:
        patient = services.register_patient(actor=actor, **form.service_kwargs())
        return _created(request, "Patient", patient.pk, patient)

    return _submit(request, form, call, context={"title": "Register a patient"})


@clinic_view
@require_http_methods(["GET"])
def patient_detail(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
    """The patient's page: identifiers, latest screening, and the timeline."""
    record = selectors.patient_record(actor=actor, patient_id=patient_id)
    today = timezone.localdate()
    return render(
        request,
        "registry/patient_detail.html",
        {
            "record": record,
            "patient": record.patient,
            "can": _abilities(actor),
            "episode_rows": _episode_rows(record, actor, today),
            "consent_state": _consent_state(record, today),
        },
    )


def _episode_rows(record: Any, actor: Actor, today: Any) -> list[tuple[Any, list[Any]]]:
    """Each episode with the guidance for its next pathway step (empty when nothing blocks)."""
    guidance = episode_guidance(record.episodes, actor, today)
    return [(episode, guidance.get(episode.pk, [])) for episode in record.episodes]


def _consent_state(record: Any, today: Any) -> dict[str, bool]:
    """Which consents are active today (treatment, registry), for the patient page."""
    active = {
        consent.kind
        for consent in record.consents
        if consent.signed_on <= today
        and (consent.withdrawn_on is None or consent.withdrawn_on > today)
    }
    return {kind.value: kind.value in active for kind in ConsentKind}


def _abilities(actor: Actor) -> dict[str, bool]:
    """Which actions the page offers (links only; the services enforce)."""
    return {action.name.lower(): is_allowed(actor.role, action) for action in Action}


def _patient_form_view(
    action: Action,
    form_class: type,
    service: Callable[..., Any],
    *,
    title: str,
    what: str,
) -> Callable[..., HttpResponse]:
    """A page recording one item for a patient with ``service`` (consent, diagnosis, ...)."""

    @clinic_view
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
        patient = selectors.get_patient_for(actor=actor, patient_id=patient_id, intent=action)
        form = form_class(request.POST or None)

        def call(form: Any) -> HttpResponse:
            obj = service(actor=actor, patient_id=patient_id, **form.service_kwargs())
            return _created(request, what, patient_id, obj)

        return _submit(request, form, call, context={"title": title, "patient": patient})

    view.__name__ = view.__qualname__ = f"{what.lower().replace(' ', '_')}_create"
    return view


@clinic_view
@require_http_methods(["GET", "POST"])
def consent_create(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
    """Record a signed consent; ``?kind=treatment|registry`` preselects the kind (the links
    from a blocked step say which consent is missing)."""
    patient = selectors.get_patient_for(
        actor=actor, patient_id=patient_id, intent=Action.CONSENT_RECORD
    )
    kind = request.GET.get("kind", "")
    initial = {"kind": kind} if kind in ConsentKind.values else {}
    form = ConsentForm(request.POST or None, initial=initial)

    def call(form: ConsentForm) -> HttpResponse:
        consent = services.record_consent(
            actor=actor, patient_id=patient_id, **form.service_kwargs()
        )
        return _created(request, "Consent", patient_id, consent)

    return _submit(request, form, call, context={"title": "Record consent", "patient": patient})


@clinic_view
@require_http_methods(["GET", "POST"])
def consent_withdraw(request: HttpRequest, actor: Actor, consent_id: int) -> HttpResponse:
    """Record the withdrawal of a consent (kept, never deleted); a withdrawn registry consent
    stops follow-up invitations at once."""
    consent = selectors.get_consent_for(
        actor=actor, consent_id=consent_id, intent=Action.CONSENT_RECORD
    )
    patient, patient_id = consent.patient, consent.patient_id
    form = ConsentWithdrawForm(request.POST or None, initial={"withdrawn_on": timezone.localdate()})

    def call(form: ConsentWithdrawForm) -> HttpResponse:
        withdraw_consent_and_stop_invitations(
            actor=actor, consent_id=consent_id, **form.service_kwargs()
        )
        return _created(request, "Withdrawal", patient_id, consent)

    context = {
        "title": f"Withdraw the {consent.get_kind_display().lower()} consent",
        "patient": patient,
        "intro": (
            "The consent stays on the record with its withdrawal date. "
            + (
                "From that day no further follow-up invitations or reminders are sent."
                if consent.kind == ConsentKind.REGISTRY
                else "From that day no further harvest, processing or injection can be recorded."
            )
        ),
    }
    return _submit(request, form, call, context=context, actor=actor)


diagnosis_create = _patient_form_view(
    Action.DIAGNOSIS_RECORD, DiagnosisForm, services.record_diagnosis,
    title="Record a diagnosis", what="Diagnosis",
)  # fmt: skip
prior_treatment_create = _patient_form_view(
    Action.PRIOR_TREATMENT_RECORD, PriorTreatmentForm, services.record_prior_treatment,
    title="Record a prior treatment", what="Prior treatment",
)  # fmt: skip
episode_create = _patient_form_view(
    Action.EPISODE_START, EpisodeForm, start_episode_with_follow_up,
    title="Start a treatment episode", what="Episode",
)  # fmt: skip
clinical_event_create = _patient_form_view(
    Action.CLINICAL_EVENT_RECORD, ClinicalEventForm, services.record_clinical_event,
    title="Record a clinical event", what="Clinical event",
)  # fmt: skip


@clinic_view
@require_http_methods(["GET", "POST"])
def screening_create(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
    """Evaluate the screening rules for the patient and store the evaluation."""
    patient = selectors.get_patient_for(
        actor=actor, patient_id=patient_id, intent=Action.SCREENING_RECORD
    )
    form = ScreeningForm(request.POST or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            evaluation = services.record_screening(
                actor=actor, patient_id=patient_id, facts=form.facts()
            )
        except ValidationError as exc:
            errors = [message for message in exc.messages]
        else:
            return _created(request, "Screening evaluation", patient_id, evaluation)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "registry/screening_form.html",
        {"form": form, "patient": patient, "errors": errors, "title": "Screening evaluation"},
        status=status,
    )


@clinic_view
@require_http_methods(["GET", "POST"])
def adverse_event_create(request: HttpRequest, actor: Actor, patient_id: int) -> HttpResponse:
    """Report an adverse event for the patient (pending adjudication)."""
    patient = selectors.get_patient_for(
        actor=actor, patient_id=patient_id, intent=Action.ADVERSE_EVENT_REPORT
    )
    live = patient.episodes.filter(voided_at__isnull=True).order_by("start_date", "id")
    episodes = [
        (episode.pk, f"{episode.get_arm_display()} from {format_date(episode.start_date)}")
        for episode in live
    ]
    # An event is usually about the current treatment: its latest episode is preselected
    # (the reporter may still choose another, or none).
    initial = {"episode_id": episodes[-1][0]} if episodes else {}
    form = AdverseEventForm(request.POST or None, episodes=episodes, initial=initial)

    def call(form: AdverseEventForm) -> HttpResponse:
        event = services.record_adverse_event(
            actor=actor, patient_id=patient_id, **form.service_kwargs()
        )
        return _created(request, "Adverse event", patient_id, event)

    context = {"title": "Report an adverse event", "patient": patient}
    return _submit(request, form, call, context=context)


# ------------------------------------------------------------------------------ pathway


def _episode_form_view(
    action: Action,
    form_class: type,
    service: Callable[..., Any],
    *,
    title: str,
    what: str,
) -> Callable[..., HttpResponse]:
    """A page recording one pathway step on an episode (harvest, processing, injection)."""

    @clinic_view
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, actor: Actor, episode_id: int) -> HttpResponse:
        episode = selectors.get_episode_for(actor=actor, episode_id=episode_id, intent=action)
        form = form_class(request.POST or None)

        def call(form: Any) -> HttpResponse:
            obj = service(actor=actor, episode_id=episode_id, **form.service_kwargs())
            return _created(request, what, episode.patient_id, obj)

        # Say what blocks this step before the form is filled in, with the way forward.
        step = what.lower()
        waiting = [guidance_for(b, actor) for b in blockers(episode, step, timezone.localdate())]
        context = {
            "title": title,
            "patient": episode.patient,
            "episode": episode,
            "guidance": waiting,
        }
        return _submit(request, form, call, context=context, actor=actor)

    view.__name__ = view.__qualname__ = f"{what.lower()}_create"
    return view


harvest_create = _episode_form_view(
    Action.HARVEST_RECORD, HarvestForm, services.record_harvest, title="Record the harvest",
    what="Harvest",
)  # fmt: skip
processing_create = _episode_form_view(
    Action.PROCESSING_RECORD, ProcessingForm, services.record_processing,
    title="Record the processing", what="Processing",
)  # fmt: skip
injection_create = _episode_form_view(
    Action.INJECTION_RECORD, InjectionForm, services.record_injection,
    title="Record an injection", what="Injection",
)  # fmt: skip


@clinic_view
@require_http_methods(["GET", "POST"])
def sterility_record(request: HttpRequest, actor: Actor, episode_id: int) -> HttpResponse:
    """Record the lab's sterility result of the episode's product (pending → pass or fail);
    changing a result already recorded is a correction and needs a reason."""
    episode = selectors.get_episode_for(
        actor=actor, episode_id=episode_id, intent=Action.PROCESSING_RECORD
    )
    processing = getattr(getattr(episode, "harvest", None), "processing", None)
    form = SterilityForm(request.POST or None)

    def call(form: SterilityForm) -> HttpResponse:
        result = services.record_sterility_result(
            actor=actor, episode_id=episode_id, **form.service_kwargs()
        )
        from django.contrib import messages

        messages.success(
            request, f"Sterility result recorded: {result.get_sterility_display().lower()}."
        )
        return redirect(_patient_url(episode.patient_id, f"processing-{result.pk}"))

    guidance = []
    if processing is None:
        guidance = [
            guidance_for(b, actor) for b in blockers(episode, "injection", timezone.localdate())
        ]
    context = {
        "title": "Record the sterility result",
        "patient": episode.patient,
        "episode": episode,
        "processing": processing,
        "guidance": guidance,
        "intro": (
            f"Product {processing.product_id}, processed {format_date(processing.processed_on)} at "
            f"{processing.lab}. Current result: {processing.get_sterility_display().lower()}."
            if processing is not None
            else ""
        ),
    }
    return _submit(request, form, call, context=context, actor=actor)


# ----------------------------------------------------------------------- adjudication


@clinic_view
@require_http_methods(["GET"])
def adjudication_queue(request: HttpRequest, actor: Actor) -> HttpResponse:
    """Adverse events awaiting adjudication at the actor's clinics: serious first, then oldest
    onset; with who reported each and how long it has waited."""
    queue = selectors.adjudication_queue(actor=actor, today=timezone.localdate())
    return render(request, "registry/adjudication_queue.html", {"queue": queue})


@clinic_view
@require_http_methods(["GET", "POST"])
def adjudicate(request: HttpRequest, actor: Actor, adverse_event_id: int) -> HttpResponse:
    """Adjudicate one adverse event (CTCAE grade, serious, relatedness, expectedness)."""
    event = selectors.get_adverse_event_for(
        actor=actor, adverse_event_id=adverse_event_id, intent=Action.ADVERSE_EVENT_ADJUDICATE
    )
    # The reporter's seriousness starts ticked: a clinician confirms or clears it, never drops it
    # by not noticing an unticked box.
    initial = {"outcome": event.outcome, "serious": event.serious}
    form = AdjudicationForm(request.POST or None, initial=initial)

    def call(form: AdjudicationForm) -> HttpResponse:
        services.adjudicate_adverse_event(
            actor=actor, adverse_event_id=adverse_event_id, **form.cleaned_data
        )
        return _created(request, "Adjudication", event.patient_id, event)

    context = {"title": "Adjudicate an adverse event", "patient": event.patient, "event": event}
    return _submit(request, form, call, context=context, template="registry/adjudicate.html")


# ------------------------------------------------------------------------------- roles


@require_POST
@clinic_view
def choose_role(request: HttpRequest, actor: Actor) -> HttpResponse:
    """Act in another role the user holds (kept in the session), starting at its home."""
    role = request.POST.get("role", "")
    if role in held_roles(request.user):
        request.session[SESSION_ROLE] = role
    return redirect("staff-home")
