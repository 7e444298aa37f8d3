"""Plausibility rules for clinical records: dates, pathway order, volumes, doses, AE grading.

Pure functions over plain values (no Django, no database): the registry's one validation gate
(:func:`vertebra.registry.validation.validate_record`) reads the related rows and calls these.
The ranges live in the versioned data file ``vertebra/data/plausibility.yaml``, each with its
source; :func:`rules` loads the packaged file. Time is a parameter (``today``).

Every check returns ``None`` (plausible) or a :class:`Refusal` naming the field and, in plain
words, the allowed range ("Harvest date: enter a date from 1 Mar 2025 (the episode start) to
6 Dec 2026 (today)."). Unknown values (``None``) are never refused here: whether a field is
required is the model's business.

Units (stated once, used everywhere): volumes in mL, cell doses in million cells, total
nucleated cells (TNC) in million cells per mL, CFU-F in colonies per mL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.yamltext import load_yaml

__all__ = [
    "CELL_DOSE_UNIT",
    "TNC_UNIT",
    "Bound",
    "Range",
    "Refusal",
    "Rules",
    "analytics_window",
    "check_adverse_event",
    "check_date",
    "check_episode_cost",
    "check_harvest_volume",
    "check_injection_volume",
    "check_range",
    "in_window",
    "load_rules",
    "rules",
]

#: The unit of ``Injection.cell_dose`` everywhere (pages, API, exports, dose bands).
CELL_DOSE_UNIT = "million cells"
#: The unit of ``Processing.tnc_per_ml`` everywhere.
TNC_UNIT = "million cells per mL"


@dataclass(frozen=True)
class Refusal:
    """Why a value may not be stored: the field it concerns and a plain-language sentence."""

    field: str
    message: str


@dataclass(frozen=True)
class Range:
    """An inclusive numeric range with its unit and source (``verified`` as in clinical.md)."""

    min: float
    max: float
    unit: str
    source: str
    verified: bool

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True)
class Bound:
    """A related date a value must follow (lower bound) or precede (upper bound).

    ``label`` names it for people ("the episode start"); ``strict`` excludes the day itself
    (a diagnosis must come after the birth date, not on it).
    """

    label: str
    day: dt.date
    strict: bool = False


@dataclass(frozen=True)
class Rules:
    """The plausibility rule set of one version of ``plausibility.yaml``."""

    version: str
    date_floor: dt.date
    future_days: Mapping[str, int]
    analytics_future_days: int
    harvest_volume_ml: Mapping[str, Range]
    injection_volume_ml_per_level: Mapping[str, Range]
    cell_dose_million: Range
    tnc_million_per_ml: Range
    cfu_f_per_ml: Range
    #: Allowed price range per currency (ISO 4217 code -> range); empty: no cost rules.
    episode_cost: Mapping[str, Range] = field(default_factory=dict)

    def future_allowance(self, key: str) -> int:
        """Days after today that field ``key`` ("model.field") may lie; 0 when not listed."""
        return int(self.future_days.get(key, 0))


def _range(raw: Mapping[str, Any]) -> Range:
    low, high = float(raw["min"]), float(raw["max"])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"plausibility range min {low} > max {high}")
    return Range(low, high, str(raw["unit"]), str(raw["source"]), bool(raw.get("verified")))


def load_rules(text: str) -> Rules:
    """Parse a plausibility rule file (YAML text); ValueError when it is malformed."""
    raw = load_yaml(text)
    dates = raw["dates"]
    floor = dates["floor"]
    if not isinstance(floor, dt.date):
        floor = dt.date.fromisoformat(str(floor))
    return Rules(
        version=str(raw["version"]),
        date_floor=floor,
        future_days={str(k): int(v) for k, v in (dates.get("future_days") or {}).items()},
        analytics_future_days=int(dates["analytics_future_days"]),
        harvest_volume_ml={k: _range(v) for k, v in raw["harvest_volume_ml"].items()},
        injection_volume_ml_per_level={
            k: _range(v) for k, v in raw["injection_volume_ml_per_level"].items()
        },
        cell_dose_million=_range(raw["cell_dose_million"]),
        tnc_million_per_ml=_range(raw["tnc_million_per_ml"]),
        cfu_f_per_ml=_range(raw["cfu_f_per_ml"]),
        episode_cost=_cost_ranges(raw.get("episode_cost") or {}),
    )


def _cost_ranges(raw: Mapping[str, Any]) -> dict[str, Range]:
    """The per-currency price ranges of ``episode_cost`` (each with the section's source)."""
    source, verified = str(raw.get("source", "")), bool(raw.get("verified"))
    return {
        code: _range({**bounds, "source": source, "verified": verified})
        for code, bounds in (raw.get("currencies") or {}).items()
    }


@cache
def rules() -> Rules:
    """The packaged rule set (``vertebra/data/plausibility.yaml``)."""
    return load_rules(files("vertebra").joinpath("data", "plausibility.yaml").read_text("utf-8"))


# ------------------------------------------------------------------------------------ dates


def check_date(
    field: str,
    label: str,
    value: dt.date | None,
    *,
    today: dt.date,
    rule_set: Rules | None = None,
    future_days: int = 0,
    after: Iterable[Bound] = (),
    before: Iterable[Bound] = (),
) -> Refusal | None:
    """Refuse ``value`` unless it lies between the floor (1 Jan 1900), every ``after`` bound,
    and today (+ ``future_days``) and every ``before`` bound.

    The refusal states the allowed range and what sets each end ("from 1 Mar 2025 (the
    episode start) to 6 Dec 2026 (today)"). When the related rows contradict each other
    (no day satisfies them all) it says which two conflict.
    """
    if value is None:
        return None
    r = rule_set or rules()
    lows = [Bound("the earliest date the registry accepts", r.date_floor), *after]
    ceiling = today + dt.timedelta(days=future_days)
    highs = [Bound("today" if future_days == 0 else f"{future_days} days from today", ceiling)]
    highs += list(before)
    low = max(lows, key=lambda b: _earliest_allowed(b))
    high = min(highs, key=lambda b: _latest_allowed(b))
    low_day, high_day = _earliest_allowed(low), _latest_allowed(high)
    if low_day <= value <= high_day:
        return None
    name = label[:1].upper() + label[1:]
    if low_day > high_day:
        return Refusal(
            field,
            f"{name}: no date fits, because {low.label} ({format_date(low.day)}) is after "
            f"{high.label} ({format_date(high.day)}). Correct one of those first.",
        )
    return Refusal(
        field,
        f"{name}: enter a date from {format_date(low_day)} ({low.label}) to "
        f"{format_date(high_day)} ({high.label}); {format_date(value)} is outside that range.",
    )


def format_date(day: dt.date) -> str:
    """ "6 Dec 2026"; years below 1000 keep four digits ("1 Mar 0025"), so a typo shows."""
    return f"{day.day} {day.strftime('%b')} {day.year:04d}"


def _earliest_allowed(bound: Bound) -> dt.date:
    return bound.day + dt.timedelta(days=1) if bound.strict else bound.day


def _latest_allowed(bound: Bound) -> dt.date:
    return bound.day - dt.timedelta(days=1) if bound.strict else bound.day


def analytics_window(today: dt.date, rule_set: Rules | None = None) -> tuple[dt.date, dt.date]:
    """The dates analytics accept from stored rows: the floor to today + the allowance.

    Rows dated outside it (a year-0025 typo stored before these rules, or written by SQL)
    are left out of analyses, which say how many they left out.
    """
    r = rule_set or rules()
    return r.date_floor, today + dt.timedelta(days=r.analytics_future_days)


def in_window(day: Any, window: tuple[dt.date, dt.date]) -> bool:
    """True for a date (or datetime) inside ``window``; None counts as inside (unknown)."""
    if day is None:
        return True
    if isinstance(day, dt.datetime):
        day = day.date()
    return bool(window[0] <= day <= window[1])


# ---------------------------------------------------------------------------------- amounts


def _number(value: float) -> str:
    """12000 → "12,000"; 0.5 → "0.5"; 3.0 → "3"."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return text


def check_range(
    field: str, label: str, value: float | None, allowed: Range, *, context: str = ""
) -> Refusal | None:
    """Refuse a number outside ``allowed`` with the range, its unit and ``context`` in words."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return Refusal(field, f"{label[:1].upper()}{label[1:]}: enter a number.")
    if allowed.contains(value):
        return None
    where = f" {context}" if context else ""
    return Refusal(
        field,
        f"{label[:1].upper()}{label[1:]}: enter {_number(allowed.min)} to "
        f"{_number(allowed.max)} {allowed.unit}{where}; {_number(value)} {allowed.unit} is "
        "outside the published range.",
    )


def check_harvest_volume(
    volume_ml: float | None, source: str, source_label: str, rule_set: Rules | None = None
) -> Refusal | None:
    """The harvested volume against the range for its cell source."""
    r = rule_set or rules()
    allowed = r.harvest_volume_ml.get(source)
    if allowed is None:
        return None
    return check_range(
        "volume_ml", "harvest volume", volume_ml, allowed, context=f"for {source_label.lower()}"
    )


def check_injection_volume(
    volume_ml: float | None,
    target: str,
    target_label: str,
    n_levels: int,
    rule_set: Rules | None = None,
) -> Refusal | None:
    """The injected volume against the per-level range of its target times the levels."""
    r = rule_set or rules()
    per_level = r.injection_volume_ml_per_level.get(target)
    if per_level is None or n_levels < 1:
        return None
    allowed = Range(
        per_level.min, per_level.max * n_levels, per_level.unit, per_level.source,
        per_level.verified,
    )  # fmt: skip
    levels = "1 level" if n_levels == 1 else f"{n_levels} levels"
    article = "an" if target_label[:1].lower() in "aeiou" else "a"
    context = (
        f"for {article} {target_label.lower()} injection at {levels} "
        f"(up to {_number(per_level.max)} mL per level)"
    )
    return check_range("volume_ml", "injection volume", volume_ml, allowed, context=context)


# ------------------------------------------------------------------------------------- cost


def check_episode_cost(
    price: float | None,
    patient_paid: float | None,
    currency: str,
    billed_to: str,
    cost_note: str,
    rule_set: Rules | None = None,
) -> list[Refusal]:
    """The cost fields of a treatment episode, as recorded together (docs/algorithms/cost.md).

    * An amount needs a currency from ``episode_cost`` (ISO 4217), and a currency an amount.
    * Each amount lies within the currency's range (never negative).
    * A payer (``billed_to``) is named only with a price.
    * The patient's payment may exceed the price only with a ``cost_note`` explaining why.
    """
    r = rule_set or rules()
    refusals: list[Refusal] = []
    amounts = [
        (n, v) for n, v in (("price", price), ("patient_paid", patient_paid)) if v is not None
    ]
    if amounts and not currency:
        refusals.append(Refusal("currency", "Currency: choose the currency of the amounts."))
    elif currency and not amounts:
        refusals.append(
            Refusal("currency", "Currency: leave it empty when no price or payment is recorded.")
        )
    allowed = r.episode_cost.get(currency) if currency else None
    if currency and allowed is None and r.episode_cost:
        codes = ", ".join(sorted(r.episode_cost))
        refusals.append(Refusal("currency", f"Currency: choose one of {codes}."))
    for name, value in amounts:
        label = "price" if name == "price" else "amount paid by the patient"
        if float(value) < 0:
            refusals.append(Refusal(name, f"{label[:1].upper()}{label[1:]}: cannot be negative."))
        elif allowed is not None:
            found = check_range(name, label, float(value), allowed)
            if found is not None:
                refusals.append(found)
    if billed_to and price is None:
        refusals.append(Refusal("price", "Price: enter the price that was billed."))
    if (
        price is not None
        and patient_paid is not None
        and float(patient_paid) > float(price)
        and not cost_note.strip()
    ):
        refusals.append(
            Refusal(
                "cost_note",
                "Cost note: the patient paid more than the price; say why (e.g. an extra "
                "session billed later), or correct the amounts.",
            )
        )
    return refusals


# ---------------------------------------------------------------------------- adverse events

FATAL = "fatal"


def check_adverse_event(grade: int | None, serious: bool, outcome: str | None) -> list[Refusal]:
    """CTCAE grade, seriousness and outcome that agree with each other.

    * Grade 5 is death (CTCAE v5.0): the outcome must be "fatal" and the event serious.
    * Grade 4 is life-threatening, hence serious (ICH E2A).
    * A fatal outcome is serious (ICH E2A) and, once graded, grade 5.
    """
    refusals: list[Refusal] = []
    if grade == 5:
        if outcome != FATAL:
            refusals.append(
                Refusal(
                    "outcome",
                    "Outcome: CTCAE grade 5 means the event caused death, so the outcome must "
                    "be \u201cFatal\u201d (or choose grade 1 to 4).",
                )
            )
        if not serious:
            refusals.append(
                Refusal(
                    "serious",
                    "Serious: a grade 5 (fatal) event is always serious (ICH E2A); tick "
                    "\u201cSerious\u201d.",
                )
            )
    elif grade == 4 and not serious:
        refusals.append(
            Refusal(
                "serious",
                "Serious: a grade 4 (life-threatening) event is always serious (ICH E2A); tick "
                "\u201cSerious\u201d.",
            )
        )
    if outcome == FATAL:
        if grade is not None and grade != 5:
            refusals.append(
                Refusal(
                    "ctcae_grade",
                    f"CTCAE grade: a fatal outcome is grade 5 (death), not grade {grade}.",
                )
            )
        if not serious and grade != 5:
            refusals.append(
                Refusal(
                    "serious",
                    "Serious: an event that resulted in death is always serious (ICH E2A); "
                    "tick \u201cSerious\u201d.",
                )
            )
    return refusals
