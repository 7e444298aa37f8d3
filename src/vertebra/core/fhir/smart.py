"""SMART Backend Services and Bulk Data kick-off: the pure rules (no Django, no clock, no keys).

Contracts
---------
* :func:`parse_scopes` reads a requested ``scope`` string. Only system-level read scopes are
  granted: SMART v1 ``system/<Type|*>.read`` and SMART v2 ``system/<Type|*>.rs`` (or ``.r``).
  Anything else (a write scope, ``user/`` or ``patient/`` scopes, an unknown type) is refused
  as a whole, naming the first bad scope (RFC 6749 ``invalid_scope``).
* :func:`check_claims` applies the SMART Backend Services rules to a client assertion whose
  signature the shell has already verified: ``iss`` == ``sub`` == client id, ``aud`` == the
  token URL, ``exp`` in the future and at most :data:`MAX_ASSERTION_LIFETIME` seconds ahead,
  a ``jti``. ``now`` is passed in.
* :func:`parse_kickoff` reads a Bulk Data ``$export`` kick-off (query parameters and headers)
  into a :class:`KickOff`, or raises :class:`BulkRequestError` with the HTTP status and the
  OperationOutcome issue code to answer with.
* :func:`patient_of_line` finds the patient an NDJSON line belongs to (``_since`` filtering).

Sources: SMART App Launch 2.2 "Backend Services" (hl7.org/fhir/smart-app-launch/backend-
services.html, assertion rules and the five-minute ``exp`` limit); FHIR Bulk Data Access IG
2.0.0 (hl7.org/fhir/uv/bulkdata/export.html, kick-off parameters and responses).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWED_ALGORITHMS",
    "ASSERTION_TYPE",
    "MAX_ASSERTION_LIFETIME",
    "NDJSON_FORMATS",
    "AssertionRefused",
    "BulkRequestError",
    "Grant",
    "KickOff",
    "ScopeError",
    "check_claims",
    "parse_kickoff",
    "parse_scopes",
    "patient_of_line",
]

#: Signature algorithms a client assertion may use (SMART Backend Services: RS384 and ES384).
ALLOWED_ALGORITHMS = ("RS384", "ES384")
#: ``client_assertion_type`` of a JWT client assertion (RFC 7523).
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Seconds an assertion's ``exp`` may lie ahead of now (SMART: "no more than five minutes").
MAX_ASSERTION_LIFETIME = 300
#: ``_outputFormat`` values meaning NDJSON (Bulk Data IG: servers SHALL accept all three).
NDJSON_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
#: Kick-off parameters of the IG this server does not implement: refused, never ignored.
UNSUPPORTED_PARAMETERS = ("_elements", "_typeFilter", "patient", "includeAssociatedData")

_SCOPE = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perm>read|rs|r)$")
_PATIENT_REF = re.compile(r'"reference":"Patient/patient-(\d+)"')
_PATIENT_ID = re.compile(r'^\{"resourceType":"Patient","id":"patient-(\d+)"')


class ScopeError(ValueError):
    """A requested scope that is not granted (the message names it)."""


class AssertionRefused(ValueError):
    """A client assertion that breaks a Backend Services rule (the message says which)."""


class BulkRequestError(ValueError):
    """A kick-off that cannot be accepted: HTTP ``status`` and OperationOutcome issue ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Grant:
    """Granted scopes: the scope text and the resource types they allow (None = every type)."""

    scope: str
    types: frozenset[str] | None

    def allows(self, kind: str) -> bool:
        """True when the grant lets its holder read resources of type ``kind``."""
        return self.types is None or kind in self.types


def parse_scopes(requested: str, known_types: Collection[str]) -> Grant:
    """The grant for a space-separated ``requested`` scope string (see module docstring).

    Raises ScopeError when the string is empty or any scope is not a system read scope of
    ``known_types`` (or ``*``).
    """
    words = requested.split()
    if not words:
        raise ScopeError("no scope requested; ask for system/*.read or system/<Type>.read")
    types: set[str] = set()
    every = False
    for word in words:
        match = _SCOPE.match(word)
        if match is None:
            raise ScopeError(f"scope {word!r} is not granted: only system read scopes are")
        kind = match["type"]
        if kind == "*":
            every = True
        elif kind in known_types:
            types.add(kind)
        else:
            raise ScopeError(f"scope {word!r} names a resource type this server does not export")
    return Grant(scope=" ".join(words), types=None if every else frozenset(types))


