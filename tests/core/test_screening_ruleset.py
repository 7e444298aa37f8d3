"""The rule set as data: content checks, threshold changes without code, refused inconsistencies."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from vertebra.core.knowledge import find_promising_language
from vertebra.core.screening import (
    VERDICTS,
    RulesetError,
    evaluate,
    load_ruleset,
    parse_ruleset,
)
from vertebra.core.screening.conditions import ContainsAny

Raw = dict[str, Any]


def raw_ruleset() -> Raw:
    """A fresh copy of the packaged rule set as plain YAML data."""
    text = resources.files("vertebra").joinpath("data", "screening", "ruleset.yaml").read_text()
    data: Raw = yaml.safe_load(text)
    return data


def rule(raw: Raw, rule_id: str) -> Raw:
    found: Raw = next(r for r in raw["rules"] + raw["notes"] if r["id"] == rule_id)
    return found


# --- content -----------------------------------------------------------------------------------


def test_identity_and_version() -> None:
    ruleset = load_ruleset()
    assert ruleset.id == "vertebra-screening"
    assert re.fullmatch(r"\d+\.\d+\.\d+", ruleset.version)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", ruleset.effective)


def test_red_flag_catalogue() -> None:
    flags = {flag.id: flag for flag in load_ruleset().red_flags}
    emergency = {i for i, f in flags.items() if f.urgency == "emergency"}
    assert emergency == {
        "bladder_bowel_dysfunction",
        "saddle_anesthesia",
        "bilateral_leg_weakness",
        "new_sexual_dysfunction",
        "rapidly_progressive_weakness",
    }
    assert {
        "cancer_history",
        "unexplained_weight_loss",
        "fever",
        "iv_drug_use",
        "immunosuppression",
        "significant_trauma",
        "osteoporosis",
        "prolonged_steroid_use",
        "progressive_weakness",
    } <= set(flags) - emergency
    assert {f.category for f in flags.values()} == {
        "cauda_equina",
        "malignancy",
        "infection",
        "fracture",
        "neuro",
    }
    assert all(f.label for f in flags.values())


def test_six_causes() -> None:
    assert [d.id for d in load_ruleset().diagnoses] == [
        "degenerative_disc_disease",
        "herniated_disc",
        "facet_arthropathy",
        "sciatica",
        "muscle_strain",
        "spinal_stenosis",
    ]


def test_every_rule_has_messages_and_a_source() -> None:
    ruleset = load_ruleset()
    for item in (*ruleset.rules, *ruleset.notes):
        assert item.message and item.clinician_message, item.id
        assert item.source.citation and item.source.certainty in {
            "verified",
            "unverified",
            "policy",
        }


def test_every_verdict_has_next_steps() -> None:
    verdicts = load_ruleset().verdicts
    assert set(verdicts) == set(VERDICTS)
    for verdict, summary in verdicts.items():
        assert summary.next_steps, verdict
        assert all(step and step == " ".join(step.split()) for step in summary.next_steps)
    # The emergency steps lead with going to the emergency department, nothing else first.
    assert "emergency department" in verdicts["emergency"].next_steps[0]


def test_next_steps_pass_the_knowledge_base_promise_check() -> None:
    for verdict, summary in load_ruleset().verdicts.items():
        for step in summary.next_steps:
            assert find_promising_language(step) == [], (verdict, step)


PROMISES = re.compile(r"\b(will (help|cure|fix|heal|work)|cures?|guarantee|proven|regrow)\b", re.I)


def _patient_texts() -> dict[str, str]:
    """Every patient-facing text of the rule set: rule and note messages, verdict messages and
    each verdict's next steps, keyed by where they come from."""
    ruleset = load_ruleset()
    texts = {item.id: item.message for item in (*ruleset.rules, *ruleset.notes)}
    for verdict, summary in ruleset.verdicts.items():
        texts[verdict] = summary.message
        texts.update({f"{verdict}.next_steps[{i}]": s for i, s in enumerate(summary.next_steps)})
    return texts


def test_patient_messages_never_promise_benefit() -> None:
    for text in _patient_texts().values():
        # "does not mean the treatment will help you" is the honest negation, not a promise.
        assert not PROMISES.search(text.replace("does not mean the treatment will help", "")), text


