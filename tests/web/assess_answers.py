"""Answer sets that lead the self-assessment to each verdict (shared by web and browser tests)."""

from __future__ import annotations

CANDIDATE: dict[str, dict[str, object]] = {
    "warning-signs": {"red_flags": ["none"]},
    "your-pain": {
        "age": "47",
        "pain_duration_months": "14",
        "diagnoses": ["herniated_disc"],
        "worse_pain": "back",
    },
    "pain-pattern": {"inflammatory_features": ["none"]},
    "treatments-tried": {
        "conservative_care_months": "6",
        "conservative_care_failed": "yes",
        "wants_to_avoid_surgery": "yes",
    },
    "health-and-expectations": {
        "general_health": "good",
        "pregnancy": "no",
        "blood_thinners": "no",
        "bleeding_disorder": "no",
        "understands_variable_results": "yes",
    },
    "scans-and-surgery": {
        "imaging": "confirms_disc_cause",
        "findings__painful_disc_levels": "1",
        "findings__severe_deformity": "no",
        "findings__advanced_bone_spurs": "no",
        "findings__needs_surgical_correction": "no",
        "findings__spondylolisthesis_grade": "0",
        "findings__modic_type": "1",
        "findings__prior_surgery_at_level": "no",
    },
}


def with_changes(step: str, **changes: object) -> dict[str, dict[str, object]]:
    """A copy of CANDIDATE with some answers of one step replaced."""
    answers = {name: dict(values) for name, values in CANDIDATE.items()}
    answers[step].update(changes)
    return answers


EMERGENCY = {"warning-signs": {"red_flags": ["saddle_anesthesia"]}}
REFER = with_changes("warning-signs", red_flags=["cancer_history"])
NOT_CANDIDATE = with_changes("scans-and-surgery", findings__modic_type="3")
NEEDS_MORE_INFORMATION = with_changes(
    "treatments-tried", conservative_care_failed="unsure", conservative_care_months=""
)

# Issue 18: candidacy needs an imaging-confirmed, treatable cause.
NO_IMAGING = with_changes("scans-and-surgery", imaging="none")
NO_DIAGNOSIS_YET = with_changes("your-pain", diagnoses=["none_yet"])
MUSCLE_STRAIN_AT_82 = with_changes("your-pain", age="82", diagnoses=["muscle_strain"])
# NICE NG65: pain for over 3 months that started before 45, with 4 of the listed features.
INFLAMMATORY = with_changes(
    "pain-pattern",
    inflammatory_features=["night_waking", "buttock_pain", "better_with_movement", "nsaid_relief"],
)
INFLAMMATORY["your-pain"]["age"] = "38"
