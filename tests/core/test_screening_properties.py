"""Property tests of the screening engine over any valid facts (strategies from the schema)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.screening import (
    VERDICTS,
    InvalidFactsError,
    evaluate,
    load_ruleset,
    validate_facts,
)
from vertebra.core.screening.ruleset import FactSpec

RULESET = load_ruleset()
EMERGENCY_FLAGS = RULESET.emergency_flags()
RED_FLAGS = RULESET.catalogue_ids("red_flags")
URGENCY = {flag.id: flag.urgency for flag in RULESET.red_flags}
REQUIRED = set(RULESET.required_facts)
LEAVES = [spec for spec in RULESET.leaf_facts() if not spec.derived]
INPUT_KEYS = {spec.key for spec in RULESET.facts if not spec.derived}


def value_strategy(spec: FactSpec) -> st.SearchStrategy[Any]:
    """Valid values of one leaf fact, taken from the rule set's schema."""
    low = spec.minimum
    high = spec.maximum
    if spec.type == "integer":
        return st.integers(int(low or 0), int(high if high is not None else 1000))
    if spec.type == "number":
        top = high if high is not None else 600.0
        return st.integers(int(low or 0), int(top)) | st.floats(
            low or 0.0, top, allow_nan=False, allow_infinity=False
        )
    if spec.type == "boolean":
        return st.booleans()
    if spec.type == "enum":
        return st.sampled_from(spec.values)
    if spec.type == "id_list":
        return st.lists(st.sampled_from(RULESET.catalogue_ids(spec.catalogue or "")), unique=True)
    if spec.type == "startback_answers":
        return st.tuples(*[st.integers(0, 1)] * 8, st.integers(0, 4)).map(list)
    raise AssertionError(spec.type)


