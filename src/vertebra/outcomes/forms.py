"""The dashboard's GET filter form: parses query parameters into a `CohortFilter`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django import forms

from vertebra.core.analytics import CohortFilter
from vertebra.registry.models import Arm, Condition

__all__ = ["ARM_CHOICES", "DOSE_BANDS", "FilterForm"]

#: The analytics' arm names: cell therapy refined by source and PRP, then the comparators.
ARM_CHOICES: list[tuple[str, str]] = [
    ("bmac", "Cell therapy: bone marrow (BMAC)"),
    ("bmac_prp", "Cell therapy: bone marrow + PRP"),
    ("adipose", "Cell therapy: adipose"),
    ("adipose_prp", "Cell therapy: adipose + PRP"),
    ("allogeneic", "Cell therapy: allogeneic lot"),
    ("allogeneic_prp", "Cell therapy: allogeneic + PRP"),
    ("cell_therapy", "Cell therapy: source not recorded"),
] + [(a.value, a.label) for a in Arm if a.value != Arm.CELL_THERAPY]
CELL_SOURCE_CHOICES = [
    ("bone_marrow", "Bone marrow"),
    ("adipose", "Adipose"),
    ("allogeneic", "Allogeneic lot"),
]
ADJUNCT_CHOICES = [("prp", "PRP"), ("hyaluronic_acid", "Hyaluronic acid")]
#: Dose bands (million cells): key -> (label, lower exclusive bound, upper inclusive bound).
DOSE_BANDS: dict[str, tuple[str, float | None, float | None]] = {
    "le50": ("up to 50 million cells", None, 50.0),
    "50to200": ("over 50 up to 200 million", 50.0, 200.0),
    "gt200": ("over 200 million", 200.0, None),
}
_ALL = [("", "All")]


class FilterForm(forms.Form):
    """Cohort filters; every field optional (empty = no restriction)."""

    clinic = forms.ChoiceField(required=False, label="Clinic")
    condition = forms.ChoiceField(
        required=False, label="Condition", choices=_ALL + list(Condition.choices)
    )
    arm = forms.ChoiceField(required=False, label="Arm", choices=_ALL + ARM_CHOICES)
    cell_source = forms.ChoiceField(
        required=False, label="Cell source", choices=_ALL + CELL_SOURCE_CHOICES
    )
    adjunct = forms.ChoiceField(required=False, label="Adjunct", choices=_ALL + ADJUNCT_CHOICES)
    dose = forms.ChoiceField(
        required=False,
        label="Dose band",
        choices=_ALL + [(k, v[0]) for k, v in DOSE_BANDS.items()],
    )
    treated_from = forms.DateField(
        required=False, label="Treated from", widget=forms.DateInput(attrs={"type": "date"})
    )
    treated_to = forms.DateField(
        required=False, label="Treated to", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, clinics: Sequence[tuple[str, str]] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields["clinic"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = _ALL + list(clinics)

    def clean(self) -> dict[str, Any]:
        """Reject a date range that ends before it starts."""
        data = super().clean() or {}
        start, end = data.get("treated_from"), data.get("treated_to")
        if start and end and end < start:
            raise forms.ValidationError("'Treated to' is before 'Treated from'.")
        return data

    def to_filter(self) -> CohortFilter:
        """The CohortFilter of the cleaned data (call after ``is_valid()``)."""
        data = self.cleaned_data
        lo, hi = None, None
        if data.get("dose"):
            _label, lower, upper = DOSE_BANDS[data["dose"]]
            lo = None if lower is None else math.nextafter(lower, math.inf)
            hi = upper
        return CohortFilter.build(
            clinics=[data["clinic"]] if data.get("clinic") else [],
            conditions=[data["condition"]] if data.get("condition") else [],
            arms=[data["arm"]] if data.get("arm") else [],
            cell_sources=[data["cell_source"]] if data.get("cell_source") else [],
            adjuncts=[data["adjunct"]] if data.get("adjunct") else [],
            dose_min=lo,
            dose_max=hi,
            treated_from=data.get("treated_from"),
            treated_to=data.get("treated_to"),
        )
