"""Screening engine: every rule and every verdict, with worked examples.

The base case is docs/examples/screening/candidate.json (a complete candidate); each test
changes one fact and checks which rule fires and which verdict results.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vertebra.core.screening import (
    VERDICTS,
    ScreeningResult,
    StartBackResult,
    evaluate,
    load_ruleset,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "screening"


def example(name: str) -> dict[str, Any]:
    """Load docs/examples/screening/NAME.json."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def candidate(**changes: Any) -> dict[str, Any]:
    """The complete candidate example with top-level facts replaced (None = remove)."""
    facts = example("candidate")
    for key, value in changes.items():
        if value is None:
            facts.pop(key, None)
        else:
            facts[key] = value
    return facts


def with_finding(name: str, value: Any) -> dict[str, Any]:
    """The candidate example with one imaging/examination finding changed (None = remove)."""
    facts = example("candidate")
    if value is None:
        del facts["findings"][name]
    else:
        facts["findings"][name] = value
    return facts


def fired_ids(result: ScreeningResult) -> list[str]:
    return [rule.id for rule in result.fired]


# --- worked examples: one per verdict ----------------------------------------------------------


def test_example_candidate() -> None:
    result = evaluate(example("candidate"))
    assert result.verdict == "candidate"
    assert result.fired == ()
    assert result.superseded == ()
    assert result.missing == ()
    assert result.startback == StartBackResult("low", 3, 1)
    assert [n.id for n in result.notes] == ["note.age_over_50", "note.modic_type_1_or_2"]
    assert "does not mean the treatment will help you" in result.summary.message


def test_example_emergency() -> None:
    result = evaluate(example("emergency"))
    assert result.verdict == "emergency"
    assert fired_ids(result) == ["redflag.cauda_equina"]
    assert result.fired[0].evidence == (
        ("red_flags", ("bladder_bowel_dysfunction", "saddle_anesthesia")),
    )
    assert result.missing == ()  # nothing could make it less urgent
    assert result.startback == StartBackResult("high", 8, 4)
    assert "emergency department" in result.summary.message


def test_example_refer() -> None:
    result = evaluate(example("refer"))
    assert result.verdict == "refer"
    assert fired_ids(result) == ["redflag.malignancy"]
    assert result.missing == ()  # red_flags is known, so nothing could make it an emergency
    assert [r.id for r in result.superseded] == ["completeness.candidacy_facts"]


def test_example_not_candidate() -> None:
    result = evaluate(example("not_candidate"))
    assert result.verdict == "not_candidate"
    assert fired_ids(result) == [
        "exclusion.modic_type_3",
        "candidacy.chronic_pain",
        "candidacy.conservative_care_duration",
    ]
    # Only what could still make it "see a doctor first": the inflammatory back pain features.
    assert [m.fact for m in result.missing] == ["inflammatory_features"]


def test_example_needs_more_information() -> None:
    result = evaluate(example("needs_more_information"))
    assert result.verdict == "needs_more_information"
    # No MRI yet: the rule that says so comes first, with its own plain message.
    assert fired_ids(result) == ["completeness.no_imaging", "completeness.candidacy_facts"]
    assert "bring the written MRI report" in result.fired[0].message
    assert any("What to bring" in step for step in result.summary.next_steps)
    assert [m.fact for m in result.missing] == [
        "worse_pain",
        "inflammatory_features",
        "pregnancy",
        "findings.severe_deformity",
        "findings.advanced_bone_spurs",
        "findings.needs_surgical_correction",
        "findings.spondylolisthesis_grade",
        "findings.modic_type",
        "findings.prior_surgery_at_level",
        "findings.painful_disc_levels",
    ]
    assert all(m.question for m in result.missing)


# --- every verdict rule fires on its own -------------------------------------------------------

