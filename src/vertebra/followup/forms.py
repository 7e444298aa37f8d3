"""Portal forms: one Django form per instrument, validated with the core instrument rules.

Drafts are kept in the session as the submitted *text* of each field (what the patient typed or
chose), so a page can be shown again exactly as it was left; :func:`parse_draft` turns a draft
into the typed answers the scorers take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.conf import settings

from vertebra.core.instruments import (
    InstrumentDefinition,
    InvalidAnswerError,
    Item,
    get_definition,
    parse_answer_text,
)
from vertebra.core.psfs_activities import (
    MAX_ACTIVITIES,
    MAX_NAME_LENGTH,
    ActivityNameError,
    clean_activity_name,
    clean_activity_names,
    rating_item,
)

#: Items a patient may leave blank although the instrument does not mark them optional.
#: ODI section 8 (sex life) is the section most often skipped; the ODI rule scores with one
#: section missing, so forcing an answer would only push patients to guess or give up.
DEFAULT_SKIPPABLE: Mapping[str, tuple[str, ...]] = {"odi": ("sex_life",)}

#: The longest text kept for any answer (numbers and codes are short; this bounds the session).
MAX_ANSWER_LENGTH = 40


def skippable(instrument_id: str) -> tuple[str, ...]:
    """Item ids of ``instrument_id`` that may be left blank in the portal."""
    table = getattr(settings, "FOLLOWUP_SKIPPABLE_ITEMS", DEFAULT_SKIPPABLE)
    return tuple(table.get(instrument_id, ()))


def is_required(defn: InstrumentDefinition, item: Item) -> bool:
    """True when the portal insists on an answer to ``item``."""
    return not item.optional and item.id not in skippable(defn.id)


def _field(defn: InstrumentDefinition, item: Item) -> forms.Field:
    required = is_required(defn, item)
    if item.type == "number":
        bounds = item.allowed_description()
        return forms.CharField(
            label=item.text,
            required=required,
            max_length=MAX_ANSWER_LENGTH,
            help_text=f"Enter {bounds}.",
            widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
            error_messages={"required": f"Please enter {bounds}."},
        )
    choices = [(str(option.code), option.label) for option in item.options]
    if not required:
        choices.append(("", "Prefer not to answer"))
    return forms.ChoiceField(
        label=item.text,
        required=required,
        choices=choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Please choose one answer.",
            "invalid_choice": "Please choose one of the answers shown.",
        },
    )


class InstrumentForm(forms.Form):
    """The questions of one instrument. ``cleaned_data`` holds text; see :func:`parse_draft`."""

    def __init__(
        self,
        definition: InstrumentDefinition,
        *args: Any,
        items: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.definition = definition
        for item in definition.items:
            if items is None or item.id in items:
                self.fields[item.id] = _field(definition, item)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for item in self.definition.items:
            if item.id not in self.fields:
                continue
            text = cleaned.get(item.id)
            if not text:
                continue
            try:
                parse_answer_text(self.definition, item, str(text))
            except InvalidAnswerError:
                self.add_error(item.id, f"Please enter {item.allowed_description()}.")
        # The cross-question rule needs all three questions; they always share one screen.
        if self.definition.id == "opioid_use" and len(self.fields) == len(self.definition.items):
            self._check_opioid(cleaned)
        return cleaned

    def _check_opioid(self, cleaned: Mapping[str, Any]) -> None:
        """If the patient takes an opioid, which one and how much are needed for the MME."""
        if cleaned.get("current_use") != "1":
            return
        if not cleaned.get("opioid") and "opioid" not in self.errors:
            self.add_error("opioid", "You said you take an opioid: please choose which one.")
        if not cleaned.get("daily_dose") and "daily_dose" not in self.errors:
            self.add_error("daily_dose", "Please enter how much you take per day.")

    def draft(self) -> dict[str, str]:
        """The valid answers as text, for the session draft."""
        return {key: str(value) for key, value in self.cleaned_data.items() if value}


# --- PSFS: the patient's own activities ------------------------------------------------------

#: Examples shown beside the first activity box (activities from the PSFS instructions' kind;
#: they name things people do, never a result of treatment).
PSFS_EXAMPLES = '"walking for 30 minutes", "lifting a shopping bag", "sitting through a film"'
PSFS_SCALE = "0 = unable to do it, 10 = able to do it as well as before your back problem."
PSFS_NAMING_INSTRUCTIONS = (
    "Think of up to five important activities that you are unable to do, or find hard to do, "
    "because of your back. Write each in your own words and choose how well you can do it "
    "today. You need to name at least one."
)
PSFS_RERATING_INSTRUCTIONS = (
    "These are the activities you named before. For each, choose how well you can do it today."
)


def name_key(position: int) -> str:
    """The draft/form key of the ``position``-th (1-based) activity name."""
    return f"name_{position}"


def psfs_screen_keys() -> tuple[str, ...]:
    """Every key the PSFS screen posts: name and rating of each of the five activities."""
    return tuple(key for k in range(1, MAX_ACTIVITIES + 1) for key in (name_key(k), rating_item(k)))


def psfs_names_from_draft(draft: Mapping[str, str] | None) -> list[str]:
    """The names a naming draft holds, in order (a re-rating draft holds none)."""
    draft = draft or {}
    return [draft[name_key(k)] for k in range(1, MAX_ACTIVITIES + 1) if draft.get(name_key(k))]


def _rating_field(label: str, required: bool) -> forms.ChoiceField:
    definition = get_definition("psfs")
    choices = [("", "Choose 0 to 10")] + [
        (str(o.code), o.label) for o in definition.item(rating_item(1)).options
    ]
    return forms.ChoiceField(
        label=label,
        required=required,
        choices=choices,
        help_text=PSFS_SCALE,
        error_messages={
            "required": "Please choose a number from 0 to 10.",
            "invalid_choice": "Please choose a number from 0 to 10.",
        },
    )


class PsfsForm(InstrumentForm):
    """The PSFS screen. With ``names`` (stored for the episode): one required 0-10 rating per
    named activity, labelled with its name. Without: five pairs of an activity box and a
    rating; a pair is used when either half is filled, and must then have both; at least one
    pair; names cleaned and checked with :mod:`vertebra.core.psfs_activities`. Pairs left with
    gaps are renumbered in ``cleaned_data`` (name_1/activity_1 first), so the draft's
    ``activity_<k>`` always rates its ``name_<k>``."""

    def __init__(self, *args: Any, names: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(get_definition("psfs"), *args, items=(), **kwargs)
        self.names = tuple(names)
        self.instructions = PSFS_RERATING_INSTRUCTIONS if names else PSFS_NAMING_INSTRUCTIONS
        if self.names:
            for k, name in enumerate(self.names, 1):
                self.fields[rating_item(k)] = _rating_field(
                    f"\u201c{name}\u201d: how well can you do it today?", required=True
                )
            return
        for k in range(1, MAX_ACTIVITIES + 1):
            self.fields[name_key(k)] = forms.CharField(
                label=f"Activity {k} in your own words" + (" (optional)" if k > 1 else ""),
                required=False,
                max_length=MAX_NAME_LENGTH + 40,  # room for spaces that the clean-up removes
                help_text=f"For example: {PSFS_EXAMPLES}." if k == 1 else "",
                widget=forms.TextInput(attrs={"autocomplete": "off", "class": "psfs-name"}),
            )
            self.fields[rating_item(k)] = _rating_field(
                f"Activity {k}: how well can you do it today?", required=False
            )

    def clean(self) -> dict[str, Any]:
        cleaned = forms.Form.clean(self) or {}
        if self.names:
            return cleaned
        pairs: list[tuple[str, str]] = []
        for k in range(1, MAX_ACTIVITIES + 1):
            raw, rating = cleaned.get(name_key(k)) or "", cleaned.get(rating_item(k)) or ""
            if name_key(k) in self.errors or rating_item(k) in self.errors:
                continue
            if not raw and not rating:
                continue
            if not raw:
                self.add_error(name_key(k), "Please write the activity you rated.")
                continue
            try:
                name = clean_activity_name(raw)
            except ActivityNameError as exc:
                self.add_error(name_key(k), str(exc))
                continue
            if not rating:
                self.add_error(rating_item(k), "Please choose how well you can do this activity.")
                continue
            if name.casefold() in {n.casefold() for n, _ in pairs}:
                # Said beside the second box of the pair, where the patient fixes it.
                self.add_error(
                    name_key(k), f'"{name}" is named twice: please name each activity once.'
                )
                continue
            pairs.append((name, rating))
        if self.errors:
            return cleaned
        try:
            clean_activity_names([name for name, _ in pairs])
        except ActivityNameError as exc:
            self.add_error(name_key(1), str(exc))
            return cleaned
        renumbered: dict[str, Any] = {}
        for k, (name, rating) in enumerate(pairs, 1):
            renumbered[name_key(k)] = name
            renumbered[rating_item(k)] = rating
        self.cleaned_data = renumbered
        return renumbered


def form_for(
    instrument_id: str,
    data: Any = None,
    draft: Mapping[str, str] | None = None,
    items: Sequence[str] | None = None,
    psfs_names: Sequence[str] = (),
) -> InstrumentForm:
    """The form of ``instrument_id`` (only the questions ``items``, when given), bound to POST
    ``data`` or pre-filled from a ``draft``. The PSFS form re-rates ``psfs_names`` when given
    and asks the patient to name activities otherwise (:class:`PsfsForm`)."""
    if instrument_id == "psfs":
        if data is not None:
            return PsfsForm(data, names=psfs_names)
        return PsfsForm(initial=dict(draft or {}), names=psfs_names)
    definition = get_definition(instrument_id)
    if data is not None:
        return InstrumentForm(definition, data, items=items)
    return InstrumentForm(definition, initial=dict(draft or {}), items=items)


def parse_draft(instrument_id: str, draft: Mapping[str, str]) -> dict[str, Any]:
    """Typed answers (item id → code or number; absent = missing) from a text draft."""
    definition = get_definition(instrument_id)
    answers: dict[str, Any] = {}
    for item in definition.items:
        text = draft.get(item.id, "")
        if text:
            answers[item.id] = parse_answer_text(definition, item, text)
    return answers


def draft_is_complete(
    instrument_id: str, draft: Mapping[str, str] | None, psfs_names: Sequence[str] = ()
) -> bool:
    """True when a saved draft answers every required question validly: exactly what the
    instrument's form (:func:`form_for`) says of it, without building one (the review page
    and the submit ask this of every part; ``tests/followup/test_draft_check.py`` holds the
    two to the same answers). The PSFS, whose rules pair names with ratings, asks its form.
    """
    if draft is None:
        return False
    if instrument_id == "psfs":
        return form_for(instrument_id, data=dict(draft), psfs_names=psfs_names).is_valid()
    return _items_complete(get_definition(instrument_id), draft, None)


def items_complete(
    instrument_id: str, draft: Mapping[str, str] | None, items: Sequence[str]
) -> bool:
    """:func:`draft_is_complete` for the questions ``items`` of a non-PSFS instrument only
    (one screen of it), as the form of those questions would say."""
    if draft is None:
        return False
    return _items_complete(get_definition(instrument_id), draft, frozenset(items))


def _items_complete(
    defn: InstrumentDefinition, draft: Mapping[str, str], items: frozenset[str] | None
) -> bool:
    """The form's rules (:func:`_field`, :meth:`InstrumentForm.clean`) applied to ``draft``:
    a required question answered, a choice one of its codes, a number (stripped, at most
    :data:`MAX_ANSWER_LENGTH` characters) that parses within its bounds, and the opioid rule
    when the whole instrument is asked."""
    cleaned: dict[str, str] = {}
    for item in defn.items:
        if items is not None and item.id not in items:
            continue
        value = draft.get(item.id)
        text = "" if value is None else str(value)
        if item.type == "number":
            text = text.strip()
            if len(text) > MAX_ANSWER_LENGTH or "\x00" in text:
                return False
        if not text:
            if is_required(defn, item):
                return False
            continue
        if item.type != "number" and text not in _choice_codes(item):
            return False
        try:
            parse_answer_text(defn, item, text)
        except InvalidAnswerError:
            return False
        cleaned[item.id] = text
    whole = items is None or len(items) == len(defn.items)
    taken = cleaned.get("current_use") == "1"
    return not (
        defn.id == "opioid_use"
        and whole
        and taken
        and not (cleaned.get("opioid") and cleaned.get("daily_dose"))
    )


def _choice_codes(item: Item) -> frozenset[str]:
    """The texts a choice question's form field accepts (its option codes)."""
    return frozenset(str(option.code) for option in item.options)
