"""``vertebra manage decision_aid_refresh``: rebuild the public decision aid's figures now."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from vertebra.web.decision_selectors import refresh


class Command(BaseCommand):
    """Rebuild the analysis snapshot now (``vertebra snapshot refresh --force``), which builds
    the decision aid's cell table (audited as ``system:decision-aid``).

    The worker keeps the snapshot current (ADR 0022); this is for after a deployment of a new
    rule set, or for operators who want the figures rebuilt at once.
    """

    help = "Rebuild the decision aid's registry figures (de-identified, audited) now."

    def handle(self, *args: Any, **options: Any) -> None:
        """Build, store and report the size and the time taken."""
        started = time.monotonic()
        cells = refresh()
        stored = f"refreshed by the worker every {settings.SNAPSHOT_REFRESH_SECONDS} s"
        self.stdout.write(
            f"decision aid: {cells.n_in_scope} of {cells.n_treated} treated patients in "
            f"{len(cells.leaves)} cells, built in {time.monotonic() - started:.1f} s; {stored}"
        )
