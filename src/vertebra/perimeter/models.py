"""Throttle counters: one row per (key, time window), shared by every server process.

Rows hold no address, username or token: ``key`` is ``<scope>:<HMAC of the identity>`` (see
:func:`vertebra.perimeter.throttle.identity_key`). Expired rows are deleted as new windows
start (:func:`vertebra.perimeter.throttle.purge_expired`).
"""

from __future__ import annotations

from django.db import models


class ThrottleCounter(models.Model):
    """How many counted events ``key`` had in the window starting at ``window`` (epoch s)."""

    key = models.CharField(max_length=120)
    window = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window"], name="perimeter_throttle_once")
        ]

    def __str__(self) -> str:
        return f"Throttle counter {self.pk}"