RULE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("redflag.cauda_equina", candidate(red_flags=["bladder_bowel_dysfunction"]), "emergency"),
    ("redflag.cauda_equina", candidate(red_flags=["saddle_anesthesia"]), "emergency"),
    ("redflag.cauda_equina", candidate(red_flags=["bilateral_leg_weakness"]), "emergency"),
    ("redflag.cauda_equina", candidate(red_flags=["new_sexual_dysfunction"]), "emergency"),
    (
        "redflag.rapidly_progressive_weakness",
        candidate(red_flags=["rapidly_progressive_weakness"]),
        "emergency",
    ),
    ("redflag.malignancy", candidate(red_flags=["cancer_history"]), "refer"),
    ("redflag.malignancy", candidate(red_flags=["unexplained_weight_loss"]), "refer"),
    ("redflag.infection", candidate(red_flags=["fever"]), "refer"),
    ("redflag.infection", candidate(red_flags=["iv_drug_use"]), "refer"),
    ("redflag.infection", candidate(red_flags=["immunosuppression"]), "refer"),
    ("redflag.infection", candidate(red_flags=["recent_infection"]), "refer"),
    ("redflag.fracture", candidate(red_flags=["significant_trauma"]), "refer"),
    ("redflag.fracture", candidate(red_flags=["osteoporosis"]), "refer"),
    ("redflag.fracture", candidate(red_flags=["prolonged_steroid_use"]), "refer"),
    ("redflag.progressive_weakness", candidate(red_flags=["progressive_weakness"]), "refer"),
    ("exclusion.severe_deformity", with_finding("severe_deformity", True), "not_candidate"),
    ("exclusion.advanced_bone_spurs", with_finding("advanced_bone_spurs", True), "not_candidate"),
    (
        "exclusion.needs_surgical_correction",
        with_finding("needs_surgical_correction", True),
        "not_candidate",
    ),
    ("exclusion.spondylolisthesis", with_finding("spondylolisthesis_grade", 2), "not_candidate"),
    ("exclusion.spondylolisthesis", with_finding("spondylolisthesis_grade", 5), "not_candidate"),
    ("exclusion.modic_type_3", with_finding("modic_type", 3), "not_candidate"),
    (
        "exclusion.prior_surgery_at_level",
        with_finding("prior_surgery_at_level", True),
        "not_candidate",
    ),
    ("candidacy.adult", candidate(age=17), "not_candidate"),
    ("candidacy.chronic_pain", candidate(pain_duration_months=2.9), "not_candidate"),
    (
        "candidacy.conservative_care_helped",
        candidate(conservative_care_failed=False),
        "not_candidate",
    ),
    (
        "candidacy.conservative_care_duration",
        candidate(conservative_care_months=2.5),
        "not_candidate",
    ),
    ("candidacy.general_health", candidate(general_health="poor"), "not_candidate"),
    (
        "candidacy.wants_to_avoid_surgery",
        candidate(wants_to_avoid_surgery=False),
        "not_candidate",
    ),
    (
        "candidacy.understands_variable_results",
        candidate(understands_variable_results=False),
        "not_candidate",
    ),
    ("completeness.candidacy_facts", candidate(age=None), "needs_more_information"),
    ("completeness.candidacy_facts", candidate(diagnoses=None), "needs_more_information"),
    ("completeness.candidacy_facts", candidate(imaging=None), "needs_more_information"),
    # Issue 18: candidacy needs an imaging-confirmed, treatable cause.
    ("completeness.no_diagnosis", candidate(diagnoses=[]), "needs_more_information"),
    ("completeness.no_imaging", candidate(imaging="none"), "needs_more_information"),
    ("candidacy.no_treatable_cause", candidate(diagnoses=["muscle_strain"]), "not_candidate"),
    (
        "candidacy.no_treatable_cause",
        candidate(diagnoses=["sciatica", "spinal_stenosis", "facet_arthropathy"]),
        "not_candidate",
    ),
    (
        "candidacy.imaging_does_not_confirm",
        candidate(imaging="does_not_confirm"),
        "not_candidate",
    ),
    ("exclusion.pregnancy", candidate(pregnancy=True), "not_candidate"),
    ("exclusion.leg_pain_dominant", candidate(worse_pain="leg"), "not_candidate"),
    ("exclusion.multilevel", with_finding("painful_disc_levels", 3), "not_candidate"),
    # NICE NG65: onset before 45 (age 40 - 18 months = 38.5) and 4 features.
    (
        "refer.inflammatory_back_pain",
        candidate(
            age=40,
            inflammatory_features=["night_waking", "buttock_pain", "nsaid_relief", "psoriasis"],
        ),
        "refer",
    ),
    # Onset before 35 counts as a criterion: 3 more are enough (age 34 - 1.5 = 32.5).
    (
        "refer.inflammatory_back_pain",
        candidate(age=34, inflammatory_features=["night_waking", "buttock_pain", "arthritis"]),
        "refer",
    ),
]


@pytest.mark.parametrize(("rule_id", "facts", "verdict"), RULE_CASES)
def test_each_rule_fires_alone(rule_id: str, facts: dict[str, Any], verdict: str) -> None:
    result = evaluate(facts)
    assert result.verdict == verdict
    assert fired_ids(result) == [rule_id]
    fired = result.fired[0]
    assert fired.message and fired.clinician_message and fired.source.citation
    assert fired.evidence, "a fired rule names the facts that made it fire"


