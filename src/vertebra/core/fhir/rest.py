"""The pure part of the FHIR REST server: search-parameter values, Bundles, OperationOutcomes.

Contracts
---------
* Parsers raise :class:`SearchError` (-> HTTP 400 with an OperationOutcome) for a value the
  server cannot use; they never guess.
* ``date`` values follow R4 search rules (hl7.org/fhir/R4/search.html#date): a prefix
  ``eq`` (default), ``ne``, ``lt``, ``le``, ``gt``, ``ge`` and a value of year, month, day or
  instant precision; the value stands for the range it covers, so ``date=2025-03`` matches any
  day of March 2025 and ``lt2025-03`` anything before March. :func:`date_range` turns it into a
  half-open interval ``[start, end)`` the database compares with.
* Bundles and OperationOutcomes are plain dicts (the shell serialises them as
  ``application/fhir+json``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vertebra.core.fhir._base import KINDS, Resource

__all__ = [
    "DateRange",
    "SearchError",
    "date_range",
    "operation_outcome",
    "parse_id",
    "parse_reference",
    "parse_token",
    "searchset",
]

PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class SearchError(ValueError):
    """A search parameter the server cannot honour (HTTP 400)."""


@dataclass(frozen=True)
class DateRange:
    """A search date as ``prefix`` and the half-open UTC interval ``[start, end)`` it covers."""

    prefix: str
    start: dt.datetime
    end: dt.datetime


def _next_month(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)


def date_range(raw: str) -> DateRange:
    """Parse one ``date`` search value (see the module docstring)."""
    prefix, value = ("eq", raw)
    if raw[:2] in PREFIXES:
        prefix, value = raw[:2], raw[2:]
    elif raw[:2].isalpha():
        raise SearchError(f"date prefix {raw[:2]!r} is not supported (use {', '.join(PREFIXES)})")
    found = _DATE.match(value)
    if found is None:
        raise SearchError(f"{raw!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or an instant)")
    try:
        year = int(found["y"])
        if found["m"] is None:
            start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
            return DateRange(prefix, start, dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC))
        month = int(found["m"])
        if found["d"] is None:
            return DateRange(
                prefix, dt.datetime(year, month, 1, tzinfo=dt.UTC), _next_month(year, month)
            )
        day = dt.date(year, month, int(found["d"]))
        if found["time"] is None:
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return DateRange(prefix, start, start + dt.timedelta(days=1))
        moment = dt.datetime.fromisoformat(f"{value[:10]}T{found['time']}{found['tz'] or '+00:00'}")
    except ValueError as exc:
        raise SearchError(f"{raw!r} is not a valid date: {exc}") from None
    if found["tz"] is None:
        raise SearchError(f"{raw!r}: a time needs a time zone (FHIR instants have one)")
    moment = moment.astimezone(dt.UTC)
    return DateRange(prefix, moment, moment + _precision(found["time"]))


def _precision(time: str) -> dt.timedelta:
    """The span a time value of this precision covers: a minute, a second, or one unit of its
    last fractional digit (``04:47:57.123`` covers a millisecond; at least a microsecond)."""
    if time.count(":") == 1:
        return dt.timedelta(minutes=1)
    _, _, fraction = time.partition(".")
    return dt.timedelta(microseconds=10 ** (6 - min(len(fraction), 6)))


def parse_token(raw: str) -> tuple[str | None, str]:
    """``[system]|code`` -> (system or None when absent, code); ``|code`` means no system."""
    if "|" not in raw:
        return None, raw
    system, code = raw.split("|", 1)
    return system, code


def parse_id(resource_type: str, raw: str) -> tuple[str, int] | None:
    """A resource id of ``resource_type`` -> (row kind, registry pk), or None when no row of
    that type can have this id (so the answer is "not found", never an error)."""
    prefix, _, number = raw.rpartition("-")
    if not number.isdigit() or len(number) > 18:
        return None
    for kind, (kind_type, kind_prefix) in KINDS.items():
        if kind_type == resource_type and kind_prefix == prefix:
            return kind, int(number)
    return None


def parse_reference(raw: str, target: str = "Patient") -> int | None:
    """``Patient/patient-12``, ``patient-12`` or an absolute URL ending in one -> the patient
    pk 12; None when it cannot name a registry patient. Another type is a SearchError."""
    parts = raw.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] != target:
        raise SearchError(f"{raw!r} is not a reference to a {target}")
    found = parse_id(target, parts[-1])
    return None if found is None else found[1]


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> Resource:
    """An OperationOutcome with one issue (``code`` from R4's issue-type value set)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def searchset(
    *,
    resources: Sequence[Resource],
    total: int | None,
    base: str,
    self_url: str,
    next_url: str | None,
    previous_url: str | None = None,
) -> Resource:
    """A searchset Bundle: ``total`` (left out when None: not counted, R4 ``_total``),
    absolute ``self``/``next``/``previous`` links and one entry per resource with its
    ``fullUrl`` and ``search.mode`` match."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    if previous_url is not None:
        links.append({"relation": "previous", "url": previous_url})
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{item['resourceType']}/{item['id']}",
            "resource": item,
            "search": {"mode": "match"},
        }
        for item in resources
    ]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle
