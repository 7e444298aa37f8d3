"""Patient portal views under ``/p/``. They parse input, call the follow-up services, render.

Session keys (JSON-serialisable):

* ``fu``: ``{"tp": <time point public id>, "patient": <patient id>}`` — the questionnaire this
  browser may answer, set by a link (:func:`open_view`, which adds ``"via": "link"`` and
  ``"at": <epoch seconds>``: a link session sees progress only for
  :data:`LINK_SESSION_PROGRESS_SECONDS`) or by a signed-in patient's choice;
* ``fu_drafts``: ``{<tp>: {<instrument>: {<item>: <text>}}}`` — answers kept between pages;
* ``fu_keys``: ``{<tp>: <idempotency key>}`` — made when the submit page is first shown, so a
  double click, a retry or a second tab all send the same key.

Every response carries ``Cache-Control: no-store``. The link landing (the only URL that ever holds
a token) answers with ``Referrer-Policy: no-referrer``; the other portal pages, whose URLs hold
nothing secret, use ``same-origin`` (nothing leaves the site). Not ``no-referrer`` everywhere on
purpose: under that policy browsers send ``Origin: null`` with form posts, which CSRF protection
must refuse.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Collection
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vertebra.core.instruments import get_definition
from vertebra.followup import forms as portal_forms
from vertebra.followup import screens as portal_screens
from vertebra.followup.errors import (
    AlreadyCompleted,
    BadIdempotencyKey,
    FollowUpError,
    LinkExpired,
    LinkNotFound,
    LinkReplaced,
    LinkRevoked,
    LinkUsed,
    SubmissionInvalid,
    WindowNotOpen,
)
from vertebra.followup.models import FollowUpTimePoint, Submission, TimePointStatus
from vertebra.followup.progress import charts_for_patient, psfs_for_patient, work_for_patient
from vertebra.followup.services import (
    hash_token,
    open_link,
    portal_time_point,
    psfs_names_for_point,
    submit_responses,
)
from vertebra.perimeter import throttle
from vertebra.perimeter.clientip import address_identity, client_ip
from vertebra.registry.models import PatientAccount

#: A link session may show the patient's progress for this long after the link was opened;
#: after that (or without a link) progress and history need the patient's account.
LINK_SESSION_PROGRESS_SECONDS = 30 * 60

View = Callable[..., HttpResponse]


def portal(view: View, referrer_policy: str = "same-origin") -> View:
    """Add the portal's privacy headers to every response of ``view``."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = referrer_policy
        response["Cache-Control"] = "no-store, private"
        return response

    return wrapper


def token_page(view: View) -> View:
    """:func:`portal` with ``Referrer-Policy: no-referrer``, for responses to a token URL."""
    return portal(view, referrer_policy="no-referrer")


# --- session helpers --------------------------------------------------------------------------


def _account_patient_id(request: HttpRequest) -> int | None:
    user = request.user
    if not user.is_authenticated:
        return None
    account = PatientAccount.objects.filter(user=user).first()
    return account.patient_id if account else None


def _current(request: HttpRequest) -> FollowUpTimePoint | None:
    """The time point this session may answer, re-checked against the database."""
    state = request.session.get("fu")
    if not isinstance(state, dict):
        return None
    public_id, patient_id = state.get("tp"), state.get("patient")
    if not isinstance(public_id, str) or not isinstance(patient_id, int):
        return None
    return portal_time_point(public_id, patient_id)


def _patient_id(request: HttpRequest) -> int | None:
    """The patient whose history this browser may see: a signed-in patient's own, or, for a
    link session, the link's patient while the link was opened less than
    :data:`LINK_SESSION_PROGRESS_SECONDS` ago (a forwarded or old link opens the questionnaire
    only, never the history)."""
    account = _account_patient_id(request)
    if account is not None:
        return account
    state = request.session.get("fu")
    if not isinstance(state, dict) or not isinstance(state.get("patient"), int):
        return None
    opened = state.get("at")
    if not isinstance(opened, int):
        return None
    if timezone.now().timestamp() - opened > LINK_SESSION_PROGRESS_SECONDS:
        return None
    return int(state["patient"])


def _drafts(request: HttpRequest, point: FollowUpTimePoint) -> dict[str, dict[str, str]]:
    stored = request.session.get("fu_drafts", {})
    value = stored.get(str(point.public_id), {}) if isinstance(stored, dict) else {}
    return value if isinstance(value, dict) else {}


def _save_draft(
    request: HttpRequest, point: FollowUpTimePoint, instrument_id: str, draft: dict[str, str]
) -> None:
    stored = request.session.get("fu_drafts", {})
    stored = stored if isinstance(stored, dict) else {}
    stored.setdefault(str(point.public_id), {})[instrument_id] = draft
    request.session["fu_drafts"] = stored