def test_every_verdict_rule_has_a_case() -> None:
    covered = {case[0] for case in RULE_CASES}
    assert covered == {rule.id for rule in load_ruleset().rules}


def test_every_red_flag_has_a_case() -> None:
    covered = {flag for _, facts, _ in RULE_CASES for flag in facts["red_flags"]}
    assert covered == {flag.id for flag in load_ruleset().red_flags}


# --- thresholds: values just inside the criteria do not fire -----------------------------------


@pytest.mark.parametrize(
    "facts",
    [
        candidate(age=18),
        candidate(age=120),
        candidate(pain_duration_months=3),
        candidate(conservative_care_months=3),
        candidate(general_health="fair"),
        with_finding("spondylolisthesis_grade", 1),
        with_finding("modic_type", 0),
        with_finding("modic_type", 1),
        with_finding("modified_pfirrmann_grade", 8),
        with_finding("modified_pfirrmann_grade", None),  # informational only: not required
        candidate(startback=None),  # informational only: not required
        # A treatable cause beside another one is still a treatable cause.
        candidate(diagnoses=["degenerative_disc_disease", "muscle_strain"]),
        candidate(diagnoses=["herniated_disc"]),
        with_finding("painful_disc_levels", 2),
        candidate(worse_pain="about_equal"),
        candidate(blood_thinners=True, bleeding_disorder=True),  # cautions, not exclusions
        # Inflammatory features just short of NICE NG65's referral criteria:
        # 4 features but onset at 45 or later (52 - 1.5 = 50.5) ...
        candidate(
            inflammatory_features=["night_waking", "buttock_pain", "nsaid_relief", "arthritis"]
        ),
        # ... onset before 45 but 3 features and onset at 35 or later (40 - 1.5 = 38.5) ...
        candidate(age=40, inflammatory_features=["night_waking", "buttock_pain", "arthritis"]),
        # ... and exactly 45 at onset (46.5 - 1.5).
        candidate(
            age=46,
            pain_duration_months=12,
            inflammatory_features=["night_waking", "buttock_pain", "nsaid_relief", "arthritis"],
        ),
    ],
)
def test_boundary_values_stay_candidate(facts: dict[str, Any]) -> None:
    assert evaluate(facts).verdict == "candidate"


def test_rapidly_progressive_is_emergency_but_slowly_progressive_is_refer() -> None:
    assert evaluate(candidate(red_flags=["progressive_weakness"])).verdict == "refer"
    both = evaluate(candidate(red_flags=["progressive_weakness", "rapidly_progressive_weakness"]))
    assert both.verdict == "emergency"
    assert [r.id for r in both.superseded] == ["redflag.progressive_weakness"]


# --- priority and superseded rules -------------------------------------------------------------


def test_red_flag_outranks_exclusions_and_they_are_kept_as_superseded() -> None:
    facts = with_finding("modic_type", 3)
    facts["red_flags"] = ["fever", "saddle_anesthesia"]
    facts["age"] = 16
    result = evaluate(facts)
    assert result.verdict == "emergency"
    assert fired_ids(result) == ["redflag.cauda_equina"]
    assert [r.id for r in result.superseded] == [
        "redflag.infection",
        "exclusion.modic_type_3",
        "candidacy.adult",
    ]
    assert [r.verdict for r in result.superseded] == ["refer", "not_candidate", "not_candidate"]


def test_exclusion_outranks_missing_information() -> None:
    result = evaluate({"findings": {"modic_type": 3}})
    assert result.verdict == "not_candidate"
    assert [r.id for r in result.superseded] == ["completeness.candidacy_facts"]
    # Only red flags and inflammatory back pain (whose rule also reads age and pain duration)
    # could still change a refusal (to refer or emergency).
    assert [m.fact for m in result.missing] == [
        "age",
        "pain_duration_months",
        "red_flags",
        "inflammatory_features",
    ]


def test_all_rules_of_the_deciding_verdict_are_listed_in_ruleset_order() -> None:
    facts = candidate(age=17, general_health="poor", understands_variable_results=False)
    facts["findings"]["severe_deformity"] = True
    result = evaluate(facts)
    assert fired_ids(result) == [
        "exclusion.severe_deformity",
        "candidacy.adult",
        "candidacy.general_health",
        "candidacy.understands_variable_results",
    ]


# --- missing facts -----------------------------------------------------------------------------


def test_empty_facts_need_every_candidacy_fact() -> None:
    result = evaluate({})
    assert result.verdict == "needs_more_information"
    ruleset = load_ruleset()
    in_schema_order = [s.path for s in ruleset.leaf_facts() if s.path in ruleset.required_facts]
    assert [m.fact for m in result.missing] == in_schema_order
    assert len(in_schema_order) == 20


