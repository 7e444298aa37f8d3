"""MFA pages: set up an authenticator, enter a code after the password, recovery codes, reset.

Thin views over :mod:`vertebra.mfa.services` (which audit every outcome). Every page is
``Cache-Control: no-store``: secrets and recovery codes must not stay in a browser cache.
Recovery codes are rendered once, in the response to the request that made them, and never
stored in a readable form.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from vertebra.mfa import services
from vertebra.mfa.forms import CodeForm, PasswordForm
from vertebra.mfa.middleware import owed_step


def _request_id(request: HttpRequest) -> str:
    return request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex


def _next_url(request: HttpRequest) -> str:
    """The page to go on to: a same-site ``next``, else the home page."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


def second_factor_passed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Only for a session that owes no MFA step: these pages change the second factor, so a
    password alone (the first factor) must never reach them."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        step = owed_step(request)
        if step is not None:
            return redirect(f"{reverse(f'mfa:{step}')}?next={reverse('mfa:manage')}")
        return view(request, *args, **kwargs)

    return wrapper


def _codes_page(request: HttpRequest, codes: list[str], *, first_time: bool) -> HttpResponse:
    return render(
        request,
        "mfa/recovery_codes.html",
        {"codes": codes, "first_time": first_time, "next": _next_url(request)},
    )


@login_required
@never_cache
@second_factor_passed
def manage(request: HttpRequest) -> HttpResponse:
    """The account's sign-in security: MFA status, new recovery codes, reset."""
    return render(
        request,
        "mfa/manage.html",
        {
            "has_mfa": services.has_mfa(request.user),
            "required": services.mfa_required(request.user),
            "codes_left": services.recovery_codes_left(request.user),
            "password_form": PasswordForm(),
        },
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: QR code and secret, then a code from the app to confirm.

    Only for accounts without one: changing an authenticator means resetting first (with the
    password), so a stolen password alone can never replace someone's second factor.
    """
    if services.has_mfa(request.user):
        if owed_step(request) == "verify":
            return redirect(f"{reverse('mfa:verify')}?next={reverse('mfa:manage')}")
        messages.info(request, "Multi-factor sign-in is already set up for your account.")
        return redirect("mfa:manage")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        codes = services.confirm_enrolment(
            request, form.cleaned_data["code"], request_id=_request_id(request)
        )
        if codes is not None:
            return _codes_page(request, codes, first_time=True)
        form.add_error("code", "That code did not match. Enter the current code from the app.")
        status = 400
    elif request.method == "POST":
        status = 400
    enrolment = services.pending_enrolment(request.user)
    qr = segno.make(enrolment.config_url, error="m")
    return render(
        request,
        "mfa/setup.html",
        {
            "form": form,
            "enrolment": enrolment,
            "qr_data_uri": qr.svg_data_uri(scale=5, border=2, dark="#111", light="#fff"),
            "required": services.mfa_required(request.user),
            "next": _next_url(request),
        },
        status=status,
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second sign-in step: a code from the authenticator app or a recovery code."""
    step = owed_step(request)
    if step == "setup":
        return redirect(f"{reverse('mfa:setup')}?next={_next_url(request)}")
    if step is None:
        return HttpResponseRedirect(_next_url(request))
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        method = services.verify_second_factor(
            request, form.cleaned_data["code"], request_id=_request_id(request)
        )
        if method is not None:
            if method == "recovery_code":
                left = services.recovery_codes_left(request.user)
                messages.warning(
                    request,
                    f"You signed in with a recovery code; {left} left. Each works once: "
                    "make new ones on your sign-in security page if you are running low.",
                )
            return HttpResponseRedirect(_next_url(request))
        form.add_error(
            "code",
            "That code did not match, or too many codes were wrong: wait a little and enter "
            "the current code.",
        )
        status = 400
    elif request.method == "POST":
        status = 400
    return render(
        request, "mfa/verify.html", {"form": form, "next": _next_url(request)}, status=status
    )


def _password_form(request: HttpRequest) -> tuple[PasswordForm, str | None]:
    form = PasswordForm(request.POST)
    return form, form.cleaned_data["password"] if form.is_valid() else None


def _manage_with_error(request: HttpRequest, form: Any) -> HttpResponse:
    form.add_error("password", "That password is not right.")
    context = {
        "has_mfa": services.has_mfa(request.user),
        "required": services.mfa_required(request.user),
        "codes_left": services.recovery_codes_left(request.user),
        "password_form": form,
    }
    return render(request, "mfa/manage.html", context, status=400)


@login_required
@never_cache
@require_POST
@second_factor_passed
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes (the old ones stop working), after the password again."""
    form, password = _password_form(request)
    codes = (
        services.new_recovery_codes(request, password, request_id=_request_id(request))
        if password is not None
        else None
    )
    if codes is None:
        return _manage_with_error(request, form)
    return _codes_page(request, codes, first_time=False)


@login_required
@never_cache
@require_POST
@second_factor_passed
def reset(request: HttpRequest) -> HttpResponse:
    """Remove the authenticator and recovery codes, after the password again."""
    form, password = _password_form(request)
    if password is None or not services.reset_mfa(
        request, password, request_id=_request_id(request)
    ):
        return _manage_with_error(request, form)
    if services.mfa_required(request.user):
        messages.info(request, "Your role requires multi-factor sign-in: set up a new app now.")
        return redirect("mfa:setup")
    messages.info(request, "Multi-factor sign-in is off for your account.")
    return redirect("mfa:manage")
