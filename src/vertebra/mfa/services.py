"""MFA services: enrol a TOTP authenticator, verify the second factor, recovery codes, reset.

Contracts
---------
* Devices are django-otp's: one confirmed :class:`TOTPDevice` per user (the authenticator
  app) and one :class:`StaticDevice` holding the user's unused recovery codes. A user "has
  MFA" when they hold a confirmed TOTP device.
* :func:`mfa_required` says whether a user's roles demand MFA (``settings.MFA_REQUIRED_ROLES``;
  superusers count as registry admins).
* Recovery codes are 16 base32 characters (80 bits, shown as ``xxxx-xxxx-xxxx-xxxx``), shown
  once when made, and stored only as a truncated SHA-256 digest: a database reader cannot use
  them. Each works once (django-otp deletes the token it matched).
* Every outcome is audited (object type ``mfa``): ``mfa_enrol``, ``mfa_verify`` (with the
  method: ``totp`` or ``recovery_code``), ``mfa_verify_failed``, ``mfa_recovery_codes`` (new
  set), ``mfa_reset``. Successes in the same transaction as the change; failures in a
  transaction of their own, so a refusal is on the trail even though nothing else changed.
  No audit row holds a code, a secret or a digest.
* Wrong codes slow down exponentially per device (django-otp's throttling); the login
  lockout (django-axes) guards the password step before it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import b32encode
from binascii import unhexlify
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from vertebra.registry.audit import record_audit
from vertebra.registry.models import Membership, Role
from vertebra.registry.permissions import Actor

__all__ = [
    "RECOVERY_CODE_COUNT",
    "Enrolment",
    "admin_reset_mfa",
    "confirm_enrolment",
    "has_mfa",
    "mfa_required",
    "new_recovery_codes",
    "pending_enrolment",
    "recovery_codes_left",
    "reset_mfa",
    "verify_second_factor",
]

AUDIT_OBJECT_TYPE = "mfa"
RECOVERY_CODE_COUNT = 10
#: The role recorded on MFA audit rows: the account acts for itself, in no clinic role.
AUDIT_ROLE = "account"
TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
_CODE_RE = re.compile(r"^\d{6}$")


# ------------------------------------------------------------------------------ policy


def mfa_required(user: Any) -> bool:
    """True when one of ``user``'s roles is in ``settings.MFA_REQUIRED_ROLES``.

    Superusers count as registry admins (they administer everything).
    """
    required = set(getattr(settings, "MFA_REQUIRED_ROLES", ()))
    if not required or not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser and Role.REGISTRY_ADMIN.value in required:
        return True
    return Membership.objects.filter(user_id=user.pk, role__in=required).exists()


def has_mfa(user: Any) -> bool:
    """True when ``user`` holds a confirmed authenticator (TOTP) device."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


def recovery_codes_left(user: Any) -> int:
    """How many unused recovery codes ``user`` has."""
    return StaticToken.objects.filter(device__user_id=user.pk).count()


def _actor(user: Any, request_id: str) -> Actor:
    return Actor(user=user, role=AUDIT_ROLE, clinic_ids=frozenset(), request_id=request_id)


def _audit(user: Any, action: str, request_id: str, values: dict[str, Any]) -> None:
    record_audit(
        actor=_actor(user, request_id),
        action=action,
        object_type=AUDIT_OBJECT_TYPE,
        object_id=user.pk,
        new_values=values,
    )


# --------------------------------------------------------------------------- enrolment


