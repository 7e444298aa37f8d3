"""The correction and void forms, built from the record-type table (one form for every type).

A correction form shows the record's editable fields prefilled (grading fields only to roles
that may adjudicate), the version it was opened at (hidden) and a required reason. It only
parses input: the correction service re-validates, checks the chain of custody and audits.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models

from vertebra.core.instruments import get_definition
from vertebra.core.instruments.model import Item
from vertebra.registry.corrections import RecordType
from vertebra.registry.forms import DateInput
from vertebra.registry.models import SpinalLevel
from vertebra.registry.permissions import is_allowed

REASON_HELP = (
    'Say what was wrong and what is right, e.g. "typo: 0025 → 2025" or "read from the wrong '
    "lab sheet\". It is kept in the record's history."
)
ANSWER_PREFIX = "answer__"


def _reason(help_text: str) -> forms.CharField:
    return forms.CharField(
        label="Reason",
        max_length=500,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Give a reason: it is kept in the record's history."},
    )


def _answer_field(item: Item, value: Any) -> forms.Field:
    """One questionnaire item as a form field (choices by their labels, or a bounded number)."""
    if item.type == "number":
        return forms.FloatField(
            label=item.text, required=False, min_value=item.minimum, max_value=item.maximum,
            initial=value,
        )  # fmt: skip
    codes = {str(option.code): option.code for option in item.options}
    return forms.TypedChoiceField(
        label=item.text,
        required=False,
        choices=[("", "— not answered —"), *[(str(o.code), o.label) for o in item.options]],
        coerce=lambda text: codes[text],
        empty_value=None,
        initial=None if value is None else str(value),
    )


class CorrectionForm(forms.Form):
    """Correct one record: its editable fields, the version opened, and the reason."""

    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def __init__(
        self, data: Any = None, *, record_type: RecordType, instance: Any, role: str, **kw: Any
    ) -> None:
        super().__init__(data, **kw)
        self.record_type = record_type
        self.instance = instance
        self.fields["version"].initial = instance.version
        self.editable: list[str] = []
        for spec in record_type.fields:
            needed = record_type.field_actions.get(spec.name)
            if needed is not None and not is_allowed(role, needed):
                continue  # adjudication fields: shown only to roles that may adjudicate
            self.editable.append(spec.name)
            if spec.name == "answers":
                self._add_answers(instance)
                continue
            self.fields[spec.name] = self._field(
                spec.name, record_type.spec(spec.name).label, instance
            )
        self.fields["reason"] = _reason(REASON_HELP)
        self.order_fields([*[n for n in self.fields if n not in ("reason", "version")], "reason"])

    def _field(self, name: str, label: str, instance: Any) -> forms.Field:
        value = getattr(instance, name)
        if name == "levels":
            return forms.MultipleChoiceField(
                label=label, choices=SpinalLevel.choices, widget=forms.CheckboxSelectMultiple,
                initial=list(value or []),
            )  # fmt: skip
        model_field = self.record_type.model._meta.get_field(name)
        assert isinstance(model_field, models.Field)
        field = model_field.formfield()
        assert field is not None
        field.label = label
        field.initial = value
        if isinstance(model_field, models.DateField):
            field.widget = DateInput()
        if isinstance(model_field, models.TextField):
            field.widget = forms.Textarea(attrs={"rows": 2})
        if isinstance(field, forms.ChoiceField):
            choices: list[tuple[Any, Any]] = list(field.choices)  # type: ignore[arg-type]
            field.choices = [
                ("", "— not recorded —") if code in ("", None) else (code, text)
                for code, text in choices
            ]
        return field

    def _add_answers(self, instance: Any) -> None:
        definition = get_definition(instance.instrument_id)
        answers = instance.answers or {}
        for item in definition.items:
            self.fields[ANSWER_PREFIX + item.id] = _answer_field(item, answers.get(item.id))

    def changes(self) -> dict[str, Any]:
        """The submitted values of the editable fields (answers as one item → value map)."""
        data = self.cleaned_data
        out: dict[str, Any] = {}
        for name in self.editable:
            if name == "answers":
                out["answers"] = {
                    key.removeprefix(ANSWER_PREFIX): value
                    for key, value in data.items()
                    if key.startswith(ANSWER_PREFIX) and value is not None
                }
            elif name == "levels":
                out[name] = list(data[name])
            else:
                out[name] = data[name]
        return out


class VoidForm(forms.Form):
    """Void one record entered in error: the version opened and the reason."""

    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    reason = _reason(
        'Say why this record should not count, e.g. "entered on the wrong patient" or '
        '"duplicate of the report of 3 May". It stays on the record, struck through.'
    )
