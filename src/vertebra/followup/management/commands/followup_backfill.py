"""``vertebra manage followup_backfill``: create follow-up schedules for episodes that have none."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from vertebra.followup.services import backfill_schedules


class Command(BaseCommand):
    help = "Create the follow-up schedule of every treatment episode that has none."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--today",
            type=dt.date.fromisoformat,
            default=None,
            help="Date to compute window status on (YYYY-MM-DD; default: today).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        today = options["today"] or timezone.localdate()
        healed = backfill_schedules(today)
        self.stdout.write(f"Created {len(healed)} follow-up schedule(s).")
