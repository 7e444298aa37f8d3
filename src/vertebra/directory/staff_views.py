"""The clinic admin's directory page: publish (consent) or withdraw, and answer the questions.

Signed-in staff only (``clinic_view``); the services decide who may act (``directory.manage``,
the clinic's own admins) and audit every change.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from vertebra.directory import selectors, services
from vertebra.directory.forms import AnswersForm, PublishForm
from vertebra.registry.errors import NotFound
from vertebra.registry.models import Clinic
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.views import _add_errors, clinic_view
from vertebra.web.knowledge_selectors import questions_to_ask


def _clinic(actor: Actor, clinic_id: int) -> Clinic:
    """The clinic if the actor manages its entry (NotFound otherwise, like a missing one)."""
    if clinic_id not in verify_actor(actor, Action.DIRECTORY_MANAGE):
        raise NotFound("clinic", clinic_id)
    found = Clinic.objects.filter(pk=clinic_id).first()
    if found is None:
        raise NotFound("clinic", clinic_id)
    return found


@clinic_view
@require_http_methods(["GET"])
def home(request: HttpRequest, actor: Actor) -> HttpResponse:
    """The admin's clinics; with one clinic, straight to its page."""
    ids = sorted(verify_actor(actor, Action.DIRECTORY_MANAGE))
    if len(ids) == 1:
        return redirect("directory-staff:clinic", clinic_id=ids[0])
    clinics = Clinic.objects.filter(pk__in=ids).order_by("name")
    return render(request, "directory/staff_home.html", {"clinics": clinics})


@clinic_view
@require_http_methods(["GET", "POST"])
def clinic(request: HttpRequest, actor: Actor, clinic_id: int) -> HttpResponse:
    """The clinic's listing and its answers form (POST saves the answers)."""
    found = _clinic(actor, clinic_id)
    questions = questions_to_ask()
    if request.method == "POST":
        form = AnswersForm(request.POST, questions=questions)
        if form.is_valid():
            try:
                changed = services.save_answers(
                    actor=actor, clinic_id=found.pk, answers=form.cleaned_data
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(
                    request, f"Answers saved ({changed} changed)." if changed else "No change."
                )
                return redirect("directory-staff:clinic", clinic_id=found.pk)
    else:
        form = AnswersForm(initial=selectors.answers_of(found.pk), questions=questions)
    listing = selectors.listing_of(found.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "directory/staff_clinic.html",
        {
            "clinic": found,
            "listing": listing,
            "form": form,
            "public_url": reverse("directory:clinic", args=[found.pk]),
        },
        status=status,
    )


@clinic_view
@require_POST
def publish(request: HttpRequest, actor: Actor, clinic_id: int) -> HttpResponse:
    """Publish or withdraw the clinic's entry (the admin's consent, audited)."""
    _clinic(actor, clinic_id)  # another clinic's id answers 404 whatever the body
    form = PublishForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose to publish or to withdraw.")
        return redirect("directory-staff:clinic", clinic_id=clinic_id)
    listing = services.set_published(
        actor=actor, clinic_id=clinic_id, published=form.cleaned_data["publish"]
    )
    if listing.published:
        messages.success(request, "Published: patients can now find your clinic at /clinics/.")
    else:
        messages.success(request, "Withdrawn: your clinic is no longer shown in the directory.")
    return redirect("directory-staff:clinic", clinic_id=clinic_id)
