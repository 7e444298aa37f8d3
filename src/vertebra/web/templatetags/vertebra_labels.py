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


@register.filter(name="summary_line")
def summary_line(error: object, field_label: str) -> str:
    """One line of a form's error summary: ``"<label>: <error>"``, unless the error already names
    its field.

    Plausibility refusals speak for themselves in the API too, so their messages start with the
    field's short name ("Cost note: the patient paid more …"). When that name is the start of the
    form's label ("Cost note (why the patient paid more …)"), repeating the label would say it
    twice; the message alone is shown.
    """
    text = str(error)
    named, sep, _ = text.partition(": ")
    if sep and named and str(field_label).casefold().startswith(named.casefold()):
        return text
    return f"{field_label}: {text}"
