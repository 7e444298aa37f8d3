"""Follow-up schedule: month arithmetic, windows, and the no-overlap guarantee."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.schedule import (
    Offset,
    Protocol,
    ProtocolError,
    TimePointSpec,
    add_months,
    build_schedule,
    default_protocol,
    parse_protocol,
    time_point_for,
)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year: clamp to 29 Feb
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2024, 3, 31), 1, date(2024, 4, 30)),
        (date(2024, 8, 31), 3, date(2024, 11, 30)),
        (date(2024, 12, 15), 1, date(2025, 1, 15)),  # year rollover
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
        (date(2099, 12, 31), 2, date(2100, 2, 28)),  # 2100 is not a leap year
    ],
)
def test_add_months(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


def test_default_schedule_dates() -> None:
    """Treatment 15 Mar 2024: baseline 14 Feb-15 Mar; 6 wk = 26 Apr (+42 d) +-14; 3 mo = 15 Jun
    +-21; 6 mo = 15 Sep +-30; 12 mo = 15 Mar 2025 +-45; 24 mo = 15 Mar 2026 +-60."""
    s = {tp.id: tp for tp in build_schedule(date(2024, 3, 15))}
    assert list(s) == ["baseline", "week_6", "month_3", "month_6", "month_12", "month_24"]
    assert (s["baseline"].opens, s["baseline"].target, s["baseline"].closes) == (
        date(2024, 2, 14),
        date(2024, 3, 15),
        date(2024, 3, 15),
    )
    assert s["week_6"].target == date(2024, 4, 26)
    assert (s["week_6"].opens, s["week_6"].closes) == (date(2024, 4, 12), date(2024, 5, 10))
    assert s["month_3"].target == date(2024, 6, 15)
    assert s["month_3"].closes - s["month_3"].target == timedelta(days=21)
    assert s["month_6"].target == date(2024, 9, 15)
    assert s["month_12"].target == date(2025, 3, 15)
    assert s["month_12"].opens == date(2025, 1, 29)
    assert s["month_24"].target == date(2026, 3, 15)
    assert s["month_24"].closes == date(2026, 5, 14)
    assert [tp.months for tp in s.values()] == [0.0, 1.38, 3.0, 6.0, 12.0, 24.0]


def test_month_end_treatment_date() -> None:
    """Treatment 31 Jan 2024: 3 months -> 30 Apr (clamped), 12 months -> 31 Jan 2025."""
    s = {tp.id: tp for tp in build_schedule(date(2024, 1, 31))}
    assert s["month_3"].target == date(2024, 4, 30)
    assert s["month_6"].target == date(2024, 7, 31)
    assert s["month_12"].target == date(2025, 1, 31)


def test_time_point_for() -> None:
    schedule = build_schedule(date(2024, 3, 15))
    assert time_point_for(date(2024, 3, 1), schedule).id == "baseline"  # type: ignore[union-attr]
    assert time_point_for(date(2024, 3, 16), schedule) is None  # day after treatment
    assert time_point_for(date(2024, 2, 13), schedule) is None  # too early for baseline
    assert time_point_for(date(2024, 5, 10), schedule).id == "week_6"  # type: ignore[union-attr]
    assert time_point_for(date(2024, 5, 11), schedule) is None  # gap between windows
    assert time_point_for(date(2025, 3, 1), schedule).id == "month_12"  # type: ignore[union-attr]


def test_recomputed_when_treatment_date_changes() -> None:
    a = build_schedule(date(2024, 3, 15))
    b = build_schedule(date(2024, 4, 15))
    assert a[2].target == date(2024, 6, 15) and b[2].target == date(2024, 7, 15)


@settings(deadline=None, max_examples=300)
@given(
    st.dates(min_value=date(1950, 1, 1), max_value=date(2150, 12, 31)),
    st.integers(min_value=-60, max_value=900),
)
def test_every_date_maps_to_at_most_one_time_point(treatment: date, delta: int) -> None:
    schedule = build_schedule(treatment)
    for earlier, later in itertools.pairwise(schedule):
        assert earlier.target < later.target
        assert earlier.closes < later.opens  # never overlap
    for tp in schedule:
        assert tp.opens <= tp.target <= tp.closes
    response = treatment + timedelta(days=delta)
    matches = [tp for tp in schedule if tp.contains(response)]
    assert len(matches) <= 1
    assert time_point_for(response, schedule) == (matches[0] if matches else None)


def _protocol(points: list[dict[str, object]]) -> dict[str, object]:
    return {"id": "custom", "version": "1", "time_points": points}


def test_custom_protocol_from_mapping() -> None:
    proto = _protocol(
        [
            {"id": "baseline", "offset": {"days": 0}, "window": {"before": 14, "after": 0}},
            {
                "id": "d30",
                "label": "30 days",
                "offset": {"days": 30},
                "window": {"before": 7, "after": 7},
            },
        ]
    )
    schedule = build_schedule(date(2024, 1, 1), proto)
    assert [tp.id for tp in schedule] == ["baseline", "d30"]
    assert schedule[1].target == date(2024, 1, 31)
    assert schedule[1].label == "30 days"


def test_overlapping_windows_are_refused() -> None:
    """3 months +-45 days overlaps 6 weeks +-14 days (day 56 vs day ~45)."""
    proto = _protocol(
        [
            {"id": "week_6", "offset": {"weeks": 6}, "window": {"before": 14, "after": 14}},
            {"id": "month_3", "offset": {"months": 3}, "window": {"before": 45, "after": 45}},
        ]
    )
    with pytest.raises(ProtocolError, match=r"'week_6'.*'month_3'.*overlap"):
        build_schedule(date(2024, 1, 1), proto)


def test_overlap_found_only_for_some_treatment_dates() -> None:
    """1 month and 2 months, each +-14 days. From 15 Mar the targets (15 Apr, 15 May) are 30 days
    apart and the windows leave a gap; from 15 Jan 2023 they are 15 Feb and 15 Mar, only 28 days
    apart, so the windows meet on 1 Mar. Validation must check every treatment date."""
    first, second = add_months(date(2023, 3, 15), 1), add_months(date(2023, 3, 15), 2)
    assert (second - first).days == 30
    first, second = add_months(date(2023, 1, 15), 1), add_months(date(2023, 1, 15), 2)
    assert (second - first).days == 28
    with pytest.raises(ProtocolError, match="overlap"):
        Protocol(
            "tight",
            "1",
            "",
            (
                TimePointSpec("m1", "1 mo", Offset(months=1), 14, 14),
                TimePointSpec("m2", "2 mo", Offset(months=2), 14, 14),
            ),
        )


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([{"id": "a"}, {"id": "a", "offset": {"days": 100}}], "duplicate"),
        ([{"id": "a", "window": {"before": -1}}], ">= 0"),
        ([{"id": "a", "offset": {"years": 1}}], "unknown offset unit"),
        ([{"id": "a", "offset": {"months": 1.5}}], "whole number"),
        ([], "non-empty"),
        (
            [{"id": "late", "offset": {"months": 6}}, {"id": "early", "offset": {"months": 3}}],
            "time order",
        ),
    ],
)
def test_invalid_protocols(points: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_protocol(_protocol(points))


def test_datetime_is_refused() -> None:
    with pytest.raises(TypeError, match=r"datetime\.date"):
        build_schedule(datetime(2024, 1, 1, 12, 0))


def test_default_protocol_is_data() -> None:
    proto = default_protocol()
    assert proto.id == "default"
    windows = {tp.id: (tp.before, tp.after) for tp in proto.time_points}
    assert windows == {
        "baseline": (30, 0),
        "week_6": (14, 14),
        "month_3": (21, 21),
        "month_6": (30, 30),
        "month_12": (45, 45),
        "month_24": (60, 60),
    }
