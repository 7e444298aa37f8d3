"""MME/day with the CDC 2022 factors (clinical.md section 10)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vertebra.core.mme import (
    InvalidDoseError,
    UnknownOpioidError,
    known_opioids,
    mme_per_day,
    mme_source,
    opioid_factor,
)

# The CDC 2022 table as printed in clinical.md section 10, typed independently of the YAML.
CDC_2022 = {
    "codeine": 0.15,
    "fentanyl_transdermal": 2.4,
    "hydrocodone": 1.0,
    "hydromorphone": 5.0,
    "methadone": 4.7,
    "morphine": 1.0,
    "oxycodone": 1.5,
    "oxymorphone": 3.0,
    "tapentadol": 0.4,
    "tramadol": 0.2,
}


def test_factor_table_matches_cdc_2022() -> None:
    assert {o.id: o.factor for o in known_opioids()} == CDC_2022
    assert opioid_factor("fentanyl_transdermal").dose_unit == "mcg/hr"
    assert all(o.dose_unit == "mg/day" for o in known_opioids() if o.id != "fentanyl_transdermal")
    assert "2022" in mme_source()


def test_hydrocodone_worked_example() -> None:
    """Hydrocodone 5 mg four times a day = 20 mg/day x 1.0 = 20 MME/day."""
    assert mme_per_day("hydrocodone", 5 * 4) == 20.0


def test_oxycodone_worked_example() -> None:
    """Oxycodone ER 10 mg twice a day = 20 mg/day x 1.5 = 30 MME/day."""
    assert mme_per_day("oxycodone", 10 * 2) == 30.0


@pytest.mark.parametrize(
    ("opioid", "dose", "expected"),
    [
        ("fentanyl_transdermal", 25, 60.0),  # 25 mcg/hr patch x 2.4
        ("methadone", 10, 47.0),
        ("tramadol", 200, 40.0),
        ("codeine", 240, 36.0),
        ("tapentadol", 100, 40.0),
        ("hydromorphone", 8, 40.0),
        ("oxymorphone", 10, 30.0),
        ("morphine", 60, 60.0),
    ],
)
def test_each_factor(opioid: str, dose: float, expected: float) -> None:
    assert mme_per_day(opioid, dose) == pytest.approx(expected)


def test_names_are_case_and_separator_insensitive() -> None:
    assert mme_per_day("Oxycodone", 20) == 30.0
    assert mme_per_day("Fentanyl patch", 12) == pytest.approx(28.8)
    assert mme_per_day("fentanyl-transdermal", 50) == pytest.approx(120.0)


def test_unknown_opioid_lists_known_ones() -> None:
    with pytest.raises(UnknownOpioidError) as err:
        mme_per_day("buprenorphine", 8)
    message = str(err.value)
    assert "'buprenorphine'" in message
    assert all(name in message for name in CDC_2022)
    # plain "fentanyl" is ambiguous (buccal, IV ...): refused rather than assumed to be a patch
    with pytest.raises(UnknownOpioidError):
        mme_per_day("fentanyl", 25)


@pytest.mark.parametrize("dose", [-1, -0.01, math.nan, math.inf, "20", True, None])
def test_invalid_doses(dose: object) -> None:
    with pytest.raises(InvalidDoseError):
        mme_per_day("morphine", dose)  # type: ignore[arg-type]


def test_zero_dose() -> None:
    assert mme_per_day("morphine", 0) == 0.0


@given(st.sampled_from(sorted(CDC_2022)), st.floats(0, 10_000), st.floats(0, 10_000))
def test_mme_is_linear_and_non_negative(opioid: str, a: float, b: float) -> None:
    assert mme_per_day(opioid, a) >= 0
    if a <= b:
        assert mme_per_day(opioid, a) <= mme_per_day(opioid, b)
    assert mme_per_day(opioid, a) == pytest.approx(a * CDC_2022[opioid])