@dataclass(frozen=True)
class Enrolment:
    """A pending authenticator: the secret (base32, for typing) and the otpauth:// URL (for
    the QR code). The device stays unconfirmed until a code from it is entered."""

    device: TOTPDevice
    secret: str
    config_url: str

    @property
    def secret_groups(self) -> str:
        """The secret in groups of four characters, easier to type."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


def pending_enrolment(user: Any) -> Enrolment:
    """The user's unconfirmed authenticator, created on first call (one per user).

    Reloading the page shows the same secret, so a half-finished setup is not broken by a
    refresh. Not audited: nothing is enabled until :func:`confirm_enrolment`.
    """
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)
    secret = b32encode(unhexlify(device.key.encode())).decode("ascii")
    return Enrolment(device=device, secret=secret, config_url=device.config_url)


def confirm_enrolment(request: HttpRequest, code: str, *, request_id: str) -> list[str] | None:
    """Confirm the pending authenticator with a code from it; return the new recovery codes.

    Refused while the user already has a confirmed authenticator (reset it first). On
    success (one transaction): the device is confirmed, ten new recovery codes replace any
    older ones, the session is marked as
    verified with the new device (and gets a new key), and ``mfa_enrol`` is audited. Returns
    None for a wrong code (audited ``mfa_verify_failed``, nothing enabled).
    """
    user = request.user
    code = _digits(code)
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update()
            .filter(user_id=user.pk, confirmed=False)
            .order_by("id")
            .first()
        )
        ok = (
            device is not None
            and not has_mfa(user)  # replacing a second factor needs a reset (password) first
            and _CODE_RE.match(code) is not None
            and device.verify_token(code)
        )
        if ok and device is not None:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _replace_recovery_codes(user)
            _audit(user, "mfa_enrol", request_id, {"device": "totp", "recovery_codes": len(codes)})
    if not ok or device is None:
        _audit_failure(user, request_id, "enrolment")
        return None
    _mark_verified(request, device)
    return codes


def new_recovery_codes(request: HttpRequest, password: str, *, request_id: str) -> list[str] | None:
    """A fresh set of recovery codes (the old ones stop working), after re-entering the
    password; None (audited as a failure) when the password is wrong or MFA is not set up."""
    user = request.user
    if not _password_ok(request, password) or not has_mfa(user):
        _audit_failure(user, request_id, "recovery_codes")
        return None
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        _audit(user, "mfa_recovery_codes", request_id, {"recovery_codes": len(codes)})
    return codes


def reset_mfa(request: HttpRequest, password: str, *, request_id: str) -> bool:
    """Remove the user's authenticator and recovery codes after re-entering the password.

    A user whose role requires MFA is then sent to set up a new authenticator before any
    other page. False (audited as a failure) when the password is wrong.
    """
    user = request.user
    if not _password_ok(request, password):
        _audit_failure(user, request_id, "reset")
        return False
    with transaction.atomic():
        removed = TOTPDevice.objects.filter(user_id=user.pk).delete()[0]
        StaticDevice.objects.filter(user_id=user.pk).delete()
        _audit(user, "mfa_reset", request_id, {"devices_removed": removed})
    request.session.pop("otp_device_id", None)
    return True


def admin_reset_mfa(*, admin_user: Any, user: Any, request_id: str) -> bool:
    """Remove another user's authenticator and recovery codes (lost phone and codes), as an
    administrator. Refused (False, audited ``denied``) for oneself or a non-superuser; the
    reset is audited ``mfa_reset`` with the administrator as actor. The user sets up again at
    their next sign-in when their role requires it."""
    actor = Actor(user=admin_user, role="superuser", clinic_ids=frozenset(), request_id=request_id)
    with transaction.atomic():
        if admin_user.pk == user.pk or not admin_user.is_superuser:
            record_audit(
                actor=actor,
                action="denied",
                object_type=AUDIT_OBJECT_TYPE,
                object_id=user.pk,
                reason="an administrator resets other users' MFA, never their own",
            )
            return False
        removed = TOTPDevice.objects.filter(user_id=user.pk).delete()[0]
        StaticDevice.objects.filter(user_id=user.pk).delete()
        record_audit(
            actor=actor,
            action="mfa_reset",
            object_type=AUDIT_OBJECT_TYPE,
            object_id=user.pk,
            new_values={"devices_removed": removed, "by": "administrator"},
            reason="administrator reset",
        )
    return True


# ------------------------------------------------------------------------ verification


def verify_second_factor(request: HttpRequest, code: str, *, request_id: str) -> str | None:
    """Check a code from the authenticator, or a recovery code, for the signed-in user.

    Returns the method that succeeded (``"totp"`` or ``"recovery_code"``) after marking the
    session verified (with a new session key) and auditing ``mfa_verify``; None for a wrong
    or throttled code (audited ``mfa_verify_failed``). A recovery code works once.
    """
    user = request.user
    method, device = None, None
    with transaction.atomic():
        digits = _digits(code)
        if _CODE_RE.match(digits):
            for totp in TOTPDevice.objects.select_for_update().filter(
                user_id=user.pk, confirmed=True
            ):
                if totp.verify_token(digits):
                    method, device = "totp", totp
                    break
        else:
            static = StaticDevice.objects.select_for_update().filter(user_id=user.pk).first()
            if static is not None and static.verify_token(_digest(code)):
                method, device = "recovery_code", static
        if device is not None:
            left = recovery_codes_left(user)
            _audit(user, "mfa_verify", request_id, {"method": method, "recovery_codes_left": left})
    if device is None:
        _audit_failure(user, request_id, "sign_in")
        return None
    _mark_verified(request, device)
    return method


# ------------------------------------------------------------------------------ helpers


def _digits(code: str) -> str:
    """A typed TOTP code without spaces (apps show ``123 456``)."""
    return re.sub(r"\s+", "", code or "")


def _normalise_recovery(code: str) -> str:
    return re.sub(r"[\s-]+", "", code or "").lower()


def _digest(code: str) -> str:
    """What the database stores for a recovery code: 16 hex digits of its SHA-256."""
    return hashlib.sha256(_normalise_recovery(code).encode("utf-8")).hexdigest()[:16]


def _new_code() -> str:
    raw = b32encode(secrets.token_bytes(10)).decode("ascii").lower()  # 80 bits, 16 chars
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _replace_recovery_codes(user: Any) -> list[str]:
    """Delete the user's recovery codes and store :data:`RECOVERY_CODE_COUNT` new ones."""
    StaticDevice.objects.filter(user_id=user.pk).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [_new_code() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(
        [StaticToken(device=device, token=_digest(code)) for code in codes]
    )
    return codes


def _password_ok(request: HttpRequest, password: str) -> bool:
    """Re-authentication: the password of the signed-in user (through the same backends as
    sign-in, so the lockout counts these attempts too)."""
    user = request.user
    again = authenticate(request, username=user.get_username(), password=password or "")
    return again is not None and again.pk == user.pk


def _audit_failure(user: Any, request_id: str, step: str) -> None:
    with transaction.atomic():
        _audit(user, "mfa_verify_failed", request_id, {"step": step})


def _mark_verified(request: HttpRequest, device: Any) -> None:
    """Record the verified device in the session, under a new session key (privilege change:
    no session fixation across the second factor)."""
    request.session.cycle_key()
    otp_login(request, device)
