"""Forms of the clinician pages under /clinic/.

Contracts
---------
* Forms parse and validate input field by field (model validators included, through
  ``ModelForm``) and hand typed values to a service via :meth:`service_kwargs`. They never save:
  every write goes through :mod:`vertebra.registry.services`, which re-validates, enforces the
  chain of custody and audits. No business rule lives here.
* Dates use the browser's date picker (``<input type="date">``).
"""

from __future__ import annotations

from typing import Any, cast

from django import forms

from vertebra.core.plausibility import rules as plausibility_rules
from vertebra.registry.models import (
    EPISODE_COST_FIELDS,
    AdverseEvent,
    AdverseEventOutcome,
    AllogeneicLot,
    Arm,
    ClinicalEvent,
    Condition,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    Processing,
    Relatedness,
    SpinalLevel,
    Sterility,
    TreatmentEpisode,
)
from vertebra.web import assess


class DateInput(forms.DateInput):
    """The native date picker; the value is ISO (yyyy-mm-dd) as the browser sends it."""

    input_type = "date"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


def _dates(*names: str) -> dict[str, forms.Widget]:
    return {name: DateInput() for name in names}


class ServiceForm(forms.ModelForm):
    """A ModelForm used only to validate: :meth:`service_kwargs` feeds the service."""

    def service_kwargs(self) -> dict[str, Any]:
        """The cleaned values, keyed as the service's keyword arguments."""
        return dict(self.cleaned_data)


# --------------------------------------------------------------------------------- patients


