"""Fixtures of the perimeter tests."""

from __future__ import annotations

from tests.followup.helpers import audit_triggers_restored, flushable_audit

__all__ = ["audit_triggers_restored", "flushable_audit"]
