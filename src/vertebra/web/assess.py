"""The public self-assessment at /assess/: a short multi-step form over the screening rules.

Questions and labels come from the screening rule set (data), so a wording change there shows
here without code changes. Answers live only in the anonymous session (no name, no contact
details, nothing identifying) so "Back" keeps them; "Start again" deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from vertebra.core.screening import ScreeningResult, evaluate
from vertebra.core.screening.ruleset import FactSpec, Ruleset, load_ruleset

SESSION_KEY = "assess_answers"

YES, NO, UNSURE = "yes", "no", "unsure"
TRI_STATE = [(YES, "Yes"), (NO, "No"), (UNSURE, "I'm not sure")]
NONE_OF_THESE = "none"
#: The diagnoses answer "no doctor has told me the cause": a known empty list, which the rule set
#: answers with "needs more information" naming the missing diagnosis (not "unknown").
NO_DIAGNOSIS_YET = "none_yet"
#: List facts whose form offers "None of these", so that "none" is a real (known) answer.
NONE_LIST_FACTS = ("red_flags", "inflammatory_features")


@dataclass(frozen=True)
class Step:
    """One page of the self-assessment: its slug, heading, intro and the facts it asks."""

    slug: str
    title: str
    intro: str
    facts: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step(
        "warning-signs",
        "Warning signs",
        "Some symptoms need a doctor quickly. Tick every one you have now, or tick "
        "\u201cNone of these\u201d.",
        ("red_flags",),
    ),
    Step(
        "your-pain",
        "Your back pain",
        "Tell us about your pain. If you don't know an answer, leave it empty.",
        ("age", "pain_duration_months", "diagnoses", "worse_pain"),
    ),
    Step(
        "pain-pattern",
        "How your pain behaves",
        "Some back pain comes from inflammation of the spine, which has its own treatments. "
        "Tick every one that fits, or tick \u201cNone of these\u201d.",
        ("inflammatory_features",),
    ),
    Step(
        "treatments-tried",
        "Treatments you have tried",
        "Most guidelines suggest exercise, physiotherapy and medicines before any injection.",
        ("conservative_care_months", "conservative_care_failed", "wants_to_avoid_surgery"),
    ),
    Step(
        "health-and-expectations",
        "Your health and what to expect",
        "Stem cell treatment for back pain is still being studied. In the most careful study so "
        "far, people who had it did no better than people who had a fake (sham) treatment.",
        (
            "general_health",
            "pregnancy",
            "blood_thinners",
            "bleeding_disorder",
            "understands_variable_results",
        ),
    ),
    Step(
        "scans-and-surgery",
        "What your doctor or scans have shown",
        "These answers usually come from a spine doctor or an MRI report. \u201cI'm not sure\u201d "
        "is fine.",
        (
            "imaging",
            "findings.painful_disc_levels",
            "findings.severe_deformity",
            "findings.advanced_bone_spurs",
            "findings.needs_surgical_correction",
            "findings.spondylolisthesis_grade",
            "findings.modic_type",
            "findings.prior_surgery_at_level",
        ),
    ),
)
STEP_SLUGS = tuple(step.slug for step in STEPS)

SPONDYLOLISTHESIS_CHOICES = [
    ("0", "No slipped bone"),
    ("1", "Grade 1 (small slip)"),
    ("2", "Grade 2"),
    ("3", "Grade 3"),
    ("4", "Grade 4"),
    (UNSURE, "I'm not sure"),
]
MODIC_CHOICES = [
    ("0", "No Modic changes"),
    ("1", "Type 1"),
    ("2", "Type 2"),
    ("3", "Type 3"),
    (UNSURE, "I'm not sure"),
]


def step_by_slug(slug: str) -> Step | None:
    """Return the step with this slug, or None."""
    return next((step for step in STEPS if step.slug == slug), None)


def fact_spec(ruleset: Ruleset, path: str) -> FactSpec:
    """Return the rule set's spec for a fact path such as ``findings.modic_type``."""
    head, _, tail = path.partition(".")
    spec = next(spec for spec in ruleset.facts if spec.path == head)
    if tail:
        spec = next(field for field in spec.fields if field.path == path)
    return spec


def field_name(path: str) -> str:
    """HTML form field name for a fact path (dots are awkward in ids)."""
    return path.replace(".", "__")


