"""Plausibility rules (vertebra.core.plausibility): pure, property-tested with hypothesis."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vertebra.core import plausibility as p
from vertebra.core.plausibility import Bound, Range

TODAY = dt.date(2026, 12, 6)
FLOOR = dt.date(1900, 1, 1)
RULES = p.rules()

any_date = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
plausible = st.dates(min_value=FLOOR, max_value=TODAY)


def test_packaged_rules_cite_a_source_for_every_range() -> None:
    ranges = [
        *RULES.harvest_volume_ml.values(),
        *RULES.injection_volume_ml_per_level.values(),
        RULES.cell_dose_million,
        RULES.tnc_million_per_ml,
        RULES.cfu_f_per_ml,
    ]
    assert RULES.version and RULES.date_floor == FLOOR
    for allowed in ranges:
        assert allowed.min <= allowed.max
        assert allowed.source.strip() and allowed.unit
    assert RULES.cell_dose_million.unit == p.CELL_DOSE_UNIT == "million cells"
    assert RULES.tnc_million_per_ml.unit == p.TNC_UNIT
    # The one planned date: an episode may be booked ahead; nothing else lies in the future.
    assert RULES.future_allowance("treatment_episode.start_date") == 365
    assert RULES.future_allowance("harvest.harvested_on") == 0


def test_a_malformed_range_is_refused_when_loading() -> None:
    text = (
        "version: x\ndates: {floor: 1900-01-01, analytics_future_days: 1}\n"
        "harvest_volume_ml: {a: {min: 5, max: 1, unit: mL, source: s}}\n"
        "injection_volume_ml_per_level: {}\n"
        "cell_dose_million: {min: 1, max: 2, unit: u, source: s}\n"
        "tnc_million_per_ml: {min: 1, max: 2, unit: u, source: s}\n"
        "cfu_f_per_ml: {min: 1, max: 2, unit: u, source: s}\n"
    )
    with pytest.raises(ValueError, match=r"min 5\.0 > max 1\.0"):
        p.load_rules(text)


@given(plausible)
def test_any_date_from_1900_to_today_is_accepted(day: dt.date) -> None:
    assert p.check_date("onset", "onset date", day, today=TODAY) is None


@given(any_date.filter(lambda d: d < FLOOR or d > TODAY))
def test_a_date_outside_1900_to_today_is_refused_naming_field_and_range(day: dt.date) -> None:
    refusal = p.check_date("onset", "onset date", day, today=TODAY)
    assert refusal is not None and refusal.field == "onset"
    assert refusal.message.startswith("Onset date: enter a date from 1 Jan 1900")
    assert "to 6 Dec 2026 (today)" in refusal.message


@given(any_date, st.integers(min_value=0, max_value=400))
def test_future_allowance_moves_the_upper_end(day: dt.date, days: int) -> None:
    refusal = p.check_date("start_date", "start", day, today=TODAY, future_days=days)
    allowed = FLOOR <= day <= TODAY + dt.timedelta(days=days)
    assert (refusal is None) == allowed


@given(plausible, plausible, plausible, st.booleans(), st.booleans())
def test_pathway_order_holds_against_both_neighbours(
    value: dt.date, a: dt.date, b: dt.date, strict_low: bool, strict_high: bool
) -> None:
    """A step lies on or after the step before it and on or before the step after it (or
    strictly, for birth); the refusal names the neighbour that sets the violated end."""
    low, high = min(a, b), max(a, b)
    refusal = p.check_date(
        "harvested_on",
        "harvest date",
        value,
        today=TODAY,
        after=[Bound("the episode start", low, strict_low)],
        before=[Bound("the processing date", high, strict_high)],
    )
    above = value > low if strict_low else value >= low
    below = value < high if strict_high else value <= high
    assert (refusal is None) == (above and below)
    if refusal is not None and "no date fits" not in refusal.message:
        assert "the episode start" in refusal.message or "the processing date" in refusal.message


def test_contradicting_neighbours_say_which_to_correct() -> None:
    refusal = p.check_date(
        "processed_on",
        "processing date",
        dt.date(2025, 1, 1),
        today=TODAY,
        after=[Bound("the harvest date", dt.date(2025, 3, 1))],
        before=[Bound("the first injection of this product", dt.date(2025, 2, 1))],
    )
    assert refusal is not None
    assert "no date fits, because the harvest date (1 Mar 2025) is after the first injection" in (
        refusal.message
    )


def test_birth_is_a_strict_bound() -> None:
    born = Bound("the day after the date of birth", dt.date(1970, 5, 1), strict=True)
    refusal = p.check_date("diagnosed_on", "diagnosis date", born.day, today=TODAY, after=[born])
    assert refusal is not None and "from 2 May 1970" in refusal.message
    assert p.check_date("d", "d", dt.date(1970, 5, 2), today=TODAY, after=[born]) is None


ranges = st.tuples(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
).map(lambda t: Range(min(t), max(t), "mL", "test", False))


@given(ranges, st.floats(min_value=-1e7, max_value=1e7, allow_nan=False))
def test_range_check_accepts_exactly_the_closed_range(allowed: Range, value: float) -> None:
    refusal = p.check_range("volume_ml", "harvest volume", value, allowed)
    assert (refusal is None) == (allowed.min <= value <= allowed.max)
    if refusal is not None:
        assert refusal.field == "volume_ml"
        assert refusal.message.startswith("Harvest volume: enter ")
        assert "mL" in refusal.message and "published range" in refusal.message


def test_the_99999_ml_harvest_of_the_issue_is_refused_with_the_range() -> None:
    refusal = p.check_harvest_volume(99_999, "bone_marrow_iliac_crest", "Bone marrow (iliac crest)")
    assert refusal is not None
    assert refusal.message == (
        "Harvest volume: enter 5 to 240 mL for bone marrow (iliac crest); 99,999 mL is outside "
        "the published range."
    )
    assert p.check_harvest_volume(60, "bone_marrow_iliac_crest", "Bone marrow") is None
    assert p.check_harvest_volume(None, "adipose", "Adipose") is None


@given(st.integers(min_value=1, max_value=5), st.floats(min_value=0.1, max_value=100))
def test_injection_volume_scales_with_levels(levels: int, volume: float) -> None:
    refusal = p.check_injection_volume(volume, "intradiscal", "Intradiscal", levels)
    assert (refusal is None) == (volume <= 3 * levels)
    if refusal is not None:
        assert "(up to 3 mL per level)" in refusal.message


def test_a_dose_given_in_cells_instead_of_millions_is_refused() -> None:
    refusal = p.check_range("cell_dose", "cell dose", 2e7, RULES.cell_dose_million)
    assert refusal is not None
    assert "enter 0.1 to 5,000 million cells" in refusal.message
    assert p.check_range("cell_dose", "cell dose", 20.0, RULES.cell_dose_million) is None


OUTCOMES = (
    "recovered",
    "recovering",
    "not_recovered",
    "recovered_with_sequelae",
    "fatal",
    "unknown",
)


@given(
    st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
    st.booleans(),
    st.sampled_from(OUTCOMES),
)
def test_grading_agrees_with_seriousness_and_outcome(
    grade: int | None, serious: bool, outcome: str
) -> None:
    """Grade 5 = death: fatal and serious; grade 4 = life-threatening: serious (ICH E2A);
    a fatal outcome is serious and, once graded, grade 5."""
    consistent = (
        (grade != 5 or (outcome == "fatal" and serious))
        and (grade != 4 or serious)
        and (outcome != "fatal" or (serious and grade in (None, 5)))
    )
    refusals = p.check_adverse_event(grade, serious, outcome)
    assert (refusals == []) == consistent
    assert {r.field for r in refusals} <= {"outcome", "serious", "ctcae_grade"}


def test_grade_5_recovered_not_serious_names_both_fields() -> None:
    refusals = p.check_adverse_event(5, False, "recovered")
    assert [r.field for r in refusals] == ["outcome", "serious"]
    assert "grade 5 means the event caused death" in refusals[0].message


@given(any_date)
def test_analytics_window_is_the_floor_to_a_year_ahead(day: dt.date) -> None:
    window = p.analytics_window(TODAY)
    assert window == (FLOOR, TODAY + dt.timedelta(days=366))
    assert p.in_window(day, window) == (FLOOR <= day <= window[1])
    assert p.in_window(None, window)
