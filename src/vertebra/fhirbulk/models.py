"""System clients (SMART Backend Services), their access tokens, and Bulk Data export jobs.

* :class:`BackendClient` — a registered system client: its public keys (a JWKS document) and
  the clinic it may export (or ``research``: registry-wide, de-identified only, see
  :mod:`vertebra.fhirbulk.jobs`). Registered by an admin (Django admin or
  ``vertebra fhir client add``), never by the client itself.
* :class:`UsedAssertion` — the ``jti`` of every accepted client assertion until it expires, so a
  replayed assertion is refused (unique per client).
* :class:`AccessToken` — a short-lived bearer token issued for an assertion; only its SHA-256
  is stored, as for people's API tokens.
* :class:`ExportJob` — one ``$export`` request: who asked, the scope, its state, and what was
  written. The worker runs queued jobs (:func:`vertebra.fhirbulk.jobs.run_pending`); the
  database row is the queue, as the follow-up reminders are.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from vertebra.registry.models import Clinic


class ClientKind(models.TextChoices):
    CLINIC = "clinic", "Clinic system (identified data of one clinic)"
    RESEARCH = "research", "Research system (registry-wide, de-identified only)"


class BackendClient(models.Model):
    """A system client that authenticates with a signed JWT (SMART Backend Services)."""

    client_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, help_text="Who runs the system and what it is.")
    kind = models.CharField(max_length=20, choices=ClientKind.choices)
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, null=True, blank=True, related_name="fhir_clients"
    )
    jwks = models.JSONField(help_text='The client\'s public keys: a JWKS document {"keys": [...]}.')
    scope = models.CharField(
        max_length=500,
        default="system/*.read system/*.rs",
        help_text="The most this client may be granted (space-separated SMART scopes).",
    )
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="fhir_client_clinic_iff_clinic_kind",
                condition=(Q(kind="clinic") & Q(clinic__isnull=False))
                | (Q(kind="research") & Q(clinic__isnull=True)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"


class UsedAssertion(models.Model):
    """An accepted assertion's ``jti``, kept until the assertion expires (replay guard)."""

    client = models.ForeignKey(BackendClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="fhir_assertion_jti_once")
        ]


class AccessToken(models.Model):
    """A bearer token issued to a system client (only its SHA-256 is stored)."""

    client = models.ForeignKey(BackendClient, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=500)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # done, files removed after settings.FHIR_BULK_KEEP_HOURS


class ExportJob(models.Model):
    """One Bulk Data export: requested by a system client or a person's API token."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        BackendClient, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    role = models.CharField(max_length=30)
    level = models.CharField(max_length=10)  # system, patient, group
    clinic_ids = models.JSONField()  # the clinics exported (never empty)
    types = models.JSONField()  # resource types, export order
    since = models.DateTimeField(null=True, blank=True)
    request_url = models.TextField()
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED)
    n_patients = models.PositiveIntegerField(default=0)
    done_patients = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    transaction_time = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="fhir_job_queue")]

    def __str__(self) -> str:
        return f"export {self.id} ({self.status})"