def test_null_means_unknown() -> None:
    facts = candidate(age=None)
    facts["age"] = None
    facts["findings"]["modic_type"] = None
    result = evaluate(facts)
    assert result.verdict == "needs_more_information"
    assert [m.fact for m in result.missing] == ["age", "findings.modic_type"]


def test_empty_red_flag_list_is_a_known_answer() -> None:
    unknown = evaluate(candidate(red_flags=None))
    assert unknown.verdict == "needs_more_information"
    assert [m.fact for m in unknown.missing] == ["red_flags"]
    assert evaluate(candidate(red_flags=[])).verdict == "candidate"


def test_missing_question_is_plain_words() -> None:
    (missing,) = evaluate(candidate(red_flags=None)).missing
    assert missing.question.startswith("Do you have any of the warning signs")


# --- notes -------------------------------------------------------------------------------------


def note_ids(facts: dict[str, Any]) -> list[str]:
    return [note.id for note in evaluate(facts).notes]


NOTE_CASES: list[tuple[dict[str, Any], str]] = [
    (candidate(startback=[1, 1, 1, 1, 1, 1, 1, 1, 3]), "note.startback_high"),
    (candidate(startback=[1, 1, 1, 1, 1, 0, 0, 0, 0]), "note.startback_medium"),
    (candidate(age=76), "note.age_over_75"),
    (candidate(age=51), "note.age_over_50"),
    (candidate(pain_duration_months=5.5), "note.pain_duration_under_6_months"),
    (candidate(conservative_care_months=4), "note.conservative_care_under_6_months"),
    (with_finding("modified_pfirrmann_grade", 2), "note.pfirrmann_outside_trial_range"),
    (with_finding("modified_pfirrmann_grade", 8), "note.pfirrmann_outside_trial_range"),
    (with_finding("modic_type", 1), "note.modic_type_1_or_2"),
    (candidate(diagnoses=["degenerative_disc_disease", "sciatica"]), "note.diagnosis_radicular"),
    (candidate(diagnoses=["herniated_disc"]), "note.diagnosis_radicular"),
    (
        candidate(diagnoses=["degenerative_disc_disease", "spinal_stenosis"]),
        "note.diagnosis_spinal_stenosis",
    ),
    (
        candidate(diagnoses=["degenerative_disc_disease", "muscle_strain"]),
        "note.diagnosis_not_disc",
    ),
    (
        candidate(diagnoses=["degenerative_disc_disease", "facet_arthropathy"]),
        "note.diagnosis_not_disc",
    ),
    (with_finding("painful_disc_levels", 2), "note.two_levels"),
    (candidate(worse_pain="about_equal"), "note.leg_pain_about_equal"),
    (candidate(blood_thinners=True), "note.blood_thinners"),
    (candidate(bleeding_disorder=True), "note.bleeding_disorder"),
]


@pytest.mark.parametrize(("facts", "note"), NOTE_CASES)
def test_notes_fire_without_changing_the_verdict(facts: dict[str, Any], note: str) -> None:
    assert note in note_ids(facts)
    assert evaluate(facts).verdict == "candidate"


def test_every_note_has_a_case() -> None:
    assert {note for _, note in NOTE_CASES} == {note.id for note in load_ruleset().notes}


@pytest.mark.parametrize(
    ("facts", "note"),
    [
        (candidate(age=50), "note.age_over_50"),
        (candidate(age=75), "note.age_over_75"),
        (candidate(pain_duration_months=6), "note.pain_duration_under_6_months"),
        (candidate(pain_duration_months=2.9), "note.pain_duration_under_6_months"),
        (candidate(conservative_care_months=6), "note.conservative_care_under_6_months"),
        (with_finding("modified_pfirrmann_grade", 3), "note.pfirrmann_outside_trial_range"),
        (with_finding("modified_pfirrmann_grade", 7), "note.pfirrmann_outside_trial_range"),
        (candidate(startback=[1, 1, 0, 0, 0, 0, 0, 0, 4]), "note.startback_medium"),
    ],
)
def test_notes_do_not_fire_at_their_boundary(facts: dict[str, Any], note: str) -> None:
    assert note not in note_ids(facts)


