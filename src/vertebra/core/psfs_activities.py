"""The activities a patient names for the Patient-Specific Functional Scale (pure, no I/O).

At the first PSFS the patient names up to five activities in their own words; every later PSFS
re-rates the same activities (Stratford et al. 1995; docs/algorithms/psfs.md). The names are
free text typed by a patient, so :func:`clean_activity_names` is the one gate they pass:

* each name is Unicode-normalised (NFC), its runs of white space collapsed to one space and
  trimmed; control and format characters (category ``C*``: newlines, zero-width marks, bidi
  overrides) are refused, since a name is one line shown back to the patient and to staff;
* each name is 1..:data:`MAX_NAME_LENGTH` characters; there are 1..:data:`MAX_ACTIVITIES`;
* the same activity twice (compared case-insensitively, after the clean-up) is refused.

Names are stored as typed; exports that write them into spreadsheet cells go through
:func:`vertebra.core.safeinput.neutralise_cell` like every other text cell.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = [
    "MAX_ACTIVITIES",
    "MAX_NAME_LENGTH",
    "ActivityNameError",
    "clean_activity_name",
    "clean_activity_names",
    "rating_item",
]

MAX_ACTIVITIES = 5
MAX_NAME_LENGTH = 80

_SPACE = re.compile(r"\s+")


class ActivityNameError(ValueError):
    """An activity name (or the list of them) is not acceptable; ``str()`` is one sentence
    that can be shown to the patient as it is."""


def rating_item(position: int) -> str:
    """The psfs instrument item that holds the rating of the ``position``-th (1-based) activity."""
    return f"activity_{position}"


def clean_activity_name(raw: str) -> str:
    """One name cleaned as described in the module docstring; ActivityNameError if refused."""
    if not isinstance(raw, str):
        raise ActivityNameError("An activity must be written as text.")
    text = unicodedata.normalize("NFC", raw)
    # Tabs and newlines count as white space and are collapsed, before the control check.
    text = _SPACE.sub(" ", text).strip()
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ActivityNameError("Please write the activity with letters, numbers and spaces only.")
    if not text:
        raise ActivityNameError("Please write the activity in a few words.")
    if len(text) > MAX_NAME_LENGTH:
        raise ActivityNameError(
            f"Please describe the activity in at most {MAX_NAME_LENGTH} characters."
        )
    return text


def clean_activity_names(raw: Sequence[str]) -> tuple[str, ...]:
    """The cleaned names in the patient's order: 1..5 names, none twice; else ActivityNameError."""
    if isinstance(raw, str):
        raise ActivityNameError("The activities must be given as a list.")
    names = tuple(clean_activity_name(name) for name in raw)
    if not names:
        raise ActivityNameError("Please name at least one activity.")
    if len(names) > MAX_ACTIVITIES:
        raise ActivityNameError(f"Please name at most {MAX_ACTIVITIES} activities.")
    seen: set[str] = set()
    for name in names:
        key = name.casefold()
        if key in seen:
            raise ActivityNameError(f'"{name}" is named twice: please name each activity once.')
        seen.add(key)
    return names