class StepForm(forms.Form):
    """A form whose fields are built from the rule set for one step."""

    def __init__(self, step: Step, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step = step
        ruleset = load_ruleset()
        for path in step.facts:
            self.fields[field_name(path)] = _build_field(ruleset, path)

    def clean(self) -> dict[str, Any]:
        """Require an explicit answer for warning signs: one or more, or "none of these".

        "None of these" (or "no doctor has told me the cause") cannot be ticked with an item.
        """
        cleaned = super().clean() or {}
        for name, none in (
            ("inflammatory_features", NONE_OF_THESE),
            ("diagnoses", NO_DIAGNOSIS_YET),
        ):
            ticked = cleaned.get(name) or []
            if name in self.step.facts and none in ticked and len(ticked) > 1:
                self.add_error(name, "You ticked \u201cnone\u201d and an item. Please check.")
        if "red_flags" in self.step.facts:
            ticked = cleaned.get("red_flags") or []
            if not ticked:
                self.add_error(
                    "red_flags", "Tick the signs you have, or tick \u201cNone of these\u201d."
                )
            elif NONE_OF_THESE in ticked and len(ticked) > 1:
                self.add_error(
                    "red_flags",
                    "You ticked \u201cNone of these\u201d and a warning sign. Please check your answer.",
                )
        return cleaned


def _build_field(ruleset: Ruleset, path: str) -> forms.Field:
    """One Django form field for a fact, with the rule set's plain question as its label."""
    spec = fact_spec(ruleset, path)
    if path == "red_flags":
        ordered = sorted(ruleset.red_flags, key=lambda flag: flag.urgency != "emergency")
        choices = [(flag.id, flag.label) for flag in ordered] + [(NONE_OF_THESE, "None of these")]
        return forms.MultipleChoiceField(
            label="Do you have any of these?",
            choices=choices,
            widget=forms.CheckboxSelectMultiple,
            required=False,
        )
    if path == "diagnoses":
        return forms.MultipleChoiceField(
            label=spec.question + " (leave empty if you don't know)",
            choices=[(entry.id, entry.label) for entry in ruleset.diagnoses]
            + [(NO_DIAGNOSIS_YET, "No doctor has told me the cause yet")],
            widget=forms.CheckboxSelectMultiple,
            required=False,
        )
    if path == "inflammatory_features":
        return forms.MultipleChoiceField(
            label=spec.question,
            choices=[(entry.id, entry.label) for entry in ruleset.inflammatory_features]
            + [(NONE_OF_THESE, "None of these")],
            widget=forms.CheckboxSelectMultiple,
            required=False,
        )
    if path == "findings.spondylolisthesis_grade":
        return _radio(spec.question, SPONDYLOLISTHESIS_CHOICES)
    if path == "findings.modic_type":
        return _radio(spec.question, MODIC_CHOICES)
    if spec.type == "boolean":
        return _radio(spec.question, TRI_STATE)
    if spec.type == "enum":
        labels = (
            dict(zip(spec.values, spec.value_labels, strict=True))
            if spec.value_labels
            else {value: value.capitalize() for value in spec.values}
        )
        return _radio(spec.question, [*labels.items(), (UNSURE, "I'm not sure")])
    if spec.type == "integer":
        return forms.IntegerField(
            label=spec.question,
            required=False,
            min_value=_int_or_none(spec.minimum),
            max_value=_int_or_none(spec.maximum),
            widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        )
    return forms.DecimalField(
        label=spec.question,
        required=False,
        min_value=spec.minimum,
        max_value=spec.maximum,
        decimal_places=1,
        widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "0.5"}),
    )


def _radio(label: str, choices: list[tuple[str, str]]) -> forms.ChoiceField:
    return forms.ChoiceField(label=label, choices=choices, widget=forms.RadioSelect, required=False)


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def to_session(form: StepForm) -> dict[str, Any]:
    """The cleaned answers of one step, as JSON-safe values keyed by form field name."""
    out: dict[str, Any] = {}
    for name, value in form.cleaned_data.items():
        out[name] = (
            str(value) if value is not None and not isinstance(value, list | str | int) else value
        )
    return out


def facts_from_answers(answers: Mapping[str, Mapping[str, Any]]) -> dict[str, object]:
    """Turn the stored step answers into the screening engine's facts (unknowns left out)."""
    ruleset = load_ruleset()
    facts: dict[str, object] = {}
    findings: dict[str, object] = {}
    for step in STEPS:
        stored = answers.get(step.slug, {})
        for path in step.facts:
            value = _fact_value(fact_spec(ruleset, path), path, stored.get(field_name(path)))
            if value is None:
                continue
            if path.startswith("findings."):
                findings[path.split(".", 1)[1]] = value
            else:
                facts[path] = value
    if findings:
        facts["findings"] = findings
    return facts


def _fact_value(spec: FactSpec, path: str, raw: Any) -> object:
    """Convert one stored form answer into a typed fact value, or None for unknown."""
    if raw in (None, "", UNSURE):
        return None
    if path in NONE_LIST_FACTS:
        return [item for item in raw if item != NONE_OF_THESE] if raw else None
    if path == "diagnoses":
        # "No doctor has told me the cause yet" is the known answer "none" (an empty list).
        return [item for item in raw if item != NO_DIAGNOSIS_YET] if raw else None
    if spec.type == "boolean":
        return raw == YES
    if spec.type == "integer":
        return int(raw)
    if spec.type == "number":
        number = float(raw)
        return int(number) if number.is_integer() else number
    return raw


def has_emergency_flag(answers: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when a ticked warning sign calls for the emergency department."""
    ticked = answers.get("warning-signs", {}).get("red_flags") or []
    return bool(set(ticked) & set(load_ruleset().emergency_flags()))


def assess(answers: Mapping[str, Mapping[str, Any]]) -> ScreeningResult:
    """Evaluate the stored answers with the current rule set."""
    return evaluate(facts_from_answers(answers))


def step_for_fact(path: str) -> Step | None:
    """The step that asks a fact (for "answer this" links on the result page)."""
    return next((step for step in STEPS if path in step.facts), None)
