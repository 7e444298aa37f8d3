"""Demo accounts: one per role, created idempotently, for the local demo only."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

#: The one password of every demo account. The demo binds to 127.0.0.1 only.
DEMO_PASSWORD = "vertebra-demo-2026"

ROLES: tuple[tuple[str, str, bool], ...] = (
    # (role, username, is Django admin)
    ("registry admin", "admin", True),
    ("clinic admin", "clinicadmin", False),
    ("clinician", "clinician", False),
    ("coordinator", "coordinator", False),
    ("researcher", "researcher", False),
)


@dataclass(frozen=True)
class DemoLogin:
    """A printed demo credential."""

    role: str
    username: str
    password: str


@transaction.atomic
def ensure_demo_accounts() -> list[DemoLogin]:
    """Create the demo role groups and one account per role if missing; return the logins.

    Existing accounts are left as they are, so a second ``vertebra demo`` does no password
    hashing and starts quickly.
    """
    logins = []
    for role, username, is_admin in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, is_staff=is_admin, is_superuser=is_admin)
            user.set_password(DEMO_PASSWORD)
            user.save()
            user.groups.add(group)
        logins.append(DemoLogin(role=role, username=username, password=DEMO_PASSWORD))
    return logins
