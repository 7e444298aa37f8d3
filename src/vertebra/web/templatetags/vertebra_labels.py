"""Template filters for human words: ``{% load vertebra_labels %}``.

``{{ episode.arm|label:"arm" }}`` → "Steroid injection"; ``{{ some_date|day }}`` → "6 Dec 2026".
The words come from :mod:`vertebra.core.labels`, the one vocabulary of the whole product.
"""

from __future__ import annotations

import datetime as dt

from django import template

from vertebra.core import labels

register = template.Library()


@register.filter(name="label")
def label(code: object, kind: str) -> str:
    """The human label of ``code`` in vocabulary ``kind``."""
    return labels.label(kind, code)


@register.filter(name="day")
def day(value: dt.date | dt.datetime | str | None) -> str:
    """A date in the product's one format ("6 Dec 2026")."""
    return labels.format_date(value)
