"""``vertebra manage decision_aid_refresh``: rebuild the public decision aid's figures now."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from vertebra.web.decision_selectors import refresh


class Command(BaseCommand):
    """Read the de-identified registry (audited as ``system:decision-aid``), build the cell
    table and store it in the shared ``decision_aid`` cache.

    Run it after a deployment or a bulk load, or from cron, so that no visitor waits for the
    registry read (about 30 s at 100,000 patients). Without it the first request builds the
    table and later ones rebuild it in the background.
    """

    help = "Rebuild the decision aid's registry figures (de-identified, audited) now."

    def handle(self, *args: Any, **options: Any) -> None:
        """Build, store and report the size and the time taken."""
        started = time.monotonic()
        cells = refresh()
        fresh_for = settings.DECISION_AID_CACHE_SECONDS
        stored = f"fresh for {fresh_for} s" if fresh_for > 0 else "not stored (cache off)"
        self.stdout.write(
            f"decision aid: {cells.n_in_scope} of {cells.n_treated} treated patients in "
            f"{len(cells.leaves)} cells, built in {time.monotonic() - started:.1f} s; {stored}"
        )
