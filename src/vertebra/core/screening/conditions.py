"""The condition language of the rule set, parsed into small immutable objects.

Facts are looked up by path in a flat mapping that holds only *known* facts (the engine drops
unknown ones), so "unknown" is simply "absent". Every condition on a fact value is false when the
fact is unknown (rules fire only on what is known); only :class:`UnknownAny` looks at absence.

``holds(facts)`` returns the evidence (pairs of fact path and the value that made the condition
true) or ``None`` when the condition is false. An empty tuple therefore still means "true".
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Evidence = tuple[tuple[str, object], ...]
Facts = Mapping[str, object]

#: Comparison operators accepted in ``{fact, op, value}`` conditions.
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
ORDERING_OPERATORS = frozenset({"lt", "le", "gt", "ge"})


class Condition(Protocol):
    """What every condition offers to the engine."""

    def holds(self, facts: Facts) -> Evidence | None:
        """Return the evidence when the condition is true, else ``None``."""
        ...

    def value_facts(self) -> tuple[str, ...]:
        """Paths whose *value* the condition inspects: learning one of them could make it true."""
        ...

    def unknown_facts(self) -> tuple[str, ...]:
        """Paths whose *absence* the condition tests (only :class:`UnknownAny` has any)."""
        ...


@dataclass(frozen=True)
class Compare:
    """``{fact: PATH, op: OP, value: V}``: true when the fact is known and ``fact OP V``."""

    path: str
    op: str
    value: object

    def holds(self, facts: Facts) -> Evidence | None:
        """True only for a known fact; the evidence is the fact's value."""
        if self.path not in facts:
            return None
        actual = facts[self.path]
        return ((self.path, actual),) if OPERATORS[self.op](actual, self.value) else None

    def value_facts(self) -> tuple[str, ...]:
        """The one fact compared."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None: an unknown fact makes a comparison false."""
        return ()


@dataclass(frozen=True)
class IsIn:
    """``{fact: PATH, in: [V, ...]}``: true when the known fact equals one of the values."""

    path: str
    values: tuple[object, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """True only for a known fact in ``values``."""
        if self.path not in facts:
            return None
        actual = facts[self.path]
        return ((self.path, actual),) if actual in self.values else None

    def value_facts(self) -> tuple[str, ...]:
        """The one fact tested."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None."""
        return ()


@dataclass(frozen=True)
class ContainsAny:
    """``{fact: PATH, contains_any: [ID, ...]}`` on a list fact; evidence = the matching ids."""

    path: str
    ids: tuple[str, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """True when the known list shares an id with ``ids``; matches keep the rule's order."""
        present = facts.get(self.path)
        if not isinstance(present, tuple):
            return None
        matched = tuple(item for item in self.ids if item in present)
        return ((self.path, matched),) if matched else None

    def value_facts(self) -> tuple[str, ...]:
        """The list fact inspected."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None."""
        return ()


@dataclass(frozen=True)
class ContainsNone:
    """``{fact: PATH, contains_none: [ID, ...]}`` on a list fact: true when the known list is
    **non-empty** and shares no id with ``ids``; evidence = the whole list.

    Non-empty on purpose: "none of the treatable causes" is a finding only when some cause was
    named; an empty list (nothing diagnosed yet) is a different case, tested with ``empty``.
    """

    path: str
    ids: tuple[str, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """True for a known, non-empty list with no id from ``ids``."""
        present = facts.get(self.path)
        if not isinstance(present, tuple) or not present:
            return None
        return None if set(present) & set(self.ids) else ((self.path, present),)

    def value_facts(self) -> tuple[str, ...]:
        """The list fact inspected."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None."""
        return ()


@dataclass(frozen=True)
class IsEmpty:
    """``{fact: PATH, empty: true}`` on a list fact: true when the list is known and empty
    (answered "none", which is not the same as unanswered)."""

    path: str

    def holds(self, facts: Facts) -> Evidence | None:
        """True for a known empty list; the evidence is the empty list."""
        present = facts.get(self.path)
        return ((self.path, present),) if present == () else None

    def value_facts(self) -> tuple[str, ...]:
        """The list fact inspected."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None."""
        return ()


@dataclass(frozen=True)
class CountAtLeast:
    """``{fact: PATH, at_least: N, of: [ID, ...]}`` on a list fact: true when the known list
    holds at least ``N`` of the ids; evidence = the matching ids in the rule's order."""

    path: str
    minimum: int
    ids: tuple[str, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """True when at least ``minimum`` of ``ids`` are in the known list."""
        present = facts.get(self.path)
        if not isinstance(present, tuple):
            return None
        matched = tuple(item for item in self.ids if item in present)
        return ((self.path, matched),) if len(matched) >= self.minimum else None

    def value_facts(self) -> tuple[str, ...]:
        """The list fact inspected."""
        return (self.path,)

    def unknown_facts(self) -> tuple[str, ...]:
        """None."""
        return ()


@dataclass(frozen=True)
class AnyOf:
    """``{any: [COND, ...]}``: true when at least one part is; evidence from every true part."""

    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """Evaluate every part (not short-circuit) so the evidence is complete."""
        results = [part.holds(facts) for part in self.parts]
        true_parts = [evidence for evidence in results if evidence is not None]
        return _merge(true_parts) if true_parts else None

    def value_facts(self) -> tuple[str, ...]:
        """Union of the parts' value facts."""
        return _union(part.value_facts() for part in self.parts)

    def unknown_facts(self) -> tuple[str, ...]:
        """Union of the parts' unknown facts."""
        return _union(part.unknown_facts() for part in self.parts)


@dataclass(frozen=True)
class AllOf:
    """``{all: [COND, ...]}``: true when every part is; evidence from all parts."""

    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """False as soon as one part is false."""
        collected: list[Evidence] = []
        for part in self.parts:
            evidence = part.holds(facts)
            if evidence is None:
                return None
            collected.append(evidence)
        return _merge(collected)

    def value_facts(self) -> tuple[str, ...]:
        """Union of the parts' value facts."""
        return _union(part.value_facts() for part in self.parts)

    def unknown_facts(self) -> tuple[str, ...]:
        """Union of the parts' unknown facts."""
        return _union(part.unknown_facts() for part in self.parts)


@dataclass(frozen=True)
class UnknownAny:
    """``{unknown_any: [PATH, ...]}``: true when any listed fact is unknown.

    The evidence lists the unknown paths with the value ``None``.
    """

    paths: tuple[str, ...]

    def holds(self, facts: Facts) -> Evidence | None:
        """True while at least one listed fact is absent."""
        unknown = tuple((path, None) for path in self.paths if path not in facts)
        return unknown or None

    def value_facts(self) -> tuple[str, ...]:
        """None: knowing a value can only make this condition false."""
        return ()

    def unknown_facts(self) -> tuple[str, ...]:
        """The listed paths."""
        return self.paths


def _merge(parts: list[Evidence]) -> Evidence:
    """Concatenate evidence, keeping the first value seen for each path."""
    merged: dict[str, object] = {}
    for evidence in parts:
        for path, value in evidence:
            merged.setdefault(path, value)
    return tuple(merged.items())


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Ordered union of paths from an iterable of path tuples."""
    seen: dict[str, None] = {}
    for group in groups:
        for path in group:
            seen.setdefault(path, None)
    return tuple(seen)
