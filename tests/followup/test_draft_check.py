"""The quick draft check of the review page and the submit says exactly what the forms say.

``forms.draft_is_complete`` and ``screens.screen_is_complete`` check non-PSFS drafts without
building a Django form (the forms cost ~2 ms per submit, ~10 ms per review page); these tests
hold them to the forms' own answers over seeded random drafts of every portal instrument,
whole and screen by screen.
"""

from __future__ import annotations

import random

import pytest

from vertebra.core.instruments import get_definition
from vertebra.followup import forms as portal_forms
from vertebra.followup import screens as portal_screens
from vertebra.followup.services import DEFAULT_INSTRUMENTS

INSTRUMENTS = sorted({i for ids in DEFAULT_INSTRUMENTS.values() for i in ids if i != "psfs"})

#: Texts that are never a valid answer, or only after the form's stripping of numbers.
ODD_TEXTS = ("", " ", "99", "-1", "abc", "yes", "no", "1e400", "nan", " 2 ", "3.5", "x" * 50)


def _text(item: object, rng: random.Random) -> str | None:
    """A random draft text for ``item``: mostly a valid one, sometimes an odd one or none."""
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.35:
        return rng.choice(ODD_TEXTS)
    if item.type == "number":  # type: ignore[attr-defined]
        low = item.minimum if item.minimum is not None else 0  # type: ignore[attr-defined]
        high = item.maximum if item.maximum is not None else 500  # type: ignore[attr-defined]
        return rng.choice([str(low), str(high), str(high + 1), f" {low} ", str((low + high) / 2)])
    option = rng.choice(item.options)  # type: ignore[attr-defined]
    return rng.choice([str(option.code), str(option.code), option.key or str(option.code)])


def _drafts(instrument_id: str, count: int) -> list[dict[str, str]]:
    rng = random.Random(f"draft-check-{instrument_id}")
    definition = get_definition(instrument_id)
    drafts = []
    for _ in range(count):
        draft: dict[str, str] = {}
        for item in definition.items:
            text = _text(item, rng)
            if text is not None:
                draft[item.id] = text
        drafts.append(draft)
    # and the all-valid draft (the portal's usual case)
    drafts.append({item.id: str(item.options[0].code) for item in definition.items if item.options})
    return drafts


@pytest.mark.parametrize("instrument_id", INSTRUMENTS)
def test_whole_instrument_check_agrees_with_the_form(instrument_id: str) -> None:
    outcomes = set()
    for draft in _drafts(instrument_id, 400):
        form_says = portal_forms.form_for(instrument_id, data=dict(draft)).is_valid()
        assert portal_forms.draft_is_complete(instrument_id, draft) is form_says, draft
        outcomes.add(form_says)
    assert outcomes == {True, False}  # both answers were exercised


@pytest.mark.parametrize("instrument_id", INSTRUMENTS)
def test_screen_check_agrees_with_the_screen_form(instrument_id: str) -> None:
    screens = portal_screens.plan([instrument_id])
    checked = 0
    for draft in _drafts(instrument_id, 150):
        for screen in screens:
            data = {k: draft[k] for k in screen.item_ids if k in draft}
            form_says = portal_screens.screen_form(screen, data=data).is_valid()
            assert portal_screens.screen_is_complete(screen, draft) is form_says, (screen, draft)
            checked += 1
    assert checked == 151 * len(screens)


def test_opioid_dose_is_needed_when_an_opioid_is_taken() -> None:
    taken = {"current_use": "1", "opioid": "tramadol"}
    assert portal_forms.draft_is_complete("opioid_use", taken) is False
    assert portal_forms.draft_is_complete("opioid_use", {**taken, "daily_dose": "50"}) is True
    assert portal_forms.draft_is_complete("opioid_use", {"current_use": "0"}) is True
