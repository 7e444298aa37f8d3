"""Writes of the clinic directory: a clinic admin's consent to publish, and the clinic's answers.

Contracts
---------
* Only a clinic admin of the clinic acts (``directory.manage`` in the permission matrix,
  re-checked against the memberships in the database by :func:`verify_actor`). Another
  clinic's id answers exactly like a missing one (NotFound), and every refusal leaves a
  ``denied`` audit row (:func:`audited_transaction`).
* Every change writes one audit row in the same transaction: object type ``clinic_listing``
  (old and new ``published``, ``published_on``) or ``clinic_answers`` (the questions whose
  answers changed, old and new text). A call that changes nothing writes nothing.
* Publishing sets ``published_on`` to the day of consent; withdrawing keeps the row (and the
  trail keeps every switch), so consent is never inferred from a missing row.
* :func:`publish_demo_directory` is the demo's setup: it publishes every clinic of a
  synthetic registry that has no listing yet, with the synthetic answers of
  ``data/synth/clinic_answers.yaml``, as the system account ``demo-setup``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from vertebra.core.yamltext import load_yaml
from vertebra.directory.models import ClinicAnswer, ClinicListing
from vertebra.registry.audit import audited_transaction, record_audit, system_actor
from vertebra.registry.errors import NotFound
from vertebra.registry.models import Clinic
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.web.knowledge_selectors import questions_to_ask

__all__ = [
    "MAX_ANSWER_CHARS",
    "publish_demo_directory",
    "save_answers",
    "set_published",
]

#: An answer is a paragraph, not a brochure.
MAX_ANSWER_CHARS = 1500


def _own_clinic(actor: Actor, clinic_id: int) -> Clinic:
    """The clinic, if ``actor`` manages its directory entry; NotFound otherwise."""
    clinics = verify_actor(actor, Action.DIRECTORY_MANAGE)
    if clinic_id not in clinics:
        raise NotFound("clinic", clinic_id)
    clinic = Clinic.objects.select_for_update().filter(pk=clinic_id).first()
    if clinic is None:
        raise NotFound("clinic", clinic_id)
    return clinic


def _listing_values(listing: ClinicListing | None) -> dict[str, Any]:
    if listing is None:
        return {"published": False, "published_on": None}
    on = listing.published_on.isoformat() if listing.published_on else None
    return {"published": listing.published, "published_on": on}


@audited_transaction
def set_published(
    *, actor: Actor, clinic_id: int, published: bool, now: dt.datetime | None = None
) -> ClinicListing:
    """Publish (``published`` True: the admin's consent, dated today) or withdraw the clinic's
    directory entry; audited. Returns the listing."""
    clinic = _own_clinic(actor, clinic_id)
    moment = now or timezone.now()
    listing = ClinicListing.objects.filter(clinic=clinic).first()
    old = _listing_values(listing)
    if listing is not None and listing.published == published:
        return listing
    created = listing is None
    if listing is None:
        listing = ClinicListing(clinic=clinic)
    listing.published = published
    if published:
        listing.published_on = timezone.localtime(moment).date()
    listing.changed_at = moment
    listing.changed_by = actor.user
    listing.full_clean()
    listing.save()
    record_audit(
        actor=actor,
        action="create" if created else "update",
        object_type="clinic_listing",
        object_id=listing.pk,
        clinic_id=clinic.pk,
        old_values=old,
        new_values=_listing_values(listing),
        reason="publish consent given" if published else "publish consent withdrawn",
        occurred_at=moment,
    )
    return listing


def _clean(answers: Mapping[str, str]) -> dict[str, str]:
    """Answers keyed by known question ids, whitespace trimmed; ValidationError otherwise."""
    known = {q.id for q in questions_to_ask()}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise ValidationError(f"Unknown question: {', '.join(unknown)}.")
    out = {}
    errors = {}
    for qid, text in answers.items():
        value = (text or "").strip()
        if len(value) > MAX_ANSWER_CHARS:
            errors[qid] = f"Keep the answer under {MAX_ANSWER_CHARS} characters."
        out[qid] = value
    if errors:
        raise ValidationError(errors)
    return out


@audited_transaction
def save_answers(
    *, actor: Actor, clinic_id: int, answers: Mapping[str, str], now: dt.datetime | None = None
) -> int:
    """Store the clinic's answers (an empty answer removes it); audited. Returns how many
    answers changed."""
    clinic = _own_clinic(actor, clinic_id)
    clean = _clean(answers)
    moment = now or timezone.now()
    stored = {a.question_id: a for a in ClinicAnswer.objects.filter(clinic=clinic)}
    old: dict[str, str] = {}
    new: dict[str, str] = {}
    for qid, text in clean.items():
        row = stored.get(qid)
        before = row.text if row else ""
        if before == text:
            continue
        old[qid], new[qid] = before, text
        if not text and row is not None:
            row.delete()
        elif row is None:
            ClinicAnswer.objects.create(
                clinic=clinic, question_id=qid, text=text, changed_at=moment, changed_by=actor.user
            )
        else:
            row.text, row.changed_at, row.changed_by = text, moment, actor.user
            row.save(update_fields=["text", "changed_at", "changed_by"])
    if new:
        record_audit(
            actor=actor,
            action="update",
            object_type="clinic_answers",
            object_id=clinic.pk,
            clinic_id=clinic.pk,
            old_values=old,
            new_values=new,
            reason="clinic answers to the questions to ask a clinic",
            occurred_at=moment,
        )
    return len(new)


def _demo_answers() -> dict[str, dict[str, str]]:
    """regulatory status -> question id -> the synthetic answer (data/synth)."""
    raw: Any = load_yaml(
        files("vertebra")
        .joinpath("data", "synth", "clinic_answers.yaml")
        .read_text(encoding="utf-8")
    )
    return {
        status: {qid: " ".join(str(text).split()) for qid, text in answers.items()}
        for status, answers in raw["answers"].items()
    }


@transaction.atomic
def publish_demo_directory(*, now: dt.datetime | None = None) -> int:
    """Publish every clinic that has no listing yet, with synthetic answers; for the demo's
    synthetic registry only (its setup, never a person's consent). Returns how many."""
    moment = now or timezone.now()
    actor = system_actor("demo-setup", request_id="demo-setup")
    answers = _demo_answers()
    done = 0
    for clinic in Clinic.objects.filter(listing__isnull=True).order_by("pk"):
        listing = ClinicListing.objects.create(
            clinic=clinic,
            published=True,
            published_on=timezone.localtime(moment).date(),
            changed_at=moment,
        )
        given = answers.get(clinic.regulatory_status, {})
        ClinicAnswer.objects.bulk_create(
            ClinicAnswer(clinic=clinic, question_id=q, text=t, changed_at=moment)
            for q, t in given.items()
        )
        record_audit(
            actor=actor,
            action="create",
            object_type="clinic_listing",
            object_id=listing.pk,
            clinic_id=clinic.pk,
            new_values={**_listing_values(listing), "answers": sorted(given)},
            reason="demo setup: synthetic clinic published with synthetic answers",
            occurred_at=moment,
        )
        done += 1
    return done
