"""What a clinic chose to publish: its consent to be listed, and its answers to the questions
patients should ask a clinic.

Contracts
---------
* Rows hold data only; every write goes through :mod:`vertebra.directory.services`, which
  checks that the actor is the clinic's own admin and writes the audit record in the same
  transaction (ADR 0014). No logic in ``save()``, no signals.
* A clinic without a :class:`ClinicListing` row, or with ``published`` false, is not listed:
  publishing is opt-in. ``published_on`` is the date of the latest consent; ``changed_at`` and
  ``changed_by`` say who last switched it (the audit trail keeps every switch).
* :class:`ClinicAnswer` keys ``question_id`` to the ids of ``data/learn/questions_to_ask.yaml``;
  an answer to a question that is no longer asked is kept but not shown.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from vertebra.registry.models import Clinic


class ClinicListing(models.Model):
    """A clinic's consent to appear in the public directory (one row per clinic, once asked)."""

    clinic = models.OneToOneField(Clinic, on_delete=models.PROTECT, related_name="listing")
    published = models.BooleanField(default=False)
    published_on = models.DateField(null=True, blank=True)
    changed_at = models.DateTimeField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            # A published listing always says since when it has the admin's consent.
            models.CheckConstraint(
                name="listing_published_has_date",
                condition=Q(published=False) | Q(published_on__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Listing of clinic {self.clinic_id} ({'published' if self.published else 'not published'})"


class ClinicAnswer(models.Model):
    """A clinic's own answer to one of the questions to ask a clinic."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="answers")
    question_id = models.CharField(max_length=60)
    text = models.TextField()
    changed_at = models.DateTimeField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["clinic_id", "question_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "question_id"], name="answer_one_per_clinic_question"
            ),
        ]

    def __str__(self) -> str:
        return f"Answer of clinic {self.clinic_id} to {self.question_id}"