class PatientSearchForm(forms.Form):
    """Search and filters of the patient list (all optional; bad values are ignored)."""

    q = forms.CharField(label="Name or MRN", required=False, max_length=100)
    condition = forms.ChoiceField(
        label="Diagnosis", required=False, choices=[("", "Any diagnosis"), *Condition.choices]
    )
    arm = forms.ChoiceField(
        label="Treatment arm", required=False, choices=[("", "Any arm"), *Arm.choices]
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class PatientForm(ServiceForm):
    """Register a patient; ``clinic`` is offered only among the actor's clinics."""

    clinic_id = forms.TypedChoiceField(label="Clinic", coerce=int)

    class Meta:
        model = Patient
        fields = ["mrn", "given_name", "family_name", "date_of_birth", "sex", "email", "phone"]
        widgets = _dates("date_of_birth")

    def __init__(self, *args: Any, clinics: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["clinic_id"]).choices = clinics
        if len(clinics) == 1:
            self.fields["clinic_id"].initial = clinics[0][0]
            self.fields["clinic_id"].widget = forms.HiddenInput()
        self.order_fields(["clinic_id"])


# ------------------------------------------------------------ consent, diagnosis, history


class ConsentForm(ServiceForm):
    class Meta:
        model = Consent
        fields = ["kind", "form_version", "signed_on"]
        widgets = _dates("signed_on")


class ConsentWithdrawForm(forms.Form):
    """Record the withdrawal of a consent (the consent row is kept)."""

    withdrawn_on = forms.DateField(label="Withdrawn on", widget=DateInput())
    reason = forms.CharField(
        label="Note (optional)",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="How the withdrawal was received, e.g. \u201cpatient phoned\u201d. Kept in the "
        "audit trail; a patient need not give a reason.",
    )

    def service_kwargs(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class SterilityForm(forms.Form):
    """The lab's sterility result for the episode's product."""

    sterility = forms.ChoiceField(
        label="Sterility result",
        choices=[(Sterility.PASS.value, "Pass"), (Sterility.FAIL.value, "Fail")],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label="Reason (only when changing a result already recorded)",
        required=False,
        max_length=500,
    )

    def service_kwargs(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class DiagnosisForm(ServiceForm):
    class Meta:
        model = Diagnosis
        fields = [
            "condition",
            "icd10",
            "diagnosed_on",
            "level",
            "laterality",
            "pfirrmann_grade",
            "modified_pfirrmann_grade",
            "modic_type",
            "disc_height_pct",
            "spondylolisthesis_grade",
            "stenosis",
        ]
        widgets = _dates("diagnosed_on")

    def clean_icd10(self) -> str:
        """Codes are written in capitals (m51.36 → M51.36), as the service stores them."""
        return str(self.cleaned_data.get("icd10", "")).strip().upper()


class PriorTreatmentForm(ServiceForm):
    class Meta:
        model = PriorTreatment
        fields = [
            "kind",
            "details",
            "medication_name",
            "daily_dose",
            "relief_weeks",
            "started_on",
            "ended_on",
        ]
        widgets = {**_dates("started_on", "ended_on"), "details": forms.Textarea({"rows": 2})}


class ScreeningForm:
    """The screening questions of the rule set, all on one page, built from the same step
    forms as the public self-assessment (so wording and validation cannot drift)."""

    def __init__(self, data: Any = None) -> None:
        self.parts = [assess.StepForm(step, data) for step in assess.STEPS]

    def is_valid(self) -> bool:
        """Validate every part (each shows its own field errors)."""
        return all([part.is_valid() for part in self.parts])

    @property
    def errors(self) -> bool:
        return any(part.errors for part in self.parts)

    def facts(self) -> dict[str, object]:
        """The screening engine's facts from the answers (unknown answers left out)."""
        answers = {part.step.slug: assess.to_session(part) for part in self.parts}
        return assess.facts_from_answers(answers)


# ----------------------------------------------------------------------------- pathway


def _currency_choices() -> list[tuple[str, str]]:
    """The currencies an episode's cost may be recorded in (plausibility.yaml), blank first."""
    return [("", "—"), *((code, code) for code in sorted(plausibility_rules().episode_cost))]


class EpisodeForm(ServiceForm):
    """Start an episode; its cost (price, payer, out-of-pocket) is optional and may be
    recorded later through the episode's correction."""

    currency = forms.ChoiceField(label="Currency", required=False, choices=_currency_choices)

    class Meta:
        model = TreatmentEpisode
        fields = [
            "arm",
            "start_date",
            "price",
            "currency",
            "billed_to",
            "patient_paid",
            "cost_note",
        ]
        widgets = _dates("start_date")
        labels = {
            "price": "Price charged for the episode",
            "billed_to": "Billed to",
            "patient_paid": "Paid by the patient (out of pocket)",
            "cost_note": "Cost note (why the patient paid more than the price, if so)",
        }

    def _post_clean(self) -> None:  # the service validates the model, cost rules included
        pass

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        cost = {name: data.pop(name, None) for name in EPISODE_COST_FIELDS}
        return {**data, "cost": cost}


class HarvestForm(ServiceForm):
    allogeneic_lot = forms.ModelChoiceField(
        queryset=AllogeneicLot.objects.order_by("lot_number"),
        required=False,
        label="Allogeneic lot (allogeneic sources only)",
    )

    class Meta:
        model = Harvest
        fields = ["source", "allogeneic_lot", "volume_ml", "harvested_on"]
        widgets = _dates("harvested_on")
        labels = {"volume_ml": "Volume (mL)"}

    def clean(self) -> dict[str, Any]:
        """Skip the model's lot/source constraint here: the service gives the clearer,
        chain-of-custody message for it."""
        return self.cleaned_data

    def _post_clean(self) -> None:  # the service validates the model (see clean)
        pass

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        lot = data.pop("allogeneic_lot", None)
        data["allogeneic_lot_id"] = lot.pk if lot else None
        return data


class ProcessingForm(ServiceForm):
    class Meta:
        model = Processing
        fields = [
            "method",
            "lab",
            "processed_on",
            "product_id",
            "tnc_per_ml",
            "cfu_f_per_ml",
            "cd34_pct",
            "viability_pct",
            "sterility",
            "adjunct_prp",
            "adjunct_hyaluronic_acid",
        ]
        widgets = _dates("processed_on")
        labels = {"product_id": "Product id"}

    def validate_unique(self) -> None:
        """Uniqueness of the product id is the service's check, across every clinic."""


class InjectionForm(ServiceForm):
    """Inject one product: the processed product's id as printed on its label, or a released
    allogeneic lot. Whether it may go into this patient is the service's decision."""

    product_id = forms.CharField(
        label="Product id (from the product label)", required=False, max_length=64
    )
    allogeneic_lot = forms.ModelChoiceField(
        queryset=AllogeneicLot.objects.order_by("lot_number"),
        required=False,
        label="Or: allogeneic lot injected as supplied",
    )
    levels = forms.MultipleChoiceField(
        choices=SpinalLevel.choices, widget=forms.CheckboxSelectMultiple, label="Levels"
    )

    class Meta:
        model = Injection
        fields = [
            "levels",
            "target",
            "guidance",
            "volume_ml",
            "cell_dose",
            "adjunct_prp",
            "injected_on",
        ]
        widgets = _dates("injected_on")
        labels = {"volume_ml": "Volume (mL)", "adjunct_prp": "PRP given with this injection"}

    field_order = ["product_id", "allogeneic_lot", "levels"]

    def _post_clean(self) -> None:  # product/lot rules are the chain of custody: the service's
        pass

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        lot = data.pop("allogeneic_lot", None)
        data["allogeneic_lot_id"] = lot.pk if lot else None
        data["product_id"] = data.get("product_id") or None
        return data


# ---------------------------------------------------------------------- adverse events


class AdverseEventForm(ServiceForm):
    """Report an adverse event (pending adjudication); the episode is optional."""

    episode_id = forms.TypedChoiceField(
        label="Episode", coerce=int, required=False, empty_value=None
    )

    class Meta:
        model = AdverseEvent
        fields = ["description", "category", "onset", "serious", "outcome", "resolved_on"]
        widgets = {**_dates("onset", "resolved_on"), "description": forms.Textarea({"rows": 3})}

    def __init__(self, *args: Any, episodes: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["episode_id"])
        field.choices = [("", "Not linked to an episode"), *episodes]


class AdjudicationForm(forms.Form):
    """A clinician's adjudication: CTCAE grade, seriousness, relatedness, expectedness."""

    ctcae_grade = forms.TypedChoiceField(
        label="CTCAE grade",
        coerce=int,
        choices=[(n, f"Grade {n}") for n in range(1, 6)],
        widget=forms.RadioSelect,
    )
    serious = forms.BooleanField(label="Serious adverse event", required=False)
    relatedness = forms.ChoiceField(choices=Relatedness.choices, widget=forms.RadioSelect)
    expected = forms.TypedChoiceField(
        label="Expected?",
        choices=[("yes", "Expected"), ("no", "Unexpected")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
    )
    outcome = forms.ChoiceField(choices=AdverseEventOutcome.choices)
    resolved_on = forms.DateField(required=False, widget=DateInput())
    reason = forms.CharField(
        label="Reason (only when changing an earlier adjudication)",
        required=False,
        max_length=500,
    )


class ClinicalEventForm(ServiceForm):
    class Meta:
        model = ClinicalEvent
        fields = ["kind", "occurred_on", "details"]
        widgets = {**_dates("occurred_on"), "details": forms.Textarea({"rows": 2})}