def _idempotency_key(request: HttpRequest, point: FollowUpTimePoint) -> str:
    keys = request.session.get("fu_keys", {})
    keys = keys if isinstance(keys, dict) else {}
    key = keys.get(str(point.public_id))
    if not key:
        key = secrets.token_urlsafe(24)
        keys[str(point.public_id)] = key
        request.session["fu_keys"] = keys
    return str(key)


def _enter(request: HttpRequest, point: FollowUpTimePoint) -> None:
    """Let this browser answer ``point``; a new session id defeats session fixation.

    ``via``/``at`` mark a link session: it opens this questionnaire only, and the patient's
    progress for :data:`LINK_SESSION_PROGRESS_SECONDS` (see :func:`progress`).
    """
    request.session.cycle_key()
    request.session["fu"] = {
        "tp": str(point.public_id),
        "patient": point.patient_id,
        "via": "link",
        "at": int(timezone.now().timestamp()),
    }


def _rate(scope: str) -> throttle.Rate:
    return throttle.Rate.parse(settings.THROTTLE_RATES[scope])


def _too_many(request: HttpRequest, decision: throttle.Decision) -> HttpResponse:
    response = _message(
        request,
        "Please wait a minute",
        "Too many links were tried from this connection. Please wait a minute and open "
        "the link from your e-mail again.",
        429,
    )
    response["Retry-After"] = str(decision.retry_after)
    return response


def _message(request: HttpRequest, title: str, text: str, status: int) -> HttpResponse:
    return render(request, "followup/message.html", {"title": title, "text": text}, status=status)


# --- link landing -----------------------------------------------------------------------------


@token_page
@require_GET
def open_view(request: HttpRequest) -> HttpResponse:
    """Exchange a link token for a session, then redirect to a URL without the token.

    Unknown token → 404; answered, replaced, withdrawn or expired → 410. Limits (counted in
    the database, so every server process shares them; ``settings.THROTTLE_RATES``):

    * ``portal_link_failures``: unknown tokens per client address (the real client behind the
      trusted proxies, :func:`~vertebra.perimeter.clientip.client_ip`) → 429 for *that*
      address only; another patient's valid link from another address still opens;
    * ``portal_link_opens``: attempts per token (its hash), so one leaked link hammered from
      many addresses is slowed without touching anyone else's link.
    """
    raw = request.GET.get("t", "")
    address = address_identity(client_ip(request))
    with throttle.batch():  # one short transaction for both counters
        failures = throttle.peek("portal_link_failures", address, _rate("portal_link_failures"))
        opens = (
            throttle.hit("portal_link_opens", hash_token(raw[:200]), _rate("portal_link_opens"))
            if raw and failures.allowed
            else None
        )
    if not failures.allowed:
        return _too_many(request, failures)
    if opens is not None and not opens.allowed:
        return _too_many(request, opens)
    try:
        point = open_link(raw, timezone.now())
    except LinkNotFound as exc:
        throttle.hit("portal_link_failures", address, _rate("portal_link_failures"))
        return _message(request, "Link not found", str(exc), 404)
    except LinkUsed as exc:
        return _message(request, "Already answered", str(exc), 410)
    except LinkReplaced as exc:
        return _message(request, "This link has been replaced", str(exc), 410)
    except LinkRevoked as exc:
        return _message(request, "This link no longer works", str(exc), 410)
    except LinkExpired as exc:
        return _message(request, "This link has expired", str(exc), 410)
    _enter(request, point)
    return redirect("followup:start")


# --- signed-in patients -----------------------------------------------------------------------


class PatientLoginView(LoginView):
    """Sign-in for patients with a portal account; staff use /accounts/login/."""

    template_name = "followup/signin.html"
    redirect_authenticated_user = False

    def get_success_url(self) -> str:
        return reverse("followup:home")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        response["Cache-Control"] = "no-store, private"
        return response


@portal
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """What is due: a signed-in patient's open questionnaires, or the link session's one."""
    patient_id = _account_patient_id(request)
    if patient_id is None:
        point = _current(request)
        if point is not None:
            return redirect("followup:start")
        return render(request, "followup/home.html", {"due": [], "signed_in": False})
    due = FollowUpTimePoint.objects.filter(
        patient_id=patient_id, status__in=[TimePointStatus.OPEN]
    ).order_by("opens")
    done = FollowUpTimePoint.objects.filter(
        patient_id=patient_id, status=TimePointStatus.COMPLETED
    ).order_by("opens")
    return render(request, "followup/home.html", {"due": due, "done": done, "signed_in": True})