def _longest_sentence(text: str) -> int:
    return max(len(sentence.split()) for sentence in re.split(r"(?<=[.!?])\s+", text))


def test_patient_messages_use_short_sentences() -> None:
    # A rough reading-age guard (about 12 years): no sentence longer than 25 words.
    for name, text in _patient_texts().items():
        assert _longest_sentence(text) <= 25, name


# --- thresholds are data -----------------------------------------------------------------------


def test_changing_a_threshold_is_a_data_change() -> None:
    facts = {"pain_duration_months": 4}
    assert evaluate(facts).verdict == "needs_more_information"
    raw = raw_ruleset()
    rule(raw, "candidacy.chronic_pain")["when"]["value"] = 6
    raw["version"] = "1.1.0-test"
    stricter = parse_ruleset(raw)
    result = evaluate(facts, stricter)
    assert result.verdict == "not_candidate"
    assert [r.id for r in result.fired] == ["candidacy.chronic_pain"]
    assert result.ruleset_version == "1.1.0-test"


def test_moving_a_red_flag_to_emergency_is_a_data_change() -> None:
    raw = raw_ruleset()
    rule(raw, "redflag.infection")["when"]["contains_any"].remove("fever")
    rule(raw, "redflag.cauda_equina")["when"]["contains_any"].append("fever")
    next(f for f in raw["red_flags"] if f["id"] == "fever")["urgency"] = "emergency"
    assert evaluate({"red_flags": ["fever"]}, parse_ruleset(raw)).verdict == "emergency"


def test_packaged_rules_route_red_flags_through_contains_any() -> None:
    for item in load_ruleset().rules:
        if item.category in {"cauda_equina", "malignancy", "infection", "fracture", "neuro"}:
            assert isinstance(item.when, ContainsAny)


# --- inconsistent rule sets are refused ---------------------------------------------------------


def _drop_flag_from_rules(raw: Raw) -> None:
    rule(raw, "redflag.cauda_equina")["when"]["contains_any"].remove("saddle_anesthesia")


def _route_emergency_flag_to_refer(raw: Raw) -> None:
    _drop_flag_from_rules(raw)
    rule(raw, "redflag.infection")["when"]["contains_any"].append("saddle_anesthesia")


def _list_flag_twice(raw: Raw) -> None:
    rule(raw, "redflag.infection")["when"]["contains_any"].append("saddle_anesthesia")


def _drop_required_fact(raw: Raw) -> None:
    rule(raw, "completeness.candidacy_facts")["when"]["unknown_any"].remove("findings.modic_type")


def _unknown_fact(raw: Raw) -> None:
    rule(raw, "candidacy.adult")["when"]["fact"] = "ages"


def _bad_operator(raw: Raw) -> None:
    rule(raw, "candidacy.adult")["when"]["op"] = "lessthan"


def _ordering_on_boolean(raw: Raw) -> None:
    rule(raw, "candidacy.general_health")["when"] = {
        "fact": "wants_to_avoid_surgery",
        "op": "lt",
        "value": True,
    }


def _int_for_boolean(raw: Raw) -> None:
    rule(raw, "exclusion.severe_deformity")["when"]["value"] = 1


def _enum_value_unknown(raw: Raw) -> None:
    rule(raw, "candidacy.general_health")["when"]["value"] = "bad"


def _unknown_catalogue_id(raw: Raw) -> None:
    rule(raw, "redflag.infection")["when"]["contains_any"].append("sneezing")


def _candidate_as_rule_verdict(raw: Raw) -> None:
    rule(raw, "candidacy.adult")["verdict"] = "candidate"


def _note_with_verdict(raw: Raw) -> None:
    rule(raw, "note.age_over_75")["verdict"] = "refer"


def _duplicate_rule_id(raw: Raw) -> None:
    raw["rules"].append(copy.deepcopy(rule(raw, "candidacy.adult")))


def _missing_source(raw: Raw) -> None:
    del rule(raw, "candidacy.adult")["source"]


def _bad_certainty(raw: Raw) -> None:
    rule(raw, "candidacy.adult")["source"]["certainty"] = "probably"


def _missing_verdict_summary(raw: Raw) -> None:
    del raw["verdicts"]["refer"]


def _missing_next_steps(raw: Raw) -> None:
    del raw["verdicts"]["candidate"]["next_steps"]


