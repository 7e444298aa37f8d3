"""``vertebra manage issue_token USERNAME``: issue an API token and print it, once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vertebra.registry import services
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.permissions import Actor
from vertebra.registry.views import held_roles


class Command(BaseCommand):
    help = (
        "Issue a JSON API token for USERNAME acting in one of their roles. The token is printed "
        "once on standard output; only its SHA-256 is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role", default="", help="Role the token acts in (default: the user's first role)."
        )
        parser.add_argument("--days", type=int, default=services.DEFAULT_TOKEN_DAYS)
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the token alone on stdout (scriptable); details go to stderr."""
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        roles = held_roles(user)
        role = options["role"] or (roles[0] if roles else "")
        if not role:
            raise CommandError(f"{user.get_username()} holds no staff role; no token issued.")
        try:
            actor = Actor.for_user(user, role, request_id="cli:issue_token")
            token, raw = services.issue_api_token(
                actor=actor, role=role, name=options["name"], days=options["days"]
            )
        except (PermissionDeniedError, ValidationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(raw)
        self.stderr.write(
            f"Issued token {token.prefix}… for {user.get_username()} as {role}, "
            f"expires {token.expires_at:%Y-%m-%d}. It is shown only now: store it safely."
        )
