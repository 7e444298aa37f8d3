"""Helpers for page and API tests: sign a client in as an Actor, issue API tokens."""

from __future__ import annotations

from typing import Any

from django.test import Client

from vertebra.registry import services
from vertebra.registry.models import AuditEvent
from vertebra.registry.permissions import Actor

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def signed_in(actor: Actor | Any) -> Client:
    """A test client with a session for the actor's user (or a plain user)."""
    client = Client()
    client.force_login(getattr(actor, "user", actor), backend=MODEL_BACKEND)
    return client


def bearer(actor: Actor) -> dict[str, str]:
    """Headers carrying a fresh API token for ``actor``."""
    _, raw = services.issue_api_token(actor=actor)
    return {"Authorization": f"Bearer {raw}"}


def writes_since(seq: int) -> list[AuditEvent]:
    """Audit rows of writes (create/update) appended after the row with id ``seq``."""
    return list(AuditEvent.objects.filter(id__gt=seq, action__in=["create", "update"]))


def last_seq() -> int:
    """The newest audit row's id (rows are ordered by id since ADR 0021), 0 if none."""
    last = AuditEvent.objects.order_by("-id").first()
    return last.pk if last else 0
