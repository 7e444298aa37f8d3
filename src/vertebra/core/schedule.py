"""Follow-up schedules: time points with windows, computed from the treatment date.

A protocol is data (``vertebra/data/schedules/default.yaml``): for each time point a target
offset from the treatment date (months, weeks and/or days) and a window of days before and
after the target, both ends inclusive. `build_schedule` turns it into dates; it is pure, so a
changed treatment date simply means calling it again.

Month arithmetic clamps to the end of the month: 31 Jan + 1 month = 28 Feb (29 in leap years),
as in dateutil's relativedelta and most scheduling systems. Because month lengths vary, window
overlap is checked for every treatment date over whole leap cycles, not just one date.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.yamltext import load_yaml

__all__ = [
    "Offset",
    "Protocol",
    "ProtocolError",
    "TimePoint",
    "TimePointSpec",
    "add_months",
    "build_schedule",
    "default_protocol",
    "parse_protocol",
    "time_point_for",
]

#: Average days per month, used only for the nominal `months` of week/day offsets.
_DAYS_PER_MONTH = 365.25 / 12


class ProtocolError(ValueError):
    """Raised for an invalid protocol (bad fields, duplicate ids, overlapping windows)."""


@dataclass(frozen=True, slots=True)
class Offset:
    """Target offset from the treatment date: months first (clamped), then weeks and days."""

    months: int = 0
    weeks: int = 0
    days: int = 0

    def apply(self, start: date) -> date:
        """The target date for a treatment on `start`."""
        return add_months(start, self.months) + timedelta(weeks=self.weeks, days=self.days)

    @property
    def nominal_months(self) -> float:
        """Months after treatment for plots and analysis (6 weeks -> 1.38), 2 decimals."""
        return round(self.months + (self.weeks * 7 + self.days) / _DAYS_PER_MONTH, 2)


@dataclass(frozen=True, slots=True)
class TimePointSpec:
    """One time point of a protocol: id, label, target offset, window days before/after."""

    id: str
    label: str
    offset: Offset
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class Protocol:
    """A validated follow-up protocol. Constructing one checks it (ProtocolError if invalid)."""

    id: str
    version: str
    title: str
    time_points: tuple[TimePointSpec, ...]

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, slots=True)
class TimePoint:
    """A time point placed on the calendar: answers dated opens..closes (inclusive) count."""

    id: str
    label: str
    months: float
    target: date
    opens: date
    closes: date

    def contains(self, day: date) -> bool:
        """True when `day` falls inside the window (inclusive)."""
        return self.opens <= day <= self.closes


def add_months(start: date, months: int) -> date:
    """`start` plus `months` calendar months, clamped to the last day of the target month.

    >>> add_months(date(2024, 1, 31), 1)
    datetime.date(2024, 2, 29)
    """
    index = start.year * 12 + (start.month - 1) + months
    year, month0 = divmod(index, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(start.day, last_day))


def build_schedule(
    treatment_date: date, protocol: Protocol | Mapping[str, Any] | None = None
) -> list[TimePoint]:
    """Place every time point of `protocol` (default: the shipped one) on the calendar.

    `protocol` may be a Protocol or a mapping in the YAML file's shape (validated here).
    Returns time points in protocol order with non-overlapping windows.
    """
    if isinstance(treatment_date, datetime) or not isinstance(treatment_date, date):
        raise TypeError(f"treatment_date must be a datetime.date, got {treatment_date!r}")
    proto = _resolve(protocol)
    return _place(proto, treatment_date)


def time_point_for(response_date: date, schedule: Sequence[TimePoint]) -> TimePoint | None:
    """The time point whose window contains `response_date`, or None (between windows)."""
    for tp in schedule:
        if tp.contains(response_date):
            return tp
    return None


@cache
def default_protocol() -> Protocol:
    """The shipped default protocol (read and validated once)."""
    raw = load_yaml(
        files("vertebra").joinpath("data", "schedules", "default.yaml").read_text(encoding="utf-8")
    )
    return parse_protocol(raw, "data/schedules/default.yaml")


def parse_protocol(raw: Any, origin: str = "protocol") -> Protocol:
    """Build and validate a Protocol from a mapping shaped like the YAML file."""
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{origin}: a protocol is a mapping with id, version, time_points")
    points = raw.get("time_points")
    if not isinstance(points, list) or not points:
        raise ProtocolError(f"{origin}: time_points must be a non-empty list")
    return Protocol(
        id=_req_str(raw, "id", origin),
        version=str(raw.get("version", "")),
        title=str(raw.get("title", "")),
        time_points=tuple(_parse_point(p, origin) for p in points),
    )


# --- internals ----------------------------------------------------------------------------------


def _resolve(protocol: Protocol | Mapping[str, Any] | None) -> Protocol:
    if protocol is None:
        return default_protocol()
    if isinstance(protocol, Protocol):
        return protocol
    return parse_protocol(protocol)


def _place(proto: Protocol, start: date) -> list[TimePoint]:
    placed = []
    for spec in proto.time_points:
        target = spec.offset.apply(start)
        placed.append(
            TimePoint(
                id=spec.id,
                label=spec.label,
                months=spec.offset.nominal_months,
                target=target,
                opens=target - timedelta(days=spec.before),
                closes=target + timedelta(days=spec.after),
            )
        )
    return placed


def _parse_point(raw: Any, origin: str) -> TimePointSpec:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{origin}: each time point must be a mapping")
    ident = _req_str(raw, "id", origin)
    here = f"{origin} time point {ident!r}"
    offset = raw.get("offset") or {}
    window = raw.get("window") or {}
    if not isinstance(offset, Mapping) or not isinstance(window, Mapping):
        raise ProtocolError(f"{here}: offset and window must be mappings")
    unknown = set(offset) - {"months", "weeks", "days"}
    if unknown:
        raise ProtocolError(f"{here}: unknown offset unit(s) {sorted(unknown)}")
    return TimePointSpec(
        id=ident,
        label=str(raw.get("label", ident)),
        offset=Offset(
            months=_int(offset, "months", here),
            weeks=_int(offset, "weeks", here),
            days=_int(offset, "days", here),
        ),
        before=_int(window, "before", here),
        after=_int(window, "after", here),
    )


def _req_str(m: Mapping[str, Any], key: str, where: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{where}: {key!r} must be a non-empty string")
    return value


def _int(m: Mapping[str, Any], key: str, where: str) -> int:
    value = m.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{where}: {key} must be a whole number, got {value!r}")
    return value


def _validation_dates() -> list[date]:
    """Treatment dates whose schedules cover every month-length and leap-year case.

    Four consecutive years cover every (month, day, leap-phase) start between 1901 and 2099;
    2097-2101 adds the non-leap century year 2100.
    """
    out: list[date] = []
    for first, years in ((date(2024, 1, 1), 4), (date(2097, 1, 1), 5)):
        end = date(first.year + years, 1, 1)
        out.extend(first + timedelta(days=i) for i in range((end - first).days))
    return out


def _validate(proto: Protocol) -> None:
    """Raise ProtocolError unless ids are unique, windows are >= 0 and windows never overlap."""
    ids = [tp.id for tp in proto.time_points]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ProtocolError(f"protocol {proto.id!r}: duplicate time point id(s) {dupes}")
    for tp in proto.time_points:
        if tp.before < 0 or tp.after < 0:
            raise ProtocolError(f"protocol {proto.id!r}: {tp.id!r} window days must be >= 0")
    for start in _validation_dates():
        placed = _place(proto, start)
        for earlier, later in itertools.pairwise(placed):
            if later.opens <= earlier.closes:
                raise ProtocolError(
                    f"protocol {proto.id!r}: windows of {earlier.id!r} "
                    f"({earlier.opens}..{earlier.closes}) and {later.id!r} "
                    f"({later.opens}..{later.closes}) overlap for treatment on {start}; "
                    "time points must be in time order with a gap between windows"
                )
