"""One date format for people: templates never format a calendar date themselves.

Every date a person reads goes through ``{{ value|day }}`` (``vertebra.core.labels.format_date``,
"6 Dec 2026"). A template that writes ``|date:"Y-m-d"`` (or any other format with a day, month
or year in it, or Django's default ``|date``) brings back the mixed formats issue 13 reported.
Machine-readable dates stay allowed where no person reads them: inside a ``datetime="…"``
attribute. Time of day (``|time:"H:i"``) and the weekday (``|date:"l"``) are not dates.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.template import engines

import vertebra

SRC = Path(vertebra.__file__).parent
#: The apps whose templates people read (staff pages, portal, public site, outcomes, e-mails).
APPS = ("registry", "followup", "web", "outcomes", "mfa")
#: A ``date`` filter, with its format argument when it has one.
DATE_FILTER = re.compile(r"""\|\s*date\b(?:\s*:\s*(["'])(?P<fmt>.*?)\1)?""")
#: Django format characters that print part of a calendar date (day, month, year, week, or a
#: whole timestamp). ``l``/``D`` (weekday) and time characters are allowed.
DATE_PARTS = set("djNSzWFmMnbEyYLocrUt")


def templates() -> list[Path]:
    """Every template of the apps people read, HTML and plain text (e-mails)."""
    found: list[Path] = []
    for app in APPS:
        for suffix in ("*.html", "*.txt"):
            found.extend(sorted((SRC / app / "templates").rglob(suffix)))
    return found


def prints_a_date(fmt: str | None) -> bool:
    """True when a ``date`` filter format prints a calendar date (no format = Django's
    ``DATE_FORMAT``, a date). Backslash-escaped characters are literal text."""
    if fmt is None:
        return True
    literal = re.sub(r"\\.", "", fmt)
    return bool(DATE_PARTS & set(literal))


def in_datetime_attribute(text: str, at: int) -> bool:
    """True when position ``at`` of ``text`` lies inside a ``datetime="…"`` attribute value."""
    before = text[:at]
    start = before.rfind('datetime="')
    return start != -1 and '"' not in before[start + len('datetime="') :]


def raw_date_formats(text: str) -> list[str]:
    """The ``date`` filters in a template's ``text`` that print a date a person reads."""
    found = []
    for match in DATE_FILTER.finditer(text):
        if prints_a_date(match.group("fmt")) and not in_datetime_attribute(text, match.start()):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"line {line}: {match.group(0)}")
    return found


def test_the_scan_sees_the_templates() -> None:
    names = {path.name for path in templates()}
    assert {"patient_detail.html", "patient_list.html", "coordinator.html"} <= names
    assert {"invitation.txt", "dashboard.html", "clinician.html"} <= names


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_template_formats_a_date_itself(path: Path) -> None:
    assert raw_date_formats(path.read_text(encoding="utf-8")) == [], (
        f"{path.relative_to(SRC)}: use {{% load vertebra_labels %}} and |day"
    )


def test_the_detector_finds_raw_formats_and_spares_the_rest() -> None:
    bad = (
        '{{ p.date_of_birth|date:"Y-m-d" }} {{ t.created_at|date:"j M Y" }} '
        "{{ x|date }} {{ y | date:'d/m/Y H:i' }}"
    )
    assert len(raw_date_formats(bad)) == 4
    fine = (
        '<time datetime="{{ e.when|date:\'c\' }}">{{ e.when|day }} {{ e.when|time:"H:i" }}</time> '
        '{{ today|date:"l" }} {{ v.at|date:"H:i T" }} {{ v.at|date:"\\Y H:i" }}'
    )
    assert raw_date_formats(fine) == []


def test_the_one_format_as_a_page_renders_it() -> None:
    template = engines["django"].from_string(
        "{% load vertebra_labels %}{{ born|day }} · {{ seen|day }} · {{ none|day }}"
    )
    text = template.render(
        {"born": dt.date(1966, 2, 5), "seen": dt.datetime(2026, 5, 13, 9, 30), "none": None}
    )
    assert text == "5 Feb 1966 · 13 May 2026 · —"