@portal
@require_POST
def choose(request: HttpRequest, public_id: str) -> HttpResponse:
    """A signed-in patient starts one of their own open questionnaires (else 404)."""
    patient_id = _account_patient_id(request)
    point = (
        FollowUpTimePoint.objects.filter(
            public_id=public_id, patient_id=patient_id, status=TimePointStatus.OPEN
        ).first()
        if patient_id is not None
        else None
    )
    if point is None:
        raise Http404("No such questionnaire")
    request.session["fu"] = {"tp": str(point.public_id), "patient": point.patient_id}
    return redirect("followup:start")


@portal
@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    """Forget this browser's session (answers not yet sent are discarded)."""
    logout(request)
    request.session.flush()
    return render(request, "followup/signed_out.html")


# --- the questionnaire ------------------------------------------------------------------------


def _point_or_gone(request: HttpRequest) -> FollowUpTimePoint | HttpResponse:
    point = _current(request)
    if point is None:
        return _message(
            request,
            "Open the link from your e-mail",
            "To answer a questionnaire, open the link in the e-mail we sent you, or sign in.",
            403,
        )
    return point


@portal
@require_GET
def start(request: HttpRequest) -> HttpResponse:
    """The questionnaire's first page: what it is, how long, and a start button."""
    point = _point_or_gone(request)
    if isinstance(point, HttpResponse):
        return point
    if point.status == TimePointStatus.COMPLETED:
        return redirect("followup:done")
    drafts = _drafts(request, point)
    screens = portal_screens.plan(point.instruments)
    resume = portal_screens.first_unfinished(screens, drafts, _psfs_names(point))
    return render(
        request,
        "followup/start.html",
        {
            "point": point,
            "count": len(point.instruments),
            "screens": len(screens),
            "resume": resume.number if resume else None,
            "has_drafts": bool(drafts),
        },
    )


def _psfs_names(point: FollowUpTimePoint) -> tuple[str, ...]:
    """The episode's stored PSFS activities when this questionnaire asks the PSFS (else none);
    read with the point (:func:`_current`), no query."""
    return psfs_names_for_point(point) if "psfs" in point.instruments else ()


def _from_review(request: HttpRequest) -> bool:
    """True when the patient came to a screen from the review page's "Change" link."""
    return request.GET.get("from") == "review"


@portal
@require_http_methods(["GET", "POST"])
def question(request: HttpRequest, number: int) -> HttpResponse:
    """Screen ``number`` (1-based): one instrument, or one question of a long one.

    POST validates the screen's questions, keeps its answers in the session draft (valid ones
    even when another is not) and either shows the screen again with a message beside each
    question to fix (status 200, like any form a person corrects: browsers log a 4xx page as a
    console error) or moves on: to the next screen, to the review page after the
    last, or back to the review page when the patient came from there to change an answer.
    """
    point = _point_or_gone(request)
    if isinstance(point, HttpResponse):
        return point
    if point.status == TimePointStatus.COMPLETED:
        return redirect("followup:done")
    screens = portal_screens.plan(point.instruments)
    if not 1 <= number <= len(screens):
        raise Http404("No such page")
    screen = screens[number - 1]
    drafts = _drafts(request, point)
    from_review = _from_review(request)
    names = _psfs_names(point) if screen.instrument_id == "psfs" else ()
    if request.method == "POST":
        form = portal_screens.screen_form(screen, data=request.POST, psfs_names=names)
        valid = form.is_valid()
        kept = {k: str(v) for k, v in getattr(form, "cleaned_data", {}).items() if v}
        merged = portal_screens.merge_draft(screen, drafts.get(screen.instrument_id, {}), kept)
        _save_draft(request, point, screen.instrument_id, merged)
        if valid:
            if from_review:  # back to the answer just changed
                return redirect(f"{reverse('followup:review')}#part-{screen.part}")
            if number == len(screens):
                return redirect("followup:review")
            return redirect("followup:question", number=number + 1)
    else:
        form = portal_screens.screen_form(
            screen, draft=drafts.get(screen.instrument_id), psfs_names=names
        )
    if from_review:
        back_url = f"{reverse('followup:review')}#part-{screen.part}"
    elif number > 1:
        back_url = reverse("followup:question", args=[number - 1])
    else:
        back_url = reverse("followup:start")
    return render(
        request,
        "followup/question.html",
        {
            "point": point,
            "form": form,
            "definition": get_definition(screen.instrument_id),
            "screen": screen,
            "number": number,
            "total": len(screens),
            "parts": len(point.instruments),
            "last": number == len(screens),
            "from_review": from_review,
            "back_url": back_url,
        },
    )


