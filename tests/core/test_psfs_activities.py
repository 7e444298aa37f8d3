"""The PSFS activity-name gate: clean-up, lengths, count, duplicates (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vertebra.core.psfs_activities import (
    MAX_NAME_LENGTH,
    ActivityNameError,
    clean_activity_name,
    clean_activity_names,
)


def test_white_space_is_collapsed_and_trimmed() -> None:
    assert clean_activity_name("  Walking \t for  30\nminutes ") == "Walking for 30 minutes"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("   ", "a few words"),
        ("x" * (MAX_NAME_LENGTH + 1), "at most 80"),
        ("walk\u200bing", "letters, numbers and spaces"),  # zero-width space (format char)
        ("walk\u202eing", "letters, numbers and spaces"),  # bidi override
        ("walk\x00", "letters, numbers and spaces"),
    ],
)
def test_refused_names_say_why(raw: str, message: str) -> None:
    with pytest.raises(ActivityNameError, match=message):
        clean_activity_name(raw)


def test_eighty_characters_is_the_longest_name() -> None:
    assert clean_activity_name("y" * MAX_NAME_LENGTH) == "y" * MAX_NAME_LENGTH


def test_list_rules() -> None:
    assert clean_activity_names(["Gardening", " lifting my child "]) == (
        "Gardening",
        "lifting my child",
    )
    with pytest.raises(ActivityNameError, match="at least one"):
        clean_activity_names([])
    with pytest.raises(ActivityNameError, match="at most 5"):
        clean_activity_names([f"activity {i}" for i in range(6)])
    with pytest.raises(ActivityNameError, match="named twice"):
        clean_activity_names(["Walking", "WALKING "])
    with pytest.raises(ActivityNameError, match="list"):
        clean_activity_names("Walking")


@given(st.lists(st.text(min_size=0, max_size=100), min_size=0, max_size=7))
def test_accepted_names_always_meet_the_rules(raw: list[str]) -> None:
    """Whatever is typed: either refused with a sentence, or 1-5 distinct trimmed names of
    1-80 characters with no control or format characters."""
    try:
        names = clean_activity_names(raw)
    except ActivityNameError as exc:
        assert str(exc).endswith(".")
        return
    assert 1 <= len(names) <= 5
    assert len({n.casefold() for n in names}) == len(names)
    for name in names:
        assert 1 <= len(name) <= MAX_NAME_LENGTH
        assert name == name.strip() and "  " not in name
