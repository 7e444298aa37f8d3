"""Human words for Vertebra's codes: one vocabulary for pages, reports, charts and mail.

``label(kind, code)`` returns the label of ``code`` in vocabulary ``kind`` (``"arm"``,
``"condition"``, ``"timepoint"``, ``"instrument"``, ...). Time points are read from the default
follow-up schedule and instruments from their definitions, so each label has one source. A code
with no label is shown as a readable fallback (underscores to spaces, first letter capital),
never raw; :func:`has_label` lets tests insist that every emitted code is listed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

from vertebra.core.yamltext import load_yaml

__all__ = ["DATE_FORMAT", "format_date", "has_label", "humanize", "label", "vocabulary"]

#: The one date format people see: "6 Dec 2026" (unambiguous in every locale).
DATE_FORMAT = "%-d %b %Y"


@cache
def _vocabularies() -> Mapping[str, Mapping[str, str]]:
    raw = load_yaml(files("vertebra").joinpath("data", "labels.yaml").read_text("utf-8"))
    vocab: dict[str, dict[str, str]] = {
        kind: {str(code): str(text) for code, text in entries.items()}
        for kind, entries in raw["labels"].items()
    }
    vocab["timepoint"] = _timepoint_labels()
    vocab["instrument"] = _instrument_labels()
    return vocab


def _timepoint_labels() -> dict[str, str]:
    from vertebra.core.schedule import default_protocol

    return {spec.id: spec.label for spec in default_protocol().time_points}


def _instrument_labels() -> dict[str, str]:
    from vertebra.core.instruments.registry import builtin_definitions

    return {key: defn.title for key, defn in builtin_definitions().items()}


def vocabulary(kind: str) -> Mapping[str, str]:
    """Every code → label of vocabulary ``kind`` (empty mapping for an unknown kind)."""
    return _vocabularies().get(kind, {})


def has_label(kind: str, code: str) -> bool:
    """True when ``code`` has a written label in vocabulary ``kind``."""
    return str(code) in vocabulary(kind)


def humanize(code: str) -> str:
    """A readable fallback for an unlisted code: ``"month_12"`` → ``"Month 12"``."""
    text = str(code).replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "—"


def label(kind: str, code: object) -> str:
    """The label of ``code`` in vocabulary ``kind``; ``"—"`` for None or empty."""
    if code is None or code == "":
        return "—"
    return vocabulary(kind).get(str(code)) or humanize(str(code))


def format_date(value: dt.date | dt.datetime | str | None) -> str:
    """A date as people read it everywhere in Vertebra ("6 Dec 2026"); ``"—"`` when unknown.

    ISO strings (from JSON reports) are accepted; anything unparseable is returned unchanged.
    """
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).strftime(DATE_FORMAT)
        except ValueError:
            return value
    return value.strftime(DATE_FORMAT)
