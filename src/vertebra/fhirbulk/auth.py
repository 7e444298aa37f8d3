"""SMART Backend Services: register system clients, issue access tokens, authenticate requests.

Contracts
---------
* :func:`register_client` stores a client with its public JWKS (checked: public RSA or EC keys
  with a ``kid``, no private parts) and audits the registration.
* :func:`issue_token` is the token endpoint's service (client-credentials grant with a JWT
  client assertion). It refuses with :class:`TokenError` carrying the RFC 6749 section 5.2
  error code; otherwise it records the assertion's ``jti`` (a replay is refused), stores the
  SHA-256 of a new random token and audits the issue, in one transaction.
* :func:`authenticate` turns an ``Authorization: Bearer`` value into a :class:`Requester`: a
  system client's access token, or a person's existing API token (the same tokens the JSON
  API takes). Not audited itself: every export and download done with it is.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from vertebra.core.fhir import RESOURCE_TYPES
from vertebra.core.fhir.smart import (
    ALLOWED_ALGORITHMS,
    ASSERTION_TYPE,
    AssertionRefused,
    Grant,
    ScopeError,
    check_claims,
    parse_scopes,
)
from vertebra.fhirbulk.models import AccessToken, BackendClient, ClientKind, UsedAssertion
from vertebra.followup.services import Principal
from vertebra.registry.audit import record_audit
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import Clinic
from vertebra.registry.permissions import Action, Actor, verify_actor
from vertebra.registry.services import authenticate_api_token, hash_token

__all__ = [
    "ACCESS_TOKEN_SECONDS",
    "ADMIN_ACTOR",
    "ClientError",
    "IssuedToken",
    "Requester",
    "TokenError",
    "authenticate",
    "check_jwks",
    "client_actor",
    "issue_token",
    "register_client",
    "revoke_client",
]

#: Lifetime of an access token (SMART recommends five minutes for backend services).
ACCESS_TOKEN_SECONDS = 300
#: Who registers clients from the command line (an operator's command).
ADMIN_ACTOR = Actor(
    user=Principal("system:fhir-client-admin"), role="system", clinic_ids=frozenset()
)
CLIENT_ROLE = "fhir_client"


class ClientError(ValueError):
    """A client registration that cannot be stored (the message says why)."""


class TokenError(ValueError):
    """A refused token request: ``error`` is the RFC 6749 code, the message its description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


@dataclass(frozen=True)
class IssuedToken:
    """A new access token (the raw value exists only here) and what it grants."""

    access_token: str
    scope: str
    expires_in: int


@dataclass(frozen=True)
class Requester:
    """Who calls a Bulk Data endpoint: the audit actor, the clinics whose identified data they
    may export (empty: none), the types they may read, and the owner of their jobs."""

    actor: Actor
    clinic_ids: frozenset[int]
    grant: Grant
    client_id: int | None = None
    user_id: int | None = None
    refusal: str = ""  # why this requester may export nothing (when clinic_ids is empty)


def client_actor(client: BackendClient) -> Actor:
    """The audit actor of a system client (``fhir-client:<client_id>``)."""
    clinics = frozenset({client.clinic_id}) if client.clinic_id is not None else frozenset()
    return Actor(
        user=Principal(f"fhir-client:{client.client_id}"), role=CLIENT_ROLE, clinic_ids=clinics
    )