def _timestamp(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AssertionRefused(f"the assertion has no numeric {name!r} claim")
    return int(value)


def check_claims(
    claims: Mapping[str, Any],
    header: Mapping[str, Any],
    *,
    client_id: str,
    token_url: str,
    now: dt.datetime,
) -> tuple[str, dt.datetime]:
    """Check a signature-verified assertion; return its ``(jti, expiry)`` for replay tracking.

    Raises AssertionRefused naming the first rule broken.
    """
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise AssertionRefused(f"alg {header.get('alg')!r} is not one of RS384, ES384")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRefused("iss and sub must both be the client_id")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if token_url not in audiences:
        raise AssertionRefused(f"aud must be the token URL {token_url}")
    exp = _timestamp(claims, "exp")
    now_s = int(now.timestamp())
    if exp <= now_s:
        raise AssertionRefused("the assertion has expired")
    if exp > now_s + MAX_ASSERTION_LIFETIME:
        raise AssertionRefused("exp is more than five minutes in the future")
    if "nbf" in claims and _timestamp(claims, "nbf") > now_s:
        raise AssertionRefused("the assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionRefused("the assertion needs a jti (a unique string, at most 255 chars)")
    return jti, dt.datetime.fromtimestamp(exp, tz=dt.UTC)


@dataclass(frozen=True)
class KickOff:
    """An accepted kick-off: the resource types wanted (in export order) and ``_since``."""

    types: tuple[str, ...]
    since: dt.datetime | None


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """Every comma-separated value of a (possibly repeated) parameter, blanks dropped."""
    return [v.strip() for raw in params.get(name, ()) for v in raw.split(",") if v.strip()]


def _instant(text: str) -> dt.datetime:
    """A FHIR instant (with a time zone) or BulkRequestError."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise BulkRequestError(
            400, "invalid", f"_since {text!r} is not a FHIR instant (e.g. 2026-01-31T00:00:00Z)"
        )
    return value


def parse_kickoff(
    params: Mapping[str, Sequence[str]],
    *,
    prefer: str,
    accept: str,
    export_types: Sequence[str],
    grant: Grant,
) -> KickOff:
    """Read a kick-off request (see module docstring); ``export_types`` in export order.

    Without ``_type`` the export holds every type ``grant`` allows; a ``_type`` naming a type
    outside ``grant`` is refused (403 ``forbidden``), an unknown one is a 400.
    """
    if "respond-async" not in [p.strip() for p in prefer.split(",")]:
        raise BulkRequestError(400, "invalid", "a Bulk Data kick-off needs Prefer: respond-async")
    media = {part.split(";")[0].strip() for part in accept.split(",")} - {""}
    if media and not media & {"application/fhir+json", "application/json", "*/*"}:
        raise BulkRequestError(400, "invalid", "Accept must be application/fhir+json")
    for name in UNSUPPORTED_PARAMETERS:
        if name in params:
            raise BulkRequestError(400, "not-supported", f"parameter {name} is not supported")
    formats = _values(params, "_outputFormat")
    if any(f not in NDJSON_FORMATS for f in formats):
        raise BulkRequestError(
            400, "not-supported", "_outputFormat must be application/fhir+ndjson"
        )
    wanted = _values(params, "_type")
    unknown = [t for t in wanted if t not in export_types]
    if unknown:
        raise BulkRequestError(400, "not-supported", f"_type {unknown[0]} is not exported here")
    refused = [t for t in wanted if not grant.allows(t)]
    if refused:
        raise BulkRequestError(403, "forbidden", f"the access token's scopes exclude {refused[0]}")
    chosen = set(wanted) if wanted else {t for t in export_types if grant.allows(t)}
    if not chosen:
        raise BulkRequestError(403, "forbidden", "the access token's scopes allow no type")
    since_values = params.get("_since", ())
    since = _instant(since_values[-1]) if since_values else None
    return KickOff(types=tuple(t for t in export_types if t in chosen), since=since)


def patient_of_line(line: str) -> int | None:
    """The registry id of the patient an export NDJSON line belongs to; None for reference
    data (Organization, allogeneic lots) that belong to no patient.

    Relies on the exporter's own reference form ``Patient/patient-<id>``
    (:func:`vertebra.core.fhir._base.ref`); every patient resource references exactly one.
    """
    own = _PATIENT_ID.match(line)
    if own is not None:
        return int(own[1])
    found = _PATIENT_REF.search(line)
    return int(found[1]) if found is not None else None
