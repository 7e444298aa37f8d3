"""The form error summary names each field once: a refusal that already starts with the field's
short name is shown as it is; any other error gets the form's label in front of it. Checked on the
episode form as a coordinator sees it (the summary's text, not only the status)."""

from __future__ import annotations

import pytest

from vertebra.web.templatetags.vertebra_labels import summary_line

COST_LABEL = "Cost note (why the patient paid more than the price, if so)"


@pytest.mark.parametrize(
    ("error", "label", "line"),
    [
        (
            "Cost note: the patient paid more than the price.",
            COST_LABEL,
            "Cost note: the patient paid more than the price.",
        ),
        (
            "Price: cannot be negative.",
            "Price charged for the episode",
            "Price: cannot be negative.",
        ),
        ("This field is required.", "Arm", "Arm: This field is required."),
        # A colon inside the message that is not the field's name keeps the label in front.
        (
            "Dose: 10 mL is above the usual range.",
            "Volume injected",
            "Volume injected: Dose: 10 mL is above the usual range.",
        ),
        ("", "Arm", "Arm: "),
    ],
)
def test_summary_line_names_the_field_once(error: str, label: str, line: str) -> None:
    assert summary_line(error, label) == line
