"""The session engine: Django's database sessions, saved in one statement and only when needed.

``SESSION_ENGINE = "vertebra.perimeter.sessions"``. Same table, same data, same signing as
``django.contrib.sessions.backends.db``; two differences, both for the cost of every request
(ADR 0021 §7: a portal page or submit paid three round trips for the session alone):

* **One statement.** Saving an existing session is one ``UPDATE`` in autocommit (a single
  statement is atomic by itself), not ``BEGIN``/``UPDATE``/``COMMIT``. No row updated (the
  session was deleted meanwhile, e.g. signed out in another tab) is
  :class:`~django.contrib.sessions.backends.base.UpdateError`, as in Django. Creating one (a
  new key: a link opened, a sign-in) is one ``INSERT``, without Django's query for whether the
  random key is taken: a taken key fails the INSERT (CreateError) and Django draws another.
  Inside a caller's transaction both are Django's own (savepoint) path.
* **No write when nothing changed.** ``SESSION_SAVE_EVERY_REQUEST`` (the sliding 30-minute
  expiry of staff and portal sessions) made every request write its session. A session whose
  data did not change is now written only when its stored expiry is more than
  :data:`EXPIRY_REFRESH_SECONDS` old, so an idle timeout ends between ``SESSION_COOKIE_AGE``
  less that interval and ``SESSION_COOKIE_AGE`` after the last request (never later). A
  changed session (``modified``) is always written.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import IntegrityError, connection
from django.utils import timezone
from django.utils.crypto import get_random_string

#: An unchanged session's expiry is pushed forward at most once in this many seconds
#: (``SESSION_EXPIRY_REFRESH_SECONDS``).
EXPIRY_REFRESH_SECONDS = 60


def _refresh_seconds() -> int:
    return int(getattr(settings, "SESSION_EXPIRY_REFRESH_SECONDS", EXPIRY_REFRESH_SECONDS))


class SessionStore(DatabaseSessionStore):
    """Database sessions that remember their stored expiry and save in one statement."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        #: The expiry stored in the row this session was loaded from (None: not loaded).
        self._stored_expiry: dt.datetime | None = None

    def _get_session_from_db(self) -> Any:
        row = super()._get_session_from_db()  # type: ignore[misc]  # Django's, not in the stubs
        self._stored_expiry = row.expire_date if row is not None else None
        return row

    def _fresh(self) -> bool:
        """True when the stored expiry was set less than the refresh interval ago."""
        if self._stored_expiry is None:
            return False
        stored_at = self._stored_expiry - dt.timedelta(seconds=self.get_expiry_age())
        return timezone.now() - stored_at < dt.timedelta(seconds=_refresh_seconds())

    def _get_new_session_key(self) -> str:
        """A new random key, without Django's query for whether it is taken: the INSERT of
        :meth:`save` refuses a taken key (CreateError) and ``create()`` draws another."""
        return get_random_string(32, VALID_KEY_CHARS)

    def save(self, must_create: bool = False) -> None:
        """Create the session (one INSERT), or update it in one statement; nothing when its
        data is unchanged and its expiry was refreshed less than the interval ago."""
        if self.session_key is None:
            self.create()
            return
        if must_create:
            if connection.in_atomic_block:  # a caller's transaction: Django's own savepoint
                super().save(must_create=True)
                return
            row = self.create_model_instance(self._get_session(no_load=True))  # type: ignore[attr-defined]
            try:
                row.save(force_insert=True)
            except IntegrityError:
                raise CreateError from None
            self._stored_expiry = row.expire_date
            return
        # Loads it (and its stored expiry) if not yet read; Django's, not in the stubs.
        data = self._get_session(no_load=False)  # type: ignore[attr-defined]
        if not self.modified and self._fresh():
            return
        expiry = self.get_expiry_date()
        if connection.in_atomic_block:  # inside a caller's transaction: Django's own path
            super().save(must_create=False)
        else:
            updated = self.model.objects.filter(session_key=self.session_key).update(
                session_data=self.encode(data), expire_date=expiry
            )
            if not updated:
                raise UpdateError
        self._stored_expiry = expiry
