"""Template filters of the patient portal's links in the site layout."""

from __future__ import annotations

from typing import Any

from django import template

from vertebra.registry.models import PatientAccount

register = template.Library()


@register.filter(name="is_patient")
def is_patient(user: Any) -> bool:
    """True when ``user`` is signed in with a patient portal account (one query, memoised on
    the user object for the rest of the request)."""
    if not getattr(user, "is_authenticated", False):
        return False
    cached = getattr(user, "_vertebra_is_patient", None)
    if cached is None:
        cached = PatientAccount.objects.filter(user_id=user.pk).exists()
        user._vertebra_is_patient = cached
    return bool(cached)
