"""Published evidence shown beside each arm of the decision aid.

The rows are data (``vertebra/data/decision/evidence.yaml``, versioned); every row cites one
source of the knowledge base's shared bibliography, so the page and the knowledge base can
never disagree about what a source is or whether Vertebra has verified it. Pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.decision.rules import DecisionRules
from vertebra.core.knowledge import CERTAINTY_LEVELS, KnowledgeBase, find_promising_language
from vertebra.core.yamltext import load_yaml

__all__ = [
    "FINDINGS",
    "KINDS",
    "EvidenceError",
    "EvidenceRow",
    "EvidenceSet",
    "load_evidence",
    "parse_evidence",
]

#: Study designs, most careful first (rows are shown in file order; the file lists controlled
#: results first).
KINDS: Mapping[str, str] = {
    "sham_controlled": "Trial against a sham (fake) procedure",
    "randomised": "Randomised trial",
    "review": "Review of studies",
    "guideline": "Guideline",
    "company_statement": "Company statement",
    "single_group": "Study without a comparison group",
}
#: What a row found about the treatment. ``no_difference`` rows are the negative results.
FINDINGS: tuple[str, ...] = ("no_difference", "benefit", "small_benefit", "not_checked", "context")
_ROW_KEYS = {
    "kind",
    "finding",
    "text",
    "number",
    "design",
    "source",
    "status",
    "certainty",
    "certainty_reason",
}


class EvidenceError(ValueError):
    """The evidence file breaks its contract; the message names every problem."""


@dataclass(frozen=True)
class EvidenceRow:
    """One published result, with its single source, verification status and certainty."""

    arm: str
    kind: str
    finding: str
    text: str
    number: str
    design: str
    source: str
    status: str
    certainty: str
    certainty_reason: str

    @property
    def verified(self) -> bool:
        """True when the number was read in the named source (status V)."""
        return self.status == "V"

    @property
    def kind_label(self) -> str:
        """The design in plain words."""
        return KINDS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind,
            "kind_label": self.kind_label,
            "finding": self.finding,
            "text": self.text,
            "number": self.number,
            "design": self.design,
            "source": self.source,
            "status": self.status,
            "verified": self.verified,
            "certainty": self.certainty,
            "certainty_reason": self.certainty_reason,
        }


@dataclass(frozen=True)
class EvidenceSet:
    """All rows, by arm id in the rule set's arm order."""

    version: str
    updated: dt.date
    rows: Mapping[str, tuple[EvidenceRow, ...]]

    def source_ids(self) -> tuple[str, ...]:
        """Every cited source id, in first-use order (arm order, then row order)."""
        seen: dict[str, None] = {}
        for rows in self.rows.values():
            for row in rows:
                seen.setdefault(row.source)
        return tuple(seen)


def _row(arm: str, i: int, raw: Any, kb: KnowledgeBase, problems: list[str]) -> EvidenceRow | None:
    """Parse and check one row; problems are appended as ``arms.<arm>[i]: ...``."""
    where = f"arms.{arm}[{i}]"
    if not isinstance(raw, Mapping) or set(raw) != _ROW_KEYS:
        got = sorted(raw) if isinstance(raw, Mapping) else raw
        problems.append(f"{where}: needs exactly the fields {sorted(_ROW_KEYS)}, got {got}")
        return None
    row = EvidenceRow(arm=arm, **{k: " ".join(str(raw[k]).split()) for k in _ROW_KEYS})
    if row.kind not in KINDS:
        problems.append(f"{where}: kind {row.kind!r} not in {sorted(KINDS)}")
    if row.finding not in FINDINGS:
        problems.append(f"{where}: finding {row.finding!r} not in {list(FINDINGS)}")
    if row.certainty not in CERTAINTY_LEVELS:
        problems.append(f"{where}: certainty {row.certainty!r} not in {list(CERTAINTY_LEVELS)}")
    if row.status not in ("V", "U"):
        problems.append(f"{where}: status must be V or U")
    source = kb.sources.get(row.source)
    if source is None:
        problems.append(f"{where}: source {row.source!r} is not in sources.yaml")
    elif not source.verified and row.status != "U":
        problems.append(f"{where}: source {row.source!r} is unverified, so the row must be U")
    if row.kind == "company_statement" and "company statement" not in row.text.lower():
        problems.append(f"{where}: a company statement must say so in its text")
    for field in (row.text, row.number, row.design, row.certainty_reason):
        for phrase in find_promising_language(field):
            problems.append(f"{where}: promising wording {phrase!r} is not allowed")
    return row


def parse_evidence(raw: Mapping[str, Any], rules: DecisionRules, kb: KnowledgeBase) -> EvidenceSet:
    """Build and check the evidence set: every arm of ``rules`` has at least one row, every
    row resolves its source in ``kb``; also checks the rule set's caveat sources.
    Raises EvidenceError listing every problem."""
    problems: list[str] = []
    arms = raw.get("arms") if isinstance(raw, Mapping) else None
    if not isinstance(arms, Mapping):
        raise EvidenceError("evidence: no `arms` mapping")
    known = [a.id for a in rules.arms]
    problems += [f"arms.{a}: not an arm of the rule set" for a in arms if a not in known]
    rows: dict[str, tuple[EvidenceRow, ...]] = {}
    for arm in known:
        items = arms.get(arm) or []
        if not items:
            problems.append(f"arms.{arm}: at least one evidence row is required")
        parsed = [_row(arm, i, item, kb, problems) for i, item in enumerate(items)]
        rows[arm] = tuple(r for r in parsed if r is not None)
    for caveat in rules.caveats:
        problems += [
            f"caveat {caveat.id}: source {s!r} is not in sources.yaml"
            for s in caveat.sources
            if s not in kb.sources
        ]
    for group in rules.arms:
        try:
            page = kb.get_page(group.learn)
        except KeyError:
            problems.append(f"arm {group.id}: knowledge-base page {group.learn!r} does not exist")
            continue
        if page.comparison is None:
            problems.append(f"arm {group.id}: page {group.learn!r} is not a treatment page")
    if problems:
        raise EvidenceError("evidence: " + "; ".join(problems))
    try:
        updated = dt.date.fromisoformat(str(raw["updated"]))
        version = str(raw["version"])
    except (KeyError, ValueError) as exc:
        raise EvidenceError(f"evidence: version/updated missing or malformed: {exc}") from None
    return EvidenceSet(version=version, updated=updated, rows=rows)


@cache
def _packaged() -> Any:
    text = files("vertebra").joinpath("data", "decision", "evidence.yaml")
    return load_yaml(text.read_text(encoding="utf-8"))


def load_evidence(rules: DecisionRules, kb: KnowledgeBase) -> EvidenceSet:
    """The packaged evidence set, checked against ``rules`` and the knowledge base ``kb``."""
    return parse_evidence(_packaged(), rules, kb)
