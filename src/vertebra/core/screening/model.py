"""Value types of the screening engine: verdicts, fired rules, missing facts and the result.

All types are frozen dataclasses so a result can be cached, compared and stored as-is; sequences
are tuples for the same reason. ``to_dict()`` gives the JSON-ready shape that the CLI prints and
the web API returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["emergency", "refer", "not_candidate", "needs_more_information", "candidate"]

#: Verdicts from the most to the least urgent. The engine returns the first verdict in this order
#: that any fired rule carries; ``candidate`` is what remains when no rule fires.
VERDICTS: tuple[Verdict, ...] = (
    "emergency",
    "refer",
    "not_candidate",
    "needs_more_information",
    "candidate",
)

Certainty = Literal["verified", "unverified", "policy"]
CERTAINTIES: tuple[Certainty, ...] = ("verified", "unverified", "policy")


def verdict_rank(verdict: Verdict) -> int:
    """Return the priority of ``verdict``: 0 for the most urgent (emergency), 4 for candidate."""
    return VERDICTS.index(verdict)


class InvalidFactsError(ValueError):
    """Facts that break the schema: unknown key, wrong type or value out of range.

    ``path`` names the offending fact (``findings.modic_type``, ``startback[8]``; empty for the
    top level) and the message says what is allowed.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class RulesetError(ValueError):
    """A rule-set file that is malformed or internally inconsistent (a bug in the data)."""


@dataclass(frozen=True)
class Source:
    """Where a rule comes from. ``certainty`` uses reference/clinical.md's (V)/(U) key, plus
    ``policy`` for Vertebra design decisions."""

    citation: str
    certainty: Certainty

    def to_dict(self) -> dict[str, str]:
        """Return ``{"citation": ..., "certainty": ...}``."""
        return {"citation": self.citation, "certainty": self.certainty}


@dataclass(frozen=True)
class FiredRule:
    """A rule (or note) whose condition held, with the facts that made it hold.

    ``verdict`` is ``None`` for notes. ``evidence`` pairs each fact path with the value that
    triggered the rule (for list facts: the matching ids; for completeness rules: ``None``,
    meaning unknown).
    """

    id: str
    category: str
    verdict: Verdict | None
    message: str
    clinician_message: str
    source: Source
    evidence: tuple[tuple[str, object], ...]

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready form; ``verdict`` is omitted for notes."""
        out: dict[str, object] = {"id": self.id, "category": self.category}
        if self.verdict is not None:
            out["verdict"] = self.verdict
        out.update(
            message=self.message,
            clinician_message=self.clinician_message,
            source=self.source.to_dict(),
            evidence={path: _jsonable(value) for path, value in self.evidence},
        )
        return out


@dataclass(frozen=True)
class MissingFact:
    """An unknown fact whose answer could change the verdict, with the question to ask."""

    fact: str
    label: str
    question: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"fact", "label", "question"}``."""
        return {"fact": self.fact, "label": self.label, "question": self.question}


@dataclass(frozen=True)
class StartBackResult:
    """Keele STarT Back result: risk group, total (0-9) and psychosocial subscale (0-5)."""

    risk_group: Literal["low", "medium", "high"]
    total: int
    subscale: int

    def to_dict(self) -> dict[str, object]:
        """Return ``{"risk_group", "total", "subscale"}``."""
        return {"risk_group": self.risk_group, "total": self.total, "subscale": self.subscale}


@dataclass(frozen=True)
class VerdictSummary:
    """The headline shown for a verdict, from the rule set's ``verdicts`` section.

    ``next_steps`` is the patient's ordered "what to do next" list for the verdict: at least one
    step, each a non-empty sentence (checked when the rule set is loaded).
    """

    title: str
    message: str
    clinician_message: str
    next_steps: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """Return ``{"title", "message", "clinician_message", "next_steps"}`` (steps as a list)."""
        return {
            "title": self.title,
            "message": self.message,
            "clinician_message": self.clinician_message,
            "next_steps": list(self.next_steps),
        }


@dataclass(frozen=True)
class ScreeningResult:
    """The outcome of :func:`vertebra.core.screening.evaluate`.

    - ``verdict``: the most urgent verdict among the fired rules (``candidate`` if none fired).
    - ``fired``: the rules that decided the verdict (all carry ``verdict``), in rule-set order.
    - ``superseded``: rules that also fired but carry a less urgent verdict; for clinicians, not
      for the patient's headline (e.g. an exclusion found alongside a red flag).
    - ``notes``: information that never changes the verdict (e.g. STarT Back high risk).
    - ``missing``: unknown facts whose answer could still change the verdict, in schema order.
    - ``startback``: the STarT Back result when the 9 answers were given, else ``None``.
    """

    verdict: Verdict
    summary: VerdictSummary
    fired: tuple[FiredRule, ...]
    superseded: tuple[FiredRule, ...]
    notes: tuple[FiredRule, ...]
    missing: tuple[MissingFact, ...]
    startback: StartBackResult | None
    ruleset_id: str
    ruleset_version: str
    ruleset_effective: str

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready result (lists for the tuples, ``null`` for no STarT Back)."""
        return {
            "verdict": self.verdict,
            "summary": self.summary.to_dict(),
            "fired": [rule.to_dict() for rule in self.fired],
            "superseded": [rule.to_dict() for rule in self.superseded],
            "notes": [note.to_dict() for note in self.notes],
            "missing": [fact.to_dict() for fact in self.missing],
            "startback": None if self.startback is None else self.startback.to_dict(),
            "ruleset_id": self.ruleset_id,
            "ruleset_version": self.ruleset_version,
            "ruleset_effective": self.ruleset_effective,
        }


def _jsonable(value: object) -> object:
    """Turn the engine's tuples back into lists so evidence serialises as JSON arrays."""
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return value