def _answer_sets(
    point: FollowUpTimePoint, drafts: dict[str, dict[str, str]], psfs_names: tuple[str, ...]
) -> tuple[dict[str, dict[str, Any]], list[tuple[int, str]]]:
    """Typed answers of every complete part, and the (part, title) of incomplete ones."""
    answers: dict[str, dict[str, Any]] = {}
    missing: list[tuple[int, str]] = []
    for number, instrument_id in enumerate(point.instruments, 1):
        draft = drafts.get(instrument_id)
        if portal_forms.draft_is_complete(instrument_id, draft, psfs_names):
            answers[instrument_id] = portal_forms.parse_draft(instrument_id, draft or {})
        else:
            missing.append((number, get_definition(instrument_id).title))
    return answers, missing


@portal
@require_GET
def review(request: HttpRequest) -> HttpResponse:
    """Check before sending: every question with its answer in words and a "Change" link, what
    is still missing, and one Send button (with the idempotency key) once nothing is.

    Nothing is stored here: the answers stay a session draft until :func:`submit`.
    """
    point = _point_or_gone(request)
    if isinstance(point, HttpResponse):
        return point
    if point.status == TimePointStatus.COMPLETED:
        return redirect("followup:done")
    return _review_page(request, point)


def _review_page(
    request: HttpRequest, point: FollowUpTimePoint, refused: Collection[str] = ()
) -> HttpResponse:
    """The review page of ``point``'s draft; ``refused`` names the instruments whose answers
    the submission refused as missing or not fitting together (each part listed with a link
    to its first page), so the patient sees what to change instead of the same page again
    with no reason. Status 200, as the portal's pages answer a refused answer (a 4xx document
    is a console error in the patient's browser)."""
    screens = portal_screens.plan(point.instruments)
    parts = portal_screens.review_parts(screens, _drafts(request, point), _psfs_names(point))
    missing = [part for part in parts if not part.complete]
    to_check = [part for part in parts if part.instrument_id in refused]
    return render(
        request,
        "followup/review.html",
        {
            "point": point,
            "parts": parts,
            "missing": missing,
            "to_check": to_check,
            "key": _idempotency_key(request, point),
            "total": len(screens),
        },
    )


@portal
@require_POST
def submit(request: HttpRequest) -> HttpResponse:
    """Store the answers once; a repeat with the same key gets the same confirmation."""
    point = _point_or_gone(request)
    if isinstance(point, HttpResponse):
        return point
    drafts = _drafts(request, point)
    names = _psfs_names(point)
    answers, _ = _answer_sets(point, drafts, names)
    try:
        result = submit_responses(
            point,
            answers,
            request.POST.get("idempotency_key", ""),
            timezone.now(),
            psfs_names=names or portal_forms.psfs_names_from_draft(drafts.get("psfs")),
        )
    except SubmissionInvalid as exc:
        # Answers each page accepted but that do not fit together (e.g. "no opioid" with a
        # dose): say which part to change (a bare redirect showed the same page, no reason).
        return _review_page(request, point, refused=exc.errors)
    except AlreadyCompleted as exc:
        return _message(request, "Already answered", str(exc), 409)
    except WindowNotOpen as exc:
        return _message(request, "This questionnaire is closed", str(exc), 410)
    except BadIdempotencyKey as exc:
        return _message(request, "Please try again", str(exc), 400)
    except FollowUpError as exc:  # any other refusal: plain message, never a traceback
        return _message(request, "Not saved", str(exc), 400)
    drafts = request.session.get("fu_drafts", {})
    if isinstance(drafts, dict) and drafts.pop(str(point.public_id), None) is not None:
        request.session["fu_drafts"] = drafts
    response = redirect(f"{reverse('followup:done')}?ref={result.submission.reference}")
    response.status_code = 303
    return response


@portal
@require_GET
def done(request: HttpRequest) -> HttpResponse:
    """The confirmation: the same page however many times the answers were sent."""
    point = _point_or_gone(request)
    if isinstance(point, HttpResponse):
        return point
    submission = Submission.objects.filter(time_point=point).first()
    if submission is None:
        return redirect("followup:start")
    return render(
        request,
        "followup/done.html",
        {
            "point": point,
            "submission": submission,
            "has_tickler": "ae_tickler" in point.instruments,
        },
    )


@portal
@require_GET
def progress(request: HttpRequest) -> HttpResponse:
    """The patient's own pain and disability over time, with the MCID, in plain words."""
    patient_id = _patient_id(request)
    if patient_id is None:
        return _message(
            request,
            "Open the link from your e-mail",
            "To see your progress, sign in to your patient account, or open the link in the "
            "most recent e-mail we sent you.",
            403,
        )
    return render(
        request,
        "followup/progress.html",
        {
            "charts": charts_for_patient(patient_id),
            "work": work_for_patient(patient_id),
            "psfs": psfs_for_patient(patient_id),
        },
    )
