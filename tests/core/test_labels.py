"""The one vocabulary of human words (vertebra.core.labels)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from vertebra.core import labels
from vertebra.core.synth.constants import ARMS, CONDITIONS, RELATEDNESS, TIMEPOINT_STATUSES


def test_every_analysis_vocabulary_has_written_labels() -> None:
    for kind, codes in {
        "arm": ARMS,
        "condition": CONDITIONS,
        "relatedness": RELATEDNESS,
        "timepoint_status": TIMEPOINT_STATUSES,
        "timepoint": ("baseline", "week_6", "month_3", "month_6", "month_12", "month_24"),
    }.items():
        missing = [code for code in codes if not labels.has_label(kind, code)]
        assert missing == [], f"{kind}: no label for {missing}"


def test_labels_come_from_their_single_sources() -> None:
    assert labels.label("timepoint", "week_6") == "6 weeks"
    assert labels.label("timepoint", "month_12") == "12 months"
    assert labels.label("instrument", "odi") == "Oswestry Disability Index"
    assert labels.label("arm", "steroid_injection") == "Steroid injection"
    assert labels.label("arm", None) == "—"


@given(st.from_regex(r"[a-z]{1,8}(_[a-z0-9]{1,8}){0,3}", fullmatch=True))
def test_unlisted_codes_never_reach_people_raw(code: str) -> None:
    text = labels.label("arm", code)
    assert "_" not in text
    assert text[0].isupper() or not text[0].isalpha()


def test_one_date_format() -> None:
    assert labels.format_date(dt.date(2026, 12, 6)) == "6 Dec 2026"
    assert labels.format_date("2025-03-01") == "1 Mar 2025"
    assert labels.format_date(None) == "—"
