"""Fixtures of the follow-up tests (see helpers.py for the shared pieces)."""

from __future__ import annotations

from tests.followup.helpers import audit_triggers_restored, flushable_audit, smtp_sink

__all__ = ["audit_triggers_restored", "flushable_audit", "smtp_sink"]


import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """The link-guessing counter lives in the cache; start every test from zero."""
    cache.clear()