def check_jwks(jwks: Any) -> dict[str, Any]:
    """``jwks`` as a JWKS of public RSA/EC keys with ids, or ClientError."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ClientError('the JWKS must be a JSON object {"keys": [...]} with at least one key')
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC") or not key.get("kid"):
            raise ClientError("every key must be an RSA or EC key with a kid")
        if "d" in key:
            raise ClientError(f"key {key['kid']!r} holds a private part: register public keys")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # checked shape above
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientError(f"the JWKS cannot be read: {exc}") from None
    return jwks


def register_client(
    *,
    client_id: str,
    name: str,
    jwks: Any,
    clinic_id: int | None,
    scope: str = "system/*.read system/*.rs",
    now: dt.datetime,
    actor: Actor = ADMIN_ACTOR,
) -> BackendClient:
    """Store a system client: a clinic system when ``clinic_id`` is given, else a research
    system. Raises ClientError for a taken client id, an unknown clinic, a bad JWKS or scope."""
    if not client_id or len(client_id) > 64 or not client_id.isascii() or " " in client_id:
        raise ClientError("the client id must be 1-64 ASCII characters without spaces")
    try:
        parse_scopes(scope, RESOURCE_TYPES)
    except ScopeError as exc:
        raise ClientError(str(exc)) from None
    keys = check_jwks(jwks)
    if clinic_id is not None and not Clinic.objects.filter(pk=clinic_id).exists():
        raise ClientError(f"no clinic with id {clinic_id}")
    kind = ClientKind.CLINIC if clinic_id is not None else ClientKind.RESEARCH
    with transaction.atomic():
        if BackendClient.objects.filter(client_id=client_id).exists():
            raise ClientError(f"a client {client_id!r} is registered already")
        client = BackendClient.objects.create(
            client_id=client_id, name=name, kind=kind, clinic_id=clinic_id, jwks=keys,
            scope=scope, created_at=now,
        )  # fmt: skip
        record_audit(
            actor=actor, action="create", object_type="fhir_client", object_id=client.pk,
            clinic_id=clinic_id, occurred_at=now,
            new_values={"client_id": client_id, "name": name, "kind": kind, "scope": scope,
                        "kids": [k["kid"] for k in keys["keys"]]},
        )  # fmt: skip
    return client


def revoke_client(client_id: str, *, now: dt.datetime, actor: Actor = ADMIN_ACTOR) -> None:
    """Revoke a client (its access tokens stop working at once); ClientError if unknown."""
    with transaction.atomic():
        changed = BackendClient.objects.filter(client_id=client_id, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not changed:
            raise ClientError(f"no active client {client_id!r}")
        record_audit(
            actor=actor, action="update", object_type="fhir_client", object_id=client_id,
            old_values={"revoked_at": None}, new_values={"revoked_at": now}, occurred_at=now,
        )  # fmt: skip


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS before its signature is checked (to find the
    client and its keys); TokenError when it is not a JWT."""
    try:
        parts = jws.extract_compact(assertion.encode("ascii"))
        claims = json.loads(parts.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise TokenError("invalid_client", f"the client assertion is not a JWT: {exc}") from None
    if not isinstance(claims, dict):
        raise TokenError("invalid_client", "the client assertion's claims are not an object")
    return dict(parts.protected), claims


def _verified(assertion: str, client: BackendClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims after checking the signature with a key of the client's JWKS."""
    try:
        token = jwt.decode(
            assertion, KeySet.import_key_set(client.jwks), algorithms=list(ALLOWED_ALGORITHMS)
        )
    except (JoseError, ValueError, TypeError):
        raise TokenError(
            "invalid_client", "the signature is not verified by a key of the client's JWKS"
        ) from None
    return dict(token.header), dict(token.claims)


def _grant_within(requested: str, client: BackendClient) -> Grant:
    """The grant for ``requested``, which must lie within the client's registered scope."""
    try:
        grant = parse_scopes(requested, RESOURCE_TYPES)
        allowed = parse_scopes(client.scope, RESOURCE_TYPES)
    except ScopeError as exc:
        raise TokenError("invalid_scope", str(exc)) from None
    if allowed.types is not None and (grant.types is None or not grant.types <= allowed.types):
        raise TokenError("invalid_scope", f"this client may be granted only {client.scope!r}")
    return grant


def issue_token(
    *,
    grant_type: str,
    assertion_type: str,
    assertion: str,
    scope: str,
    token_url: str,
    now: dt.datetime,
) -> IssuedToken:
    """Check a client-credentials request (see module docstring) and issue an access token."""
    if grant_type != "client_credentials":
        raise TokenError("unsupported_grant_type", "grant_type must be client_credentials")
    if assertion_type != ASSERTION_TYPE or not assertion:
        raise TokenError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    header, unverified = _unverified(assertion)
    if not header.get("kid"):
        raise TokenError("invalid_client", "the assertion header needs the kid of its key")
    iss = unverified.get("iss")
    client = BackendClient.objects.filter(
        client_id=iss if isinstance(iss, str) else "", revoked_at__isnull=True
    ).first()
    if client is None:
        raise TokenError("invalid_client", "no registered client has this iss")
    header, claims = _verified(assertion, client)
    try:
        jti, expires = check_claims(
            claims, header, client_id=client.client_id, token_url=token_url, now=now
        )
    except AssertionRefused as exc:
        raise TokenError("invalid_client", str(exc)) from None
    grant = _grant_within(scope, client)
    raw = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            UsedAssertion.objects.filter(expires_at__lt=now).delete()
            UsedAssertion.objects.create(client=client, jti=jti, expires_at=expires)
            token = AccessToken.objects.create(
                client=client, token_hash=hash_token(raw), scope=grant.scope, issued_at=now,
                expires_at=now + dt.timedelta(seconds=ACCESS_TOKEN_SECONDS),
            )  # fmt: skip
            record_audit(
                actor=client_actor(client), action="create", object_type="fhir_access_token",
                object_id=token.pk, clinic_id=client.clinic_id, occurred_at=now,
                new_values={"scope": grant.scope, "expires_at": token.expires_at},
            )  # fmt: skip
    except IntegrityError:
        raise TokenError("invalid_client", "this assertion's jti was used already") from None
    return IssuedToken(access_token=raw, scope=grant.scope, expires_in=ACCESS_TOKEN_SECONDS)


def _client_requester(token: AccessToken) -> Requester:
    """The requester behind a system client's access token."""
    client = token.client
    grant = parse_scopes(token.scope, RESOURCE_TYPES)
    actor = client_actor(client)
    if client.kind != ClientKind.CLINIC or client.clinic_id is None:
        refusal = (
            "a research system receives de-identified data only; this export is identified "
            "(de-identified tables: vertebra export research)"
        )
        return Requester(actor, frozenset(), grant, client_id=client.pk, refusal=refusal)
    return Requester(actor, frozenset({client.clinic_id}), grant, client_id=client.pk)


def _person_requester(actor: Actor) -> Requester:
    """The requester behind a person's API token: their clinics where they may read patients."""
    every = Grant(scope="", types=None)
    try:
        clinics = verify_actor(actor, Action.PATIENT_READ)
    except PermissionDeniedError as exc:
        return Requester(actor, frozenset(), every, user_id=actor.user.pk, refusal=str(exc))
    return Requester(actor, clinics, every, user_id=actor.user.pk)


def authenticate(authorization: str, *, now: dt.datetime, request_id: str = "") -> Requester | None:
    """The requester of an ``Authorization`` header value, or None (missing, unknown, expired
    or revoked token)."""
    scheme, _, raw = authorization.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw or len(raw) > 200:
        return None
    token = (
        AccessToken.objects.select_related("client")
        .filter(token_hash=hash_token(raw), expires_at__gt=now, client__revoked_at__isnull=True)
        .first()
    )
    if token is not None:
        return _client_requester(token)
    actor = authenticate_api_token(raw, request_id=request_id)
    return _person_requester(actor) if actor is not None else None