def set_path(facts: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of ``facts`` with the fact at ``path`` set to ``value``."""
    out = copy.deepcopy(facts)
    if "." in path:
        parent, key = path.split(".", 1)
        if not isinstance(out.get(parent), dict):
            out[parent] = {}
        out[parent][key] = value
    else:
        out[path] = value
    return out


@st.composite
def facts_strategy(draw: st.DrawFn) -> dict[str, Any]:
    """Any valid facts: each leaf absent, null or a valid value."""
    facts: dict[str, Any] = {}
    for spec in LEAVES:
        choice = draw(st.sampled_from(["absent", "null", "value", "value"]))
        if choice == "absent":
            continue
        value = None if choice == "null" else draw(value_strategy(spec))
        facts = set_path(facts, spec.path, value)
    return facts


CANDIDATE: dict[str, Any] = {
    "age": 52,
    "pain_duration_months": 18,
    "conservative_care_months": 9,
    "conservative_care_failed": True,
    "wants_to_avoid_surgery": True,
    "general_health": "good",
    "understands_variable_results": True,
    "red_flags": [],
    "diagnoses": ["degenerative_disc_disease"],
    "imaging": "confirms_disc_cause",
    "worse_pain": "back",
    "inflammatory_features": [],
    "pregnancy": False,
    "findings": {
        "painful_disc_levels": 1,
        "severe_deformity": False,
        "advanced_bone_spurs": False,
        "needs_surgical_correction": False,
        "spondylolisthesis_grade": 0,
        "modic_type": 0,
        "prior_surgery_at_level": False,
    },
}


@st.composite
def near_candidate(draw: st.DrawFn) -> dict[str, Any]:
    """A complete candidate with a few facts removed, nulled or changed: reaches every verdict."""
    facts = copy.deepcopy(CANDIDATE)
    for spec in draw(st.lists(st.sampled_from(LEAVES), max_size=3, unique=True)):
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "absent":
            facts.pop(spec.path, None)
            if "." in spec.path:
                facts["findings"].pop(spec.key, None)
        else:
            value = None if choice == "null" else draw(value_strategy(spec))
            facts = set_path(facts, spec.path, value)
    return facts


def any_facts() -> st.SearchStrategy[dict[str, Any]]:
    """Arbitrary valid facts, half of them close to a candidate."""
    return st.one_of(facts_strategy(), near_candidate())


@st.composite
def facts_with_flag(draw: st.DrawFn, flags: tuple[str, ...]) -> dict[str, Any]:
    """Valid facts whose red flags include at least one of ``flags``."""
    facts = draw(any_facts())
    present = facts.get("red_flags") or []
    flag = draw(st.sampled_from(flags))
    return {**facts, "red_flags": [*present, flag] if flag not in present else present}


def known_paths(facts: dict[str, Any]) -> set[str]:
    return set(validate_facts(facts, RULESET))


@settings(max_examples=300)
@given(facts_with_flag(EMERGENCY_FLAGS))
def test_any_emergency_red_flag_gives_emergency(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    assert result.verdict == "emergency"
    assert result.missing == ()


@settings(max_examples=300)
@given(facts_with_flag(RED_FLAGS))
def test_a_red_flag_beats_everything_else(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    most_urgent = min((URGENCY[f] for f in facts["red_flags"]), key=VERDICTS.index)
    assert result.verdict == most_urgent
    assert all(rule.category != "exclusion" for rule in result.fired)


@settings(max_examples=300)
@given(any_facts())
def test_without_red_flags_the_verdict_is_never_urgent(facts: dict[str, Any]) -> None:
    # Since 3.0.0 the one urgent verdict without a red flag is the inflammatory back pain
    # referral (NICE NG65), and it needs its features to be known.
    facts["red_flags"] = []
    result = evaluate(facts)
    assert result.verdict != "emergency"
    if result.verdict == "refer":
        assert [r.id for r in result.fired] == ["refer.inflammatory_back_pain"]
    facts["inflammatory_features"] = []
    assert evaluate(facts).verdict not in {"emergency", "refer"}


@settings(max_examples=300)
@given(facts_with_flag(EMERGENCY_FLAGS), st.data())
def test_adding_a_missing_fact_never_undoes_an_emergency(
    facts: dict[str, Any], data: st.DataObject
) -> None:
    unknown = [spec for spec in LEAVES if spec.path not in known_paths(facts)]
    for spec in data.draw(st.lists(st.sampled_from(unknown), unique=True)) if unknown else []:
        facts = set_path(facts, spec.path, data.draw(value_strategy(spec)))
        assert evaluate(facts).verdict == "emergency"


@settings(max_examples=500)
@given(any_facts(), st.data())
def test_only_missing_facts_can_change_the_verdict(
    facts: dict[str, Any], data: st.DataObject
) -> None:
    # `missing` is complete: learning any unknown fact it does not list leaves the verdict as is.
    result = evaluate(facts)
    listed = {m.fact for m in result.missing}
    unlisted = [s for s in LEAVES if s.path not in known_paths(facts) and s.path not in listed]
    if not unlisted:
        return
    spec = data.draw(st.sampled_from(unlisted))
    changed = set_path(facts, spec.path, data.draw(value_strategy(spec)))
    assert evaluate(changed).verdict == result.verdict


@settings(max_examples=500)
@given(any_facts())
def test_candidate_only_when_every_candidacy_fact_is_known(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    if result.verdict == "candidate":
        assert known_paths(facts) >= REQUIRED
        assert result.missing == ()
        assert result.fired == ()
        assert facts["red_flags"] == []


@settings(max_examples=300)
@given(any_facts())
def test_missing_facts_are_unknown_and_only_for_open_verdicts(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    assert not {m.fact for m in result.missing} & known_paths(facts)
    if result.verdict in {"emergency", "candidate"}:
        assert result.missing == ()
    if result.verdict == "refer":
        # Only the red flags could still make it an emergency (a referral for inflammatory
        # back pain may be given before they are known).
        assert {m.fact for m in result.missing} <= {"red_flags"}
    if result.verdict == "needs_more_information":
        assert {m.fact for m in result.missing} == REQUIRED - known_paths(facts)


@settings(max_examples=200)
@given(any_facts())
def test_evaluate_is_deterministic(facts: dict[str, Any]) -> None:
    first = evaluate(facts)
    again = evaluate(copy.deepcopy(facts))
    assert first == again
    assert first.to_dict() == again.to_dict()


@settings(max_examples=200)
@given(any_facts(), st.randoms(use_true_random=False))
def test_order_of_list_facts_does_not_change_the_verdict(facts: dict[str, Any], rnd: Any) -> None:
    shuffled = copy.deepcopy(facts)
    for key in ("red_flags", "diagnoses"):
        if isinstance(shuffled.get(key), list):
            rnd.shuffle(shuffled[key])
    first, second = evaluate(facts), evaluate(shuffled)
    assert first.verdict == second.verdict
    assert [r.id for r in first.fired] == [r.id for r in second.fired]


@settings(max_examples=200)
@given(
    facts_strategy(),
    st.text(min_size=1, max_size=20).filter(lambda key: key not in INPUT_KEYS),
    st.none() | st.integers() | st.text() | st.booleans(),
)
def test_unknown_keys_are_rejected(facts: dict[str, Any], key: str, value: Any) -> None:
    facts[key] = value
    try:
        evaluate(facts)
    except InvalidFactsError as error:
        assert error.path == key
    else:
        raise AssertionError(f"unknown key {key!r} was accepted")


@settings(max_examples=200)
@given(any_facts())
def test_verdict_is_the_most_urgent_fired_rule(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    assert all(rule.verdict == result.verdict for rule in result.fired)
    assert all(
        VERDICTS.index(rule.verdict or "candidate") > VERDICTS.index(result.verdict)
        for rule in result.superseded
    )
    assert (result.verdict == "candidate") == (not result.fired)


# --- Pfirrmann scale (ADR 0006) ----------------------------------------------------------------

MODIFIED_PFIRRMANN = "findings.modified_pfirrmann_grade"
#: Disc-grade range most trials enrolled, on the modified scale (reference/clinical.md 3b).
TRIAL_RANGE = range(3, 8)


def without_modified_pfirrmann(facts: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``facts`` with the modified Pfirrmann grade unknown."""
    out = copy.deepcopy(facts)
    if isinstance(out.get("findings"), dict):
        out["findings"].pop("modified_pfirrmann_grade", None)
    return out


@settings(max_examples=300)
@given(any_facts(), st.integers(1, 8))
def test_the_modified_pfirrmann_grade_only_ever_adds_a_note(
    facts: dict[str, Any], grade: int
) -> None:
    base = without_modified_pfirrmann(facts)
    graded = set_path(base, MODIFIED_PFIRRMANN, grade)
    before, after = evaluate(base), evaluate(graded)
    assert after.verdict == before.verdict
    assert [r.id for r in after.fired] == [r.id for r in before.fired]
    noted = "note.pfirrmann_outside_trial_range" in {n.id for n in after.notes}
    assert noted == (grade not in TRIAL_RANGE)


@settings(max_examples=200)
@given(any_facts(), st.integers(1, 5))
def test_a_classic_pfirrmann_grade_is_refused_never_read_as_modified(
    facts: dict[str, Any], grade: int
) -> None:
    # `pfirrmann_grade` is the registry's classic 1-5 scale; the engine must not take it for a
    # modified grade (classic 4 is not modified 4), so the key is unknown and refused.
    facts = set_path(facts, "findings.pfirrmann_grade", grade)
    try:
        evaluate(facts)
    except InvalidFactsError as error:
        assert error.path == "findings.pfirrmann_grade"
        assert "modified_pfirrmann_grade" in str(error)
    else:
        raise AssertionError("a classic Pfirrmann grade was accepted")


@settings(max_examples=200)
@given(any_facts())
def test_every_result_carries_the_next_steps_of_its_verdict(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    assert result.summary.next_steps
    assert result.summary == RULESET.verdicts[result.verdict]
    assert result.to_dict()["summary"]["next_steps"] == list(result.summary.next_steps)


# --- issue 18: candidacy needs an imaging-confirmed, treatable cause -----------------------------

TREATABLE = {"degenerative_disc_disease", "herniated_disc"}


@settings(max_examples=300)
@given(any_facts())
def test_no_candidate_without_an_imaging_confirmed_disc_diagnosis(facts: dict[str, Any]) -> None:
    result = evaluate(facts)
    if result.verdict == "candidate":
        assert set(facts["diagnoses"]) & TREATABLE
        assert facts["imaging"] == "confirms_disc_cause"
        assert facts["worse_pain"] != "leg"
        assert facts["pregnancy"] is False
        assert facts["findings"]["painful_disc_levels"] <= 2
        assert facts["inflammatory_features"] is not None


@settings(max_examples=200)
@given(any_facts(), st.sampled_from(["absent", "empty", "none", "not_confirming", "other_cause"]))
def test_missing_or_unconfirmed_cause_is_never_a_candidate(facts: dict[str, Any], how: str) -> None:
    """Whatever else is known, taking the confirmed cause away rules out `candidate`; "not yet"
    (no diagnosis, no MRI) asks for more information unless something more urgent fired."""
    if how == "absent":
        facts = {**facts, "diagnoses": None}
    elif how == "empty":
        facts = {**facts, "diagnoses": []}
    elif how == "none":
        facts = {**facts, "imaging": "none"}
    elif how == "not_confirming":
        facts = {**facts, "imaging": "does_not_confirm"}
    else:
        facts = {**facts, "diagnoses": ["muscle_strain", "facet_arthropathy"]}
    verdict = evaluate(facts).verdict
    assert verdict != "candidate"
    if how in ("not_confirming", "other_cause"):
        assert verdict in {"emergency", "refer", "not_candidate"}


@settings(max_examples=150)
@given(near_candidate(), st.sampled_from(RED_FLAGS))
def test_red_flags_win_over_every_new_rule(facts: dict[str, Any], flag: str) -> None:
    """A red flag beats the 3.0.0 exclusions and "needs more information" alike."""
    facts = {
        **facts,
        "red_flags": [flag],
        "pregnancy": True,
        "worse_pain": "leg",
        "imaging": "none",
        "diagnoses": [],
    }
    result = evaluate(facts)
    assert result.verdict == URGENCY[flag]
    # Only referrals of the same urgency sit beside it (the inflammatory back pain referral
    # may fire too); every 3.0.0 exclusion and "needs more information" is superseded.
    assert any(rule.id.startswith("redflag.") for rule in result.fired)
    assert all(rule.verdict == URGENCY[flag] for rule in result.fired)
    superseded = {rule.id for rule in result.superseded}
    assert {"exclusion.pregnancy", "exclusion.leg_pain_dominant"} <= superseded
