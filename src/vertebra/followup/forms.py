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


def form_for(
    instrument_id: str,
    data: Any = None,
    draft: Mapping[str, str] | None = None,
    items: Sequence[str] | None = None,
) -> InstrumentForm:
    """The form of ``instrument_id`` (only the questions ``items``, when given), bound to POST
    ``data`` or pre-filled from a ``draft``."""
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


def draft_is_complete(instrument_id: str, draft: Mapping[str, str] | None) -> bool:
    """True when a saved draft answers every required question validly."""
    if draft is None:
        return False
    form = form_for(instrument_id, data=dict(draft))
    return form.is_valid()
