"""Screening for regenerative (stem cell) therapy of chronic low back pain: a pure rule engine.

``evaluate(facts)`` returns a :class:`ScreeningResult` with a verdict (emergency, refer,
not_candidate, needs_more_information, candidate), the rules that fired in plain words with their
sources, the facts still missing with the question to ask, the STarT Back risk group and the
rule-set version. The rules live in ``vertebra/data/screening/ruleset.yaml``; the algorithm and
every threshold are documented in ``docs/algorithms/screening.md``.
"""

from vertebra.core.screening.engine import evaluate
from vertebra.core.screening.facts import facts_json_schema, validate_facts
from vertebra.core.screening.model import (
    VERDICTS,
    FiredRule,
    InvalidFactsError,
    MissingFact,
    RulesetError,
    ScreeningResult,
    Source,
    StartBackResult,
    Verdict,
    VerdictSummary,
)
from vertebra.core.screening.ruleset import Ruleset, load_ruleset, parse_ruleset

__all__ = [
    "VERDICTS",
    "FiredRule",
    "InvalidFactsError",
    "MissingFact",
    "Ruleset",
    "RulesetError",
    "ScreeningResult",
    "Source",
    "StartBackResult",
    "Verdict",
    "VerdictSummary",
    "evaluate",
    "facts_json_schema",
    "load_ruleset",
    "parse_ruleset",
    "validate_facts",
]
