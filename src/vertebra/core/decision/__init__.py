"""Decision aid, "patients like you" (pure: no Django, no database, no network, no clock).

For a person's profile (condition, age, optional baseline ODI and STarT Back group), what
happened at 12 months to similar patients of the registry in each treatment arm, with honest
uncertainty and only where enough patients exist; beside it, the published evidence. The
registry figures are observational and never rank the arms.

    rules = decision_rules()                               # vertebra/data/decision/rules.yaml
    cells = build_cell_table(tables, as_of, rules)         # leaf sums from the analysis tables
    result = estimate(cells, Profile("sciatica", 52), rules)
    evidence = load_evidence(rules, load_knowledge_base()) # vertebra/data/decision/evidence.yaml

See docs/algorithms/decision-aid.md for the similarity rule, the minimum cell size and why,
the statistics with a worked example, and the caveats.
"""

from vertebra.core.decision.cells import KEYS, SUMS, UNKNOWN, CellTable, build_cell_table
from vertebra.core.decision.estimate import (
    ArmEstimate,
    DecisionResult,
    Profile,
    ProfileError,
    conditions,
    estimate,
)
from vertebra.core.decision.evidence import (
    FINDINGS,
    KINDS,
    EvidenceError,
    EvidenceRow,
    EvidenceSet,
    load_evidence,
    parse_evidence,
)
from vertebra.core.decision.rules import (
    AgeBand,
    ArmGroup,
    Caveat,
    DecisionRules,
    DecisionRulesError,
    OdiBand,
    decision_rules,
    parse_rules,
)
from vertebra.core.decision.widening import Level, path_keys, publishable

__all__ = [
    "FINDINGS",
    "KEYS",
    "KINDS",
    "SUMS",
    "UNKNOWN",
    "AgeBand",
    "ArmEstimate",
    "ArmGroup",
    "Caveat",
    "CellTable",
    "DecisionResult",
    "DecisionRules",
    "DecisionRulesError",
    "EvidenceError",
    "EvidenceRow",
    "EvidenceSet",
    "Level",
    "OdiBand",
    "Profile",
    "ProfileError",
    "build_cell_table",
    "conditions",
    "decision_rules",
    "estimate",
    "load_evidence",
    "parse_evidence",
    "parse_rules",
    "path_keys",
    "publishable",
]
