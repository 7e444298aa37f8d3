"""Forms of the clinic admin's directory page: shape only, rules live in the services."""

from __future__ import annotations

from typing import Any

from django import forms

from vertebra.core.knowledge import Question
from vertebra.directory.services import MAX_ANSWER_CHARS


class PublishForm(forms.Form):
    """Publish or withdraw: the button pressed says which."""

    publish = forms.TypedChoiceField(
        choices=[("yes", "Publish"), ("no", "Withdraw")],
        coerce=lambda v: v == "yes",
    )


class AnswersForm(forms.Form):
    """One text box per question to ask a clinic (empty: not answered)."""

    def __init__(self, *args: Any, questions: tuple[Question, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for q in questions:
            self.fields[q.id] = forms.CharField(
                label=q.text,
                required=False,
                max_length=MAX_ANSWER_CHARS,
                widget=forms.Textarea(attrs={"rows": 3}),
                help_text=f"Why patients ask: {q.why}",
            )
