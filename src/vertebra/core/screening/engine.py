"""Evaluate facts against the rule set: the verdict, the rules that fired and what is missing.

The engine is generic: it knows the verdict priority and the STarT Back derived fact, and reads
everything else (thresholds, red flags, messages, which facts are required) from the rule set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vertebra.core.screening.facts import validate_facts
from vertebra.core.screening.model import (
    FiredRule,
    MissingFact,
    ScreeningResult,
    StartBackResult,
    Verdict,
    verdict_rank,
)
from vertebra.core.screening.ruleset import DERIVED_INPUTS, Rule, Ruleset, load_ruleset
from vertebra.core.screening.startback import startback_risk

STARTBACK_FACT = "startback"
STARTBACK_RISK_FACT = "startback_risk"
ONSET_AGE_FACT = "pain_onset_age"
MONTHS_PER_YEAR = 12


def evaluate(facts: Mapping[str, object], ruleset: Ruleset | None = None) -> ScreeningResult:
    """Screen one person for regenerative therapy of chronic low back pain.

    ``facts`` follows the rule set's facts schema (see :func:`facts_json_schema`); every fact is
    optional and an absent or ``null`` fact is unknown. ``ruleset`` defaults to the packaged rule
    set. The result is a pure function of ``facts`` and ``ruleset``.

    The verdict is the most urgent one among the fired rules (emergency > refer > not_candidate >
    needs_more_information), or ``candidate`` when none fired. Raises
    :class:`InvalidFactsError` for unknown keys, wrong types or out-of-range values.
    """
    ruleset = ruleset or load_ruleset()
    known = validate_facts(facts, ruleset)
    startback = _startback(known)
    if startback is not None:
        known[STARTBACK_RISK_FACT] = startback.risk_group
    onset = _onset_age(known)
    if onset is not None:
        known[ONSET_AGE_FACT] = onset
    fired = _fire(ruleset.rules, known)
    verdict = _verdict(fired)
    return ScreeningResult(
        verdict=verdict,
        summary=ruleset.verdicts[verdict],
        fired=tuple(rule for rule in fired if rule.verdict == verdict),
        # A stable sort keeps rule-set order within each verdict.
        superseded=tuple(
            sorted(
                (rule for rule in fired if rule.verdict != verdict),
                key=lambda rule: verdict_rank(rule.verdict or "candidate"),
            )
        ),
        notes=_fire(ruleset.notes, known),
        missing=_missing(ruleset, known, verdict),
        startback=startback,
        ruleset_id=ruleset.id,
        ruleset_version=ruleset.version,
        ruleset_effective=ruleset.effective,
    )


def _startback(known: Mapping[str, object]) -> StartBackResult | None:
    """Score STarT Back when its 9 answers are known (the validator guarantees their shape)."""
    answers = known.get(STARTBACK_FACT)
    return startback_risk(answers) if isinstance(answers, tuple) else None


def _onset_age(known: Mapping[str, object]) -> float | None:
    """Age when the back pain started: age minus its duration in years, when both are known.

    Used by the inflammatory back pain rule (NICE NG65 asks whether the pain started before
    age 45).
    """
    age, months = known.get("age"), known.get("pain_duration_months")
    if not isinstance(age, int | float) or not isinstance(months, int | float):
        return None
    return age - months / MONTHS_PER_YEAR


def _fire(rules: Iterable[Rule], known: Mapping[str, object]) -> tuple[FiredRule, ...]:
    """Return the rules whose condition holds, in rule-set order, with their evidence."""
    fired: list[FiredRule] = []
    for rule in rules:
        evidence = rule.when.holds(known)
        if evidence is not None:
            fired.append(
                FiredRule(
                    id=rule.id,
                    category=rule.category,
                    verdict=rule.verdict,
                    message=rule.message,
                    clinician_message=rule.clinician_message,
                    source=rule.source,
                    evidence=evidence,
                )
            )
    return tuple(fired)


def _verdict(fired: Iterable[FiredRule]) -> Verdict:
    """The most urgent verdict among the fired rules; ``candidate`` when none fired."""
    verdicts = [rule.verdict for rule in fired if rule.verdict is not None]
    return min(verdicts, key=verdict_rank, default="candidate")


def _missing(
    ruleset: Ruleset, known: Mapping[str, object], verdict: Verdict
) -> tuple[MissingFact, ...]:
    """Unknown facts whose answer could change ``verdict``, in schema order.

    A fact qualifies when a more urgent rule inspects its value (learning it could fire that
    rule), or, for ``needs_more_information``, when candidacy requires it (learning it could
    give ``candidate`` or ``not_candidate``). So an emergency has nothing missing, and a refusal
    only lists unknown red flags.
    """
    rank = verdict_rank(verdict)
    relevant: set[str] = set()
    for rule in ruleset.rules:
        if rule.verdict is not None and verdict_rank(rule.verdict) < rank:
            # A derived fact (e.g. the age the pain started) is learnt through its inputs.
            for path in rule.when.value_facts():
                relevant.update(DERIVED_INPUTS.get(path, (path,)))
    if verdict == "needs_more_information":
        relevant.update(ruleset.required_facts)
    return tuple(
        MissingFact(spec.path, spec.label, spec.question)
        for spec in ruleset.leaf_facts()
        if spec.path in relevant and spec.path not in known and not spec.derived
    )