def _empty_next_steps(raw: Raw) -> None:
    raw["verdicts"]["refer"]["next_steps"] = []


def _blank_next_step(raw: Raw) -> None:
    raw["verdicts"]["emergency"]["next_steps"].append("  ")


def _non_text_next_step(raw: Raw) -> None:
    raw["verdicts"]["emergency"]["next_steps"][0] = {"text": "Go now"}


def _bad_red_flag_category(raw: Raw) -> None:
    raw["red_flags"][0]["category"] = "scary"


def _unknown_condition_form(raw: Raw) -> None:
    rule(raw, "candidacy.adult")["when"] = {"fact": "age", "below": 18}


def _unknown_fact_type(raw: Raw) -> None:
    raw["facts"][0]["type"] = "date"


def _derived_fact_in_unknown_any(raw: Raw) -> None:
    rule(raw, "completeness.candidacy_facts")["when"]["unknown_any"].append("startback_risk")


def _duplicate_fact(raw: Raw) -> None:
    raw["facts"].append(copy.deepcopy(raw["facts"][0]))


def _duplicate_red_flag(raw: Raw) -> None:
    raw["red_flags"].append(copy.deepcopy(raw["red_flags"][0]))


def _bad_effective_date(raw: Raw) -> None:
    raw["effective"] = "soon"


@pytest.mark.parametrize(
    ("breaks", "fragment"),
    [
        (_drop_flag_from_rules, "red flag 'saddle_anesthesia' must be listed by exactly one rule"),
        (_route_emergency_flag_to_refer, "with verdict 'emergency'"),
        (_list_flag_twice, "exactly one rule"),
        (_drop_required_fact, "findings.modic_type must be listed"),
        (_unknown_fact, "unknown fact 'ages'"),
        (_bad_operator, "op must be one of"),
        (_ordering_on_boolean, "needs a numeric fact"),
        (_int_for_boolean, "value 1 does not fit fact 'findings.severe_deformity'"),
        (_enum_value_unknown, "value 'bad' does not fit"),
        (_unknown_catalogue_id, "ids from the red_flags catalogue"),
        (_candidate_as_rule_verdict, "verdict must be one of"),
        (_note_with_verdict, "notes never carry a verdict"),
        (_duplicate_rule_id, "duplicate rule ids: candidacy.adult"),
        (_missing_source, "expected a mapping"),
        (_bad_certainty, "certainty must be one of"),
        (_missing_verdict_summary, "verdicts: need exactly"),
        (_missing_next_steps, "verdicts.candidate: 'next_steps' must be a non-empty list"),
        (_empty_next_steps, "verdicts.refer: 'next_steps' must be a non-empty list"),
        (_blank_next_step, "verdicts.emergency.next_steps[3]: must be a non-empty string"),
        (_non_text_next_step, "verdicts.emergency.next_steps[0]: must be a non-empty string"),
        (_bad_red_flag_category, "category must be one of"),
        (_unknown_condition_form, "unknown condition form"),
        (_unknown_fact_type, "type must be one of"),
        (_derived_fact_in_unknown_any, "derived fact 'startback_risk'"),
        (_bad_effective_date, "'effective' must be a date"),
        (_duplicate_fact, "duplicate fact ids: age"),
        (_duplicate_red_flag, "duplicate red flag ids: bladder_bowel_dysfunction"),
    ],
)
def test_inconsistent_rule_sets_are_refused(breaks: Callable[[Raw], None], fragment: str) -> None:
    raw = raw_ruleset()
    breaks(raw)
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(raw)
    assert fragment in str(caught.value)


def test_a_rule_set_must_be_a_mapping() -> None:
    with pytest.raises(RulesetError):
        parse_ruleset(["not", "a", "mapping"])


def test_the_algorithm_document_covers_every_rule_and_red_flag() -> None:
    doc_path = Path(__file__).resolve().parents[2] / "docs" / "algorithms" / "screening.md"
    doc = doc_path.read_text(encoding="utf-8")
    ruleset = load_ruleset()
    for item in (*ruleset.rules, *ruleset.notes):
        assert f"`{item.id}`" in doc, item.id
    for flag in ruleset.red_flags:
        assert f"`{flag.id}`" in doc, flag.id
    assert f"`{ruleset.id}` {ruleset.version}" in doc
