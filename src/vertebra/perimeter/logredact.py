"""Keep patient-link tokens out of every log line.

Tokens travel only in ``/p/open/?t=<token>`` (e-mails), but people paste links in odd ways:
``/p/<token>``, ``/p/open/<token>``, ``?token=...``. Django's request logger then writes
``Not Found: /p/<token>``, and an access log writes the whole path. :func:`redact` removes, from
any text: the value of ``t=``/``token=`` query parameters, and every path segment under
``/p/`` that is long enough to be a token or an id (16+ URL-safe characters). Short fixed
portal words (``open``, ``q``, ``review``) stay, so logs remain useful.

:class:`RedactTokensFilter` applies it to log records (Django ``LOGGING`` filter, on the
handlers and on the ``django.request``/``django.server`` loggers). :class:`GunicornLogger`
applies it to gunicorn's access and error logs (``vertebra serve``; in
:mod:`vertebra.perimeter.gunicorn_logging`, so Django does not import gunicorn).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_QUERY_TOKEN = re.compile(r"(?i)([?&;](?:t|token|access_token)=)[^&;\s\"']+")
_PORTAL_SEGMENT = re.compile(
    r"(/p/(?:(?:[A-Za-z0-9_.~-]{1,15}|\[redacted\])/)*)[A-Za-z0-9_~%.-]{16,}"
)


def redact(text: str) -> str:
    """``text`` with link tokens (and long ids under ``/p/``) replaced by ``[redacted]``."""
    if "/p/" not in text and "=" not in text:
        return text
    text = _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)
    previous = None
    while previous != text:  # one segment per pass: /p/<tok>/<tok2>/...
        previous = text
        text = _PORTAL_SEGMENT.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactTokensFilter(logging.Filter):
    """A logging filter that rewrites each record's message with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
