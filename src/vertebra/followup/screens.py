"""The questionnaire as a patient walks through it: screens, and the answers in words.

A time point asks several instruments ("parts"). Most parts fit on one screen; a long one (the
ODI's ten sections of six statements each) is shown one question per screen, so that a patient
on a phone sees one question, its answers and the Next button together. Which instruments are
split is portal presentation, not instrument data: ``settings.FOLLOWUP_ONE_QUESTION_PER_SCREEN``
(default :data:`DEFAULT_ONE_QUESTION_PER_SCREEN`).

Screens are numbered 1..N across the whole questionnaire (the ``/p/q/<n>/`` URLs). Drafts stay
as they are kept in the session: instrument id → item id → submitted text (see ``forms``).
Nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from vertebra.core.instruments import get_definition
from vertebra.followup import forms as portal_forms

#: Instruments shown one question per screen: their questions each offer a long list of
#: statements, and all of them on one phone screen make a page of some sixty choices.
DEFAULT_ONE_QUESTION_PER_SCREEN: tuple[str, ...] = ("odi",)


def one_question_per_screen(instrument_id: str) -> bool:
    """True when ``instrument_id`` is shown one question per screen."""
    chosen = getattr(settings, "FOLLOWUP_ONE_QUESTION_PER_SCREEN", DEFAULT_ONE_QUESTION_PER_SCREEN)
    return instrument_id in tuple(chosen)


@dataclass(frozen=True)
class Screen:
    """One page of the questionnaire.

    ``number`` is its 1-based position among all screens, ``part`` the 1-based position of its
    instrument; ``question``/``questions`` say "question 3 of 10" inside an instrument shown one
    question per screen (both None when the whole instrument is on this screen).
    """

    number: int
    part: int
    instrument_id: str
    item_ids: tuple[str, ...]
    question: int | None = None
    questions: int | None = None


def plan(instruments: Sequence[str]) -> tuple[Screen, ...]:
    """The screens of a questionnaire asking ``instruments`` in this order."""
    screens: list[Screen] = []
    for part, instrument_id in enumerate(instruments, 1):
        item_ids = get_definition(instrument_id).item_ids
        if instrument_id == "psfs":  # one screen: each activity's name (if new) and rating
            item_ids = portal_forms.psfs_screen_keys()
        if one_question_per_screen(instrument_id) and len(item_ids) > 1:
            for question, item_id in enumerate(item_ids, 1):
                screens.append(
                    Screen(
                        len(screens) + 1,
                        part,
                        instrument_id,
                        (item_id,),
                        question,
                        len(item_ids),
                    )
                )
        else:
            screens.append(Screen(len(screens) + 1, part, instrument_id, item_ids))
    return tuple(screens)


def screen_form(
    screen: Screen,
    data: Mapping[str, str] | None = None,
    draft: Mapping[str, str] | None = None,
    psfs_names: Sequence[str] = (),
) -> portal_forms.InstrumentForm:
    """The form of ``screen``: its questions only, bound to ``data`` or pre-filled from ``draft``
    (``psfs_names``: the episode's stored PSFS activities, re-rated on the PSFS screen)."""
    return portal_forms.form_for(
        screen.instrument_id, data=data, draft=draft, items=screen.item_ids, psfs_names=psfs_names
    )


def screen_is_complete(
    screen: Screen, draft: Mapping[str, str] | None, psfs_names: Sequence[str] = ()
) -> bool:
    """True when ``draft`` answers every required question of ``screen`` validly (as the
    screen's form would say; the PSFS screen asks its form)."""
    if draft is None:
        return False
    if screen.instrument_id != "psfs":
        return portal_forms.items_complete(screen.instrument_id, draft, screen.item_ids)
    data = {k: draft[k] for k in screen.item_ids if k in draft}
    return screen_form(screen, data=data, psfs_names=psfs_names).is_valid()


def merge_draft(screen: Screen, old: Mapping[str, str], kept: Mapping[str, str]) -> dict[str, str]:
    """The instrument's draft after ``screen`` was posted: its questions take the ``kept``
    answers (a question left blank loses its old answer); other questions stay as they were."""
    merged = {k: v for k, v in old.items() if k not in screen.item_ids}
    merged.update({k: v for k, v in kept.items() if k in screen.item_ids})
    return merged


def first_unfinished(
    screens: Sequence[Screen],
    drafts: Mapping[str, Mapping[str, str]],
    psfs_names: Sequence[str] = (),
) -> Screen | None:
    """The first screen whose questions are not all validly answered, or None."""
    for screen in screens:
        if not screen_is_complete(screen, drafts.get(screen.instrument_id), psfs_names):
            return screen
    return None


# --- the review page --------------------------------------------------------------------------


#: Shown for a question left blank that may be left blank.
NOT_ANSWERED = "Not answered"
#: Shown for a required question that still needs an answer.
STILL_NEEDED = "Not answered yet — please answer"


@dataclass(frozen=True)
class ReviewAnswer:
    """One question and the patient's answer in words, with the screen that changes it."""

    item_id: str
    question: str
    answer: str
    screen: int
    missing: bool


@dataclass(frozen=True)
class ReviewPart:
    """One instrument on the review page: its answers, and whether it is complete."""

    number: int
    instrument_id: str
    title: str
    answers: tuple[ReviewAnswer, ...]
    complete: bool
    first_unfinished_screen: int | None
    first_screen: int


def answer_words(instrument_id: str, item_id: str, text: str | None) -> str:
    """The answer ``text`` to ``item_id`` as the patient chose it: the option's words for a
    choice, the number as typed for a number; :data:`NOT_ANSWERED` when blank."""
    if not text:
        return NOT_ANSWERED
    item = get_definition(instrument_id).item(item_id)
    if item.type == "number":
        return text
    for option in item.options:
        if str(option.code) == text:
            return option.label
    return text  # cannot happen for a saved draft: drafts hold validated answers only


def _psfs_answers(
    screen: Screen, draft: Mapping[str, str], psfs_names: Sequence[str]
) -> list[ReviewAnswer]:
    """The PSFS on the review page: each activity by name with its rating (the stored names
    when re-rating, the draft's when naming); one "still needed" row when none is named."""
    names = list(psfs_names) or portal_forms.psfs_names_from_draft(draft)
    if not names:
        return [
            ReviewAnswer("name_1", "Your activities", STILL_NEEDED, screen.number, missing=True)
        ]
    rows: list[ReviewAnswer] = []
    for k, name in enumerate(names, 1):
        item_id = f"activity_{k}"
        text = draft.get(item_id)
        missing = not text
        rows.append(
            ReviewAnswer(
                item_id=item_id,
                question=f"\u201c{name}\u201d: how well can you do it today?",
                answer=STILL_NEEDED if missing else answer_words("psfs", item_id, text),
                screen=screen.number,
                missing=missing,
            )
        )
    return rows


def review_parts(
    screens: Sequence[Screen],
    drafts: Mapping[str, Mapping[str, str]],
    psfs_names: Sequence[str] = (),
) -> list[ReviewPart]:
    """Every part of the questionnaire with each question and its answer in words."""
    parts: list[ReviewPart] = []
    by_part: dict[int, list[Screen]] = {}
    for screen in screens:
        by_part.setdefault(screen.part, []).append(screen)
    for number, part_screens in by_part.items():
        instrument_id = part_screens[0].instrument_id
        definition = get_definition(instrument_id)
        draft = drafts.get(instrument_id) or {}
        complete = portal_forms.draft_is_complete(instrument_id, draft, psfs_names)
        unfinished = first_unfinished(part_screens, {instrument_id: draft}, psfs_names)
        answers: list[ReviewAnswer] = []
        for screen in part_screens:
            if instrument_id == "psfs":
                answers.extend(_psfs_answers(screen, draft, psfs_names))
                continue
            for item_id in screen.item_ids:
                item = definition.item(item_id)
                text = draft.get(item_id)
                missing = not text and portal_forms.is_required(definition, item)
                answers.append(
                    ReviewAnswer(
                        item_id=item_id,
                        question=item.text,
                        answer=STILL_NEEDED
                        if missing
                        else answer_words(instrument_id, item_id, text),
                        screen=screen.number,
                        missing=missing,
                    )
                )
        parts.append(
            ReviewPart(
                number=number,
                instrument_id=instrument_id,
                title=definition.title,
                answers=tuple(answers),
                complete=complete,
                first_unfinished_screen=unfinished.number if unfinished else None,
                first_screen=part_screens[0].number,
            )
        )
    return parts
