"""Pages to correct, void and see the history of any clinical record (under ``/clinic/records/``).

Contracts
---------
* One set of pages for every record type of :mod:`vertebra.registry.corrections`; the URL names
  the type by its slug (``/clinic/records/harvests/12/correct/``).
* Same guard as every clinic page (:func:`vertebra.registry.views.clinic_view`): a role that may
  not correct the type gets 403, a record outside the actor's clinics the same 404 as a missing
  one. The patient page links here only for roles allowed.
* A stale edit is answered **409** with the other change (who, when, role, why, old → new, from
  the audit trail) beside what the user submitted; nothing is overwritten. The form below it
  starts from the current version, so saving again is a deliberate act.
* A correction or void that did more (a follow-up schedule moved, invitations stopped) says so
  in the message shown on the patient page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from vertebra.registry import corrections
from vertebra.registry.audit import to_json_value
from vertebra.registry.correction_forms import CorrectionForm, VoidForm
from vertebra.registry.errors import (
    ChainOfCustodyError,
    PermissionDeniedError,
    RecordVoidedError,
    StaleEditError,
)
from vertebra.registry.permissions import Actor, is_allowed
from vertebra.registry.views import _add_errors, _patient_url, clinic_view


def _context(kind: corrections.RecordType, instance: Any) -> dict[str, Any]:
    patient = corrections.patient_of(kind, instance)
    return {
        "kind": kind,
        "record": instance,
        "patient": patient,
        "what": corrections.describe(kind, instance),
        "back": _patient_url(patient.pk, _anchor(kind, instance)),
    }


def _anchor(kind: corrections.RecordType, instance: Any) -> str:
    if kind.slug == "patients":
        return ""
    return f"{kind.object_type}-{instance.pk}"


def _closed(request: HttpRequest, kind: corrections.RecordType, instance: Any) -> HttpResponse:
    """A voided record (or one staff may not change) has no form: say why, link its history."""
    if instance.voided_at is not None:
        message = str(RecordVoidedError(kind.noun, instance.pk))
    else:
        message = kind.refusal(instance) if kind.refusal is not None else ""
    return render(
        request,
        "registry/record_closed.html",
        {**_context(kind, instance), "message": message},
        status=409,
    )


def _is_closed(kind: corrections.RecordType, instance: Any) -> bool:
    refused = kind.refusal(instance) if kind.refusal is not None else ""
    return instance.voided_at is not None or bool(refused)


def _done(request: HttpRequest, outcome: corrections.Outcome, text: str) -> HttpResponse:
    kind = corrections.type_of(outcome.record)
    messages.success(request, text)
    for note in outcome.notes:
        messages.info(request, note)
    patient = corrections.patient_of(kind, outcome.record)
    return redirect(_patient_url(patient.pk, _anchor(kind, outcome.record)))


@clinic_view
@require_http_methods(["GET", "POST"])
def correct(request: HttpRequest, actor: Actor, slug: str, object_id: int) -> HttpResponse:
    """Correct one record: prefilled form, hidden version, required reason."""
    kind = corrections.get_type(slug)
    instance = corrections.get_for_correction(actor=actor, record_type=slug, object_id=object_id)
    if _is_closed(kind, instance):
        return _closed(request, kind, instance)
    form = CorrectionForm(
        request.POST or None, record_type=kind, instance=instance, role=actor.role
    )
    if request.method == "POST" and form.is_valid():
        try:
            outcome = corrections.correct(
                actor=actor,
                record_type=slug,
                object_id=object_id,
                expected_version=form.cleaned_data["version"],
                changes=form.changes(),
                reason=form.cleaned_data["reason"],
            )
        except StaleEditError as exc:
            return _conflict(request, actor, kind, form, exc)
        except ValidationError as exc:
            _add_errors(form, exc)
        except (ChainOfCustodyError, RecordVoidedError) as exc:
            form.add_error(None, str(exc))
        else:
            what = corrections.describe(kind, outcome.record)
            return _done(request, outcome, f"{what}: correction saved.")
    status = 400 if request.method == "POST" else 200
    context = {**_context(kind, instance), "form": form, "title": "Correct a record"}
    return render(request, "registry/correct.html", context, status=status)


#: Fields posted as several inputs (answers per item, a list of levels): never merged, the
#: form keeps what the user posted and the table above it shows both.
MULTI_INPUT_FIELDS = frozenset({"answers", "levels"})


def _put_form_value(data: Any, name: str, value: Any) -> None:
    """Set field ``name`` of the posted QueryDict ``data`` to the stored ``value``, written as
    a browser would post it (a checkbox absent when false, dates in ISO form, None empty)."""
    if isinstance(value, bool):
        if value:
            data[name] = "on"
        else:
            data.pop(name, None)
        return
    json_value = to_json_value(value)
    data[name] = "" if json_value is None else str(json_value)


def _conflict(
    request: HttpRequest,
    actor: Actor,
    kind: corrections.RecordType,
    form: CorrectionForm,
    exc: StaleEditError,
) -> HttpResponse:
    """409: the change the user missed, beside what they submitted, and a fresh form."""
    current, missed = corrections.changes_since(
        actor=actor,
        record_type=kind.slug,
        object_id=int(exc.object_id),
        version=exc.expected_version,
    )
    submitted = form.changes()
    rows = []
    for name in form.editable:
        now = to_json_value(getattr(current, name))
        mine = to_json_value(submitted.get(name))
        rows.append(
            {
                "label": kind.spec(name).label,
                "current": corrections.display(kind, name, now, {}),
                "submitted": corrections.display(kind, name, mine, {}),
                "differs": now != mine,
            }
        )
    # The form again, now against the current version: what the user changed, and the other
    # person's change on every field the user left as it was when they opened the form (so
    # saving again never undoes the change they missed).
    opened = corrections.values_when_opened(
        actor=actor, record_type=kind.slug, object_id=current.pk, version=exc.expected_version
    )
    data = request.POST.copy()
    for name, was in opened.items():
        if name in MULTI_INPUT_FIELDS or name not in form.editable:
            continue
        if to_json_value(submitted.get(name)) == was:
            _put_form_value(data, name, getattr(current, name))
    data["version"] = str(current.version)
    fresh = CorrectionForm(data, record_type=kind, instance=current, role=actor.role)
    fresh.is_valid()
    context = {
        **_context(kind, current),
        "message": str(exc),
        "missed": missed,
        "rows": rows,
        "reason": form.cleaned_data.get("reason", ""),
        "form": fresh,
        "title": "Changed by someone else",
    }
    return render(request, "registry/correction_conflict.html", context, status=409)


@clinic_view
@require_http_methods(["GET", "POST"])
def void(request: HttpRequest, actor: Actor, slug: str, object_id: int) -> HttpResponse:
    """Void one record entered in error, after a confirm page asking why."""
    kind = corrections.get_type(slug)
    instance = corrections.get_for_correction(actor=actor, record_type=slug, object_id=object_id)
    needed = kind.void_action(instance) if kind.void_action is not None else None
    if needed is not None and not is_allowed(actor.role, needed):
        # Refused up front, as the service would refuse the submission.
        raise PermissionDeniedError(f"Your role may not void this {kind.noun}.", action=needed)
    if _is_closed(kind, instance):
        return _closed(request, kind, instance)
    form = VoidForm(request.POST or None, initial={"version": instance.version})
    if request.method == "POST" and form.is_valid():
        try:
            outcome = corrections.void(
                actor=actor,
                record_type=slug,
                object_id=object_id,
                expected_version=form.cleaned_data["version"],
                reason=form.cleaned_data["reason"],
            )
        except StaleEditError as exc:
            current, missed = corrections.changes_since(
                actor=actor, record_type=slug, object_id=object_id, version=exc.expected_version
            )
            context = {
                **_context(kind, current),
                "message": str(exc),
                "missed": missed,
                "form": VoidForm(initial={"version": current.version}),
                "title": "Changed by someone else",
            }
            return render(request, "registry/void.html", context, status=409)
        except ValidationError as exc:
            _add_errors(form, exc)
        except (ChainOfCustodyError, RecordVoidedError) as exc:
            form.add_error(None, str(exc))
        else:
            what = corrections.describe(kind, outcome.record)
            return _done(request, outcome, f"{what}: voided. It stays on record, struck through.")
    status = 400 if request.method == "POST" else 200
    context = {**_context(kind, instance), "form": form, "title": "Void a record"}
    return render(request, "registry/void.html", context, status=status)


@clinic_view
@require_http_methods(["GET"])
def history(request: HttpRequest, actor: Actor, slug: str, object_id: int) -> HttpResponse:
    """Every recording, correction and void of one record: who, when, role, why, old → new."""
    found = corrections.record_history(actor=actor, record_type=slug, object_id=object_id)
    context = {
        **_context(found.record_type, found.record),
        "entries": found.entries,
        "title": "History",
    }
    return render(request, "registry/history.html", context)


def patient_edit(request: HttpRequest, patient_id: int) -> HttpResponse:
    """``/clinic/patients/<id>/edit/`` ("Edit details"): the correction page of the patient."""
    return correct(request, slug="patients", object_id=patient_id)
