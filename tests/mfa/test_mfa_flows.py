"""MFA sign-in flows through the real pages (ASVS 4.0.3 2.x / 5.0 6.3.3 L2: MFA for admins and
researchers; 7.5.1 re-authentication; HIPAA 164.312(d) person authentication, (b) audit)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.registry.factories import make_clinic
from tests.signin import code_for_secret, enrol_totp, sign_in, totp_code
from vertebra.registry.models import AuditEvent, Membership, Role

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"


def staff(username: str, role: str, *, superuser: bool = False) -> User:
    """A user with a usable password holding ``role`` (clinic roles at a new clinic)."""
    user = User.objects.create_user(
        username,
        password=PASSWORD,
        is_staff=superuser or role == Role.REGISTRY_ADMIN,
        is_superuser=superuser,
    )
    clinic = None if role in (Role.RESEARCHER, Role.REGISTRY_ADMIN) else make_clinic()
    Membership.objects.create(user=user, role=role, clinic=clinic)
    return user


def audit_actions(user: User) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="mfa", actor_user_id=user.pk)
        .order_by("id")
        .values_list("action", flat=True)
    )


def password_only(client: Client, username: str) -> None:
    response = client.post(
        "/accounts/login/", {"username": username, "password": PASSWORD, "next": "/clinic/"}
    )
    assert response.status_code == 302, "the password step itself must succeed"


@pytest.mark.parametrize(
    ("role", "superuser"),
    [(Role.RESEARCHER, False), (Role.REGISTRY_ADMIN, False), (Role.REGISTRY_ADMIN, True)],
)
def test_required_roles_are_sent_to_setup_before_any_staff_page(
    client: Client, role: str, superuser: bool
) -> None:
    staff("needs-mfa", role, superuser=superuser)
    password_only(client, "needs-mfa")
    for path in ("/clinic/", "/clinic/outcomes/", "/admin/", "/p/staff/", "/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/mfa/setup/?next="), path
    page = client.get("/accounts/mfa/setup/?next=/clinic/outcomes/")
    body = page.content.decode()
    assert page.status_code == 200 and "Your role needs a second step" in body
    assert re.search(r'<img src="data:image/svg\+xml[^"]+" alt="QR code', body)
    assert re.search(r'<code id="mfa-secret">([A-Z2-7]{4} ){7}[A-Z2-7]{4}</code>', body)
    assert page["Cache-Control"].startswith("max-age=0") and "no-store" in page["Cache-Control"]


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR, Role.CLINIC_ADMIN])
def test_other_staff_roles_may_sign_in_without_mfa(client: Client, role: str) -> None:
    staff("optional", role)
    password_only(client, "optional")
    assert client.get("/clinic/").status_code == 200
    manage = client.get("/accounts/mfa/").content.decode()
    assert "Multi-factor sign-in is <strong>off</strong>" in manage


def test_enrolment_shows_codes_once_and_then_every_sign_in_asks_for_a_code() -> None:
    user = staff("keen", Role.CLINICIAN)
    client = Client()
    password_only(client, "keen")
    body = client.get("/accounts/mfa/setup/").content.decode()
    secret = re.search(r'<code id="mfa-secret">([^<]+)</code>', body)
    assert secret is not None

    wrong = client.post("/accounts/mfa/setup/", {"code": "000000"})
    if code_for_secret(secret.group(1)) != "000000":
        assert wrong.status_code == 400
        assert "That code did not match" in wrong.content.decode()
        assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        assert audit_actions(user) == ["mfa_verify_failed"]
    # a wrong code throttles the device (1 s, doubling): wait it out
    TOTPDevice.objects.filter(user=user).update(throttling_failure_timestamp=None)
    done = client.post("/accounts/mfa/setup/", {"code": code_for_secret(secret.group(1))})
    page = done.content.decode()
    assert done.status_code == 200 and "Multi-factor sign-in is on." in page
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>", page)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert (
        len(stored) == 10
        and not stored & {c for c in codes} | {c.replace("-", "") for c in codes} & stored
    ), "recovery codes are stored only as digests"
    assert "no-store" in done["Cache-Control"]
    assert audit_actions(user)[-1] == "mfa_enrol"
    enrol_row = AuditEvent.objects.filter(action="mfa_enrol", actor_user_id=user.pk).get()
    assert secret.group(1).replace(" ", "") not in str(enrol_row.new_values)
    assert not any(code in str(enrol_row.new_values) for code in codes)

    again = Client()
    password_only(again, "keen")
    response = again.get("/clinic/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/mfa/verify/?next=%2Fclinic%2F"


def test_verification_after_the_password_audits_failures_and_rotates_the_session() -> None:
    user = staff("admin1", Role.REGISTRY_ADMIN)
    device = enrol_totp(user)
    client = Client()
    password_only(client, "admin1")
    before = client.cookies["sessionid"].value
    good = totp_code(device)
    bad = "000000" if good != "000000" else "111111"
    refused = client.post("/accounts/mfa/verify/", {"code": bad, "next": "/clinic/"})
    assert refused.status_code == 400 and "That code did not match" in refused.content.decode()
    assert client.get("/admin/").status_code == 302  # still not through
    failed = AuditEvent.objects.filter(action="mfa_verify_failed", actor_user_id=user.pk).get()
    assert failed.new_values == {"step": "sign_in"} and failed.role == "account"

    # django-otp throttles a device after a failure (1 s, doubling): wait it out in the clock
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    ok = client.post("/accounts/mfa/verify/", {"code": totp_code(device), "next": "/admin/"})
    assert ok.status_code == 302 and ok["Location"] == "/admin/"
    assert client.cookies["sessionid"].value != before, "a new session key after the factor"
    assert client.get("/admin/").status_code == 200
    verified = AuditEvent.objects.filter(action="mfa_verify", actor_user_id=user.pk).get()
    assert verified.new_values["method"] == "totp"


def test_a_recovery_code_works_exactly_once() -> None:
    user = staff("res1", Role.RESEARCHER)
    client = Client()
    password_only(client, "res1")
    secret = re.search(
        r'<code id="mfa-secret">([^<]+)</code>', client.get("/accounts/mfa/setup/").content.decode()
    )
    assert secret is not None
    page = client.post("/accounts/mfa/setup/", {"code": code_for_secret(secret.group(1))})
    codes = re.findall(r"<li><code>([a-z2-7-]{19})</code>", page.content.decode())
    assert len(codes) == 10

    first = Client()
    password_only(first, "res1")
    used = first.post(
        "/accounts/mfa/verify/", {"code": codes[3].upper(), "next": "/clinic/outcomes/"}
    )
    assert used.status_code == 302 and used["Location"] == "/clinic/outcomes/"
    assert first.get("/clinic/outcomes/").status_code == 200
    row = AuditEvent.objects.filter(action="mfa_verify", actor_user_id=user.pk).get()
    assert row.new_values == {"method": "recovery_code", "recovery_codes_left": 9}

    second = Client()
    password_only(second, "res1")
    TOTPDevice.objects.filter(user=user).update(throttling_failure_timestamp=None)
    again = second.post("/accounts/mfa/verify/", {"code": codes[3], "next": "/clinic/outcomes/"})
    assert again.status_code == 400
    assert second.get("/clinic/outcomes/").status_code == 302
    assert audit_actions(user)[-1] == "mfa_verify_failed"
    assert StaticToken.objects.filter(device__user=user).count() == 9


def test_a_stolen_password_cannot_replace_the_authenticator() -> None:
    user = staff("victim", Role.REGISTRY_ADMIN)
    device = enrol_totp(user)
    attacker = Client()
    password_only(attacker, "victim")
    setup = attacker.get("/accounts/mfa/setup/")
    assert setup.status_code == 302 and setup["Location"].startswith("/accounts/mfa/verify/")
    assert attacker.get("/accounts/mfa/")["Location"].startswith("/accounts/mfa/verify/")
    for path in ("/accounts/mfa/reset/", "/accounts/mfa/recovery-codes/"):
        response = attacker.post(path, {"password": PASSWORD})
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/mfa/verify/"), path
    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [device.pk]


def test_reset_needs_the_password_and_a_required_role_must_enrol_again() -> None:
    user = staff("admin2", Role.REGISTRY_ADMIN)
    client = Client()
    enrol_totp(user)
    assert sign_in(client, "admin2", PASSWORD).status_code == 302
    wrong = client.post("/accounts/mfa/reset/", {"password": "not-the-password"})
    assert wrong.status_code == 400 and "That password is not right." in wrong.content.decode()
    assert TOTPDevice.objects.filter(user=user).exists()
    assert audit_actions(user)[-1] == "mfa_verify_failed"

    reset = client.post("/accounts/mfa/reset/", {"password": PASSWORD})
    assert reset.status_code == 302 and reset["Location"] == "/accounts/mfa/setup/"
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert audit_actions(user)[-1] == "mfa_reset"
    blocked = client.get("/clinic/")
    assert blocked["Location"].startswith("/accounts/mfa/setup/")


def test_new_recovery_codes_replace_the_old_ones(client: Client) -> None:
    user = staff("coord", Role.COORDINATOR)
    enrol_totp(user)
    sign_in(client, "coord", PASSWORD)
    old = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    page = client.post("/accounts/mfa/recovery-codes/", {"password": PASSWORD})
    codes = re.findall(r"<li><code>([a-z2-7-]{19})</code>", page.content.decode())
    assert len(codes) == 10 and "Your earlier codes no longer work" in page.content.decode()
    new = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(new) == 10 and not old & new
    assert audit_actions(user)[-1] == "mfa_recovery_codes"


def test_the_required_roles_are_a_setting(client: Client) -> None:
    staff("res2", Role.RESEARCHER)
    with override_settings(MFA_REQUIRED_ROLES=("registry_admin",)):
        password_only(client, "res2")
        assert client.get("/clinic/outcomes/").status_code == 200


def test_the_token_api_is_not_redirected(client: Client) -> None:
    """Bearer-token calls carry no session: the MFA step never stands in their way."""
    staff("res3", Role.RESEARCHER)
    password_only(client, "res3")
    response = client.get("/api/v1/patients")
    assert response.status_code == 401


def test_force_login_stands_for_a_completed_sign_in(client: Client) -> None:
    user: Any = staff("res4", Role.RESEARCHER)
    client.force_login(user)
    assert client.get("/clinic/outcomes/").status_code == 200


def test_an_administrator_resets_another_users_mfa_audited_never_their_own() -> None:
    boss = staff("boss", Role.REGISTRY_ADMIN, superuser=True)
    lost = staff("lost", Role.RESEARCHER)
    enrol_totp(lost)
    enrol_totp(boss)
    client = Client()
    sign_in(client, "boss", PASSWORD, next_url="/admin/")
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404  # secrets not shown
    response = client.post(
        "/admin/auth/user/",
        {"action": "reset_mfa", "_selected_action": [lost.pk, boss.pk]},
    )
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=lost).exists()
    assert TOTPDevice.objects.filter(user=boss).exists()
    reset = AuditEvent.objects.get(action="mfa_reset", object_id=str(lost.pk))
    assert reset.actor_user_id == boss.pk and reset.role == "superuser"
    assert AuditEvent.objects.filter(
        action="denied", object_type="mfa", object_id=str(boss.pk)
    ).exists()
