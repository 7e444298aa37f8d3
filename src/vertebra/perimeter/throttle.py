"""Fixed-window throttles counted in the database, so every server process shares them.

Contract
--------
* A :class:`Rate` is ``limit`` events per ``period`` seconds (``"20/m"``, ``"300/h"``).
* :func:`hit` counts one event for ``(scope, identity)`` and says whether it is within the
  limit; :func:`peek` only reads (for limits that count failures: check first, count a
  failure after). Both return a :class:`Decision` with ``retry_after`` seconds until the
  window ends (the ``Retry-After`` header of a 429).
* Counting is one atomic upsert (``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1
  RETURNING count``) in a short transaction (:func:`batch` groups a request's counters): N
  processes counting at once reach exactly the same total as one process would, on
  PostgreSQL and SQLite alike.
* Identities (addresses, usernames, token hashes) are stored only as a keyed HMAC
  (:func:`identity_key`), so the table holds no address and no token.
* Throttling can be switched off with ``settings.THROTTLE_ENABLED = False`` (never in
  production; tests of other features may).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from vertebra.perimeter.models import ThrottleCounter

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: One new window in this many purges the expired rows of every key.
_PURGE_ONE_IN = 50


@dataclass(frozen=True)
class Rate:
    """``limit`` events per ``period`` seconds."""

    limit: int
    period: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"20/m"``, ``"300/h"``, ``"5/10m"`` → Rate; ValueError names a malformed value."""
        match = _RATE_RE.match(text or "")
        if not match:
            raise ValueError(f"{text!r} is not a rate; write it as 20/m, 300/h or 5/10m")
        limit, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
        if limit < 1 or multiple < 1:
            raise ValueError(f"{text!r}: the limit and the period must be at least 1")
        return cls(limit, multiple * _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}s"


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: allowed or not, the count so far, and seconds to wait."""

    allowed: bool
    count: int
    retry_after: int


def identity_key(scope: str, identity: str) -> str:
    """``scope:HMAC-SHA256(SECRET_KEY, scope|identity)`` (hex, 40 characters kept)."""
    digest = hmac.new(
        settings.SECRET_KEY.encode("utf-8"),
        f"{scope}|{identity}".encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).hexdigest()
    return f"{scope}:{digest[:40]}"


def _window(rate: Rate, now: dt.datetime) -> tuple[int, int]:
    """(window start, seconds until it ends) for ``now``."""
    epoch = now.timestamp()
    start = int(epoch // rate.period) * rate.period
    return start, max(1, math.ceil(start + rate.period - epoch))


def _enabled() -> bool:
    return bool(getattr(settings, "THROTTLE_ENABLED", True))


def peek(scope: str, identity: str, rate: Rate, now: dt.datetime | None = None) -> Decision:
    """Whether one more event would still be within ``rate`` (reads; counts nothing)."""
    now = now or timezone.now()
    start, wait = _window(rate, now)
    if not _enabled():
        return Decision(True, 0, wait)
    count = (
        ThrottleCounter.objects.filter(key=identity_key(scope, identity), window=start)
        .values_list("count", flat=True)
        .first()
    ) or 0
    return Decision(count < rate.limit, count, wait)


def hit(scope: str, identity: str, rate: Rate, now: dt.datetime | None = None) -> Decision:
    """Count one event; allowed while the window's count (this one included) ≤ the limit."""
    now = now or timezone.now()
    start, wait = _window(rate, now)
    if not _enabled():
        return Decision(True, 0, wait)
    count = _increment(identity_key(scope, identity), start, now, wait)
    return Decision(count <= rate.limit, count, wait)


@contextmanager
def batch() -> Iterator[None]:
    """Count several events in one short transaction (one commit for a request's counters).

    The commit does not wait for the disk (PostgreSQL: ``SET LOCAL synchronous_commit = off``,
    this transaction only; SQLite: ``synchronous = NORMAL`` for this commit only): a counter
    lost in a crash costs an attacker one free attempt, while a flush per request made every
    API call 4-10 times slower. Inside a caller's transaction this adds nothing (the caller's
    commit decides).
    """
    if connection.in_atomic_block:
        yield
        return
    if connection.vendor == "sqlite":
        with _sqlite_synchronous_normal(), transaction.atomic():
            yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        yield


@contextmanager
def _sqlite_synchronous_normal() -> Iterator[None]:
    """SQLite's ``synchronous = NORMAL`` for one commit, then the connection's own setting
    again (``FULL``, see config.py). In WAL mode NORMAL is still crash-consistent; only the
    last commits may roll back after a power cut, which for a counter is harmless."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        previous = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA synchronous = {previous:d}")  # an int read just above


#: One statement, atomic on both databases (PostgreSQL ≥ 9.5, SQLite ≥ 3.35): insert the
#: window's row or add one to it, and return the new count. Table and column names are
#: constants; every value is a parameter.
_UPSERT = (
    'INSERT INTO perimeter_throttlecounter ("key", "window", "count", "expires_at") '
    "VALUES (%s, %s, 1, %s) "
    'ON CONFLICT ("key", "window") DO UPDATE SET "count" = perimeter_throttlecounter."count" + 1 '
    'RETURNING "count"'
)


def _increment(key: str, window: int, now: dt.datetime, wait: int) -> int:
    """Atomically add one to the (key, window) counter and return the new count (the row
    expires ``wait`` seconds after ``now``, when its window ends)."""
    expires_at = now + dt.timedelta(seconds=wait)
    with batch(), connection.cursor() as cursor:
        cursor.execute(_UPSERT, [key, window, connection.ops.adapt_datetimefield_value(expires_at)])
        count = int(cursor.fetchone()[0])
    if count == 1 and secrets.randbelow(_PURGE_ONE_IN) == 0:
        purge_expired(now)  # a new window started: now and then, sweep ended ones
    return count


def purge_expired(now: dt.datetime) -> int:
    """Delete counters whose window has ended; return how many."""
    deleted, _ = ThrottleCounter.objects.filter(expires_at__lt=now).delete()
    return deleted