# --- STarT Back --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([0, 0, 0, 0, 0, 0, 0, 0, 0], StartBackResult("low", 0, 0)),
        ([1, 1, 1, 0, 0, 0, 0, 0, 2], StartBackResult("low", 3, 0)),
        ([1, 1, 0, 0, 0, 0, 0, 0, 3], StartBackResult("low", 3, 1)),
        ([0, 0, 0, 0, 1, 1, 1, 0, 0], StartBackResult("low", 3, 3)),
        ([1, 0, 0, 0, 1, 1, 1, 0, 0], StartBackResult("medium", 4, 3)),
        ([1, 1, 1, 1, 1, 1, 1, 0, 2], StartBackResult("medium", 7, 3)),
        ([0, 0, 0, 0, 1, 1, 1, 0, 3], StartBackResult("high", 4, 4)),
        ([1, 1, 1, 1, 1, 1, 1, 1, 4], StartBackResult("high", 9, 5)),
    ],
)
def test_startback_risk_groups(answers: list[int], expected: StartBackResult) -> None:
    assert evaluate({"startback": answers}).startback == expected


def test_startback_is_none_without_answers() -> None:
    assert evaluate({}).startback is None
    assert evaluate({"startback": None}).startback is None


# --- result shape ------------------------------------------------------------------------------


def test_to_dict_shape_and_json_round_trip() -> None:
    result: dict[str, Any] = evaluate(example("emergency")).to_dict()
    assert list(result) == [
        "verdict",
        "summary",
        "fired",
        "superseded",
        "notes",
        "missing",
        "startback",
        "ruleset_id",
        "ruleset_version",
        "ruleset_effective",
    ]
    assert json.loads(json.dumps(result)) == result
    fired = result["fired"][0]
    assert fired == {
        "id": "redflag.cauda_equina",
        "category": "cauda_equina",
        "verdict": "emergency",
        "message": fired["message"],
        "clinician_message": fired["clinician_message"],
        "source": {"citation": fired["source"]["citation"], "certainty": "verified"},
        "evidence": {"red_flags": ["bladder_bowel_dysfunction", "saddle_anesthesia"]},
    }
    assert "verdict" not in result["notes"][0]
    assert result["startback"] == {"risk_group": "high", "total": 8, "subscale": 4}
    assert result["ruleset_id"] == "vertebra-screening"
    assert result["ruleset_version"] == load_ruleset().version


def test_result_is_frozen() -> None:
    result = evaluate({})
    with pytest.raises(AttributeError):
        result.verdict = "candidate"  # type: ignore[misc]


def test_every_verdict_has_a_summary() -> None:
    ruleset = load_ruleset()
    assert set(ruleset.verdicts) == set(VERDICTS)


def test_evaluate_does_not_modify_its_input() -> None:
    facts = example("not_candidate")
    before = copy.deepcopy(facts)
    evaluate(facts)
    assert facts == before


def test_screening_imports_nothing_from_the_shell() -> None:
    code = (
        "import sys, vertebra.core.screening as s; s.evaluate({}); "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('django', 'ninja', 'psycopg', 'sqlite3', 'requests', 'socket', 'http') "
        "or m.startswith(('vertebra.web', 'vertebra.cli', 'vertebra.settings'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_startback_agrees_with_the_instruments_package_for_every_response() -> None:
    from itertools import product

    from vertebra.core.instruments import score

    for answers in product(*[(0, 1)] * 8, range(5)):
        expected = score("startback", list(answers))
        got = evaluate({"startback": list(answers)}).startback
        assert got is not None
        assert (got.risk_group, got.total, got.subscale) == (
            expected.band,
            expected.score,
            expected.extras["psychosocial_subscale"],
        )


# --- issue 18: the cases named by the independent review ----------------------------------------


def test_no_diagnosis_and_no_imaging_is_never_a_candidate() -> None:
    """Before 3.0.0 this gave "candidate": every other fact known, no diagnosis, no imaging."""
    result = evaluate(candidate(diagnoses=None, imaging=None))
    assert result.verdict == "needs_more_information"
    assert [m.fact for m in result.missing] == ["diagnoses", "imaging"]
    assert [m.question for m in result.missing][1].startswith("Has an MRI scan")


def test_82_year_old_with_muscle_strain_only_is_not_a_candidate() -> None:
    result = evaluate(candidate(age=82, diagnoses=["muscle_strain"]))
    assert result.verdict == "not_candidate"
    assert fired_ids(result) == ["candidacy.no_treatable_cause"]
    assert result.fired[0].evidence == (("diagnoses", ("muscle_strain",)),)
    assert "note.age_over_75" in [n.id for n in result.notes]


def test_the_issue_example_with_only_age_and_diagnosis() -> None:
    """{"age": 82, "diagnoses": ["muscle_strain"]} alone: a refusal that says why."""
    result = evaluate({"age": 82, "diagnoses": ["muscle_strain"]})
    assert result.verdict == "not_candidate"
    assert fired_ids(result) == ["candidacy.no_treatable_cause"]
