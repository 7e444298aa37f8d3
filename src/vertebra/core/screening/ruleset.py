"""Load, parse and check the versioned screening rule set (``vertebra/data/screening``).

The rule set is data: facts schema, red-flag catalogue, rules and notes. This module turns the
YAML into immutable objects and refuses a rule set that is inconsistent, because a silent data
mistake here could send someone with cauda equina signs to a clinic instead of an emergency
department. The checks (see :func:`_check_consistency`) are:

- every red flag is listed by exactly one verdict rule, whose verdict equals the flag's urgency;
- every fact a verdict rule inspects is listed by a ``needs_more_information`` completeness rule,
  so ``candidate`` is never given while a fact that could exclude or refer is unknown;
- conditions name known facts, valid operators, values of the fact's type and catalogue ids;
- every verdict has a title, messages and at least one patient next step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import cast

from vertebra.core.screening.conditions import (
    OPERATORS,
    ORDERING_OPERATORS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    ContainsAny,
    ContainsNone,
    CountAtLeast,
    IsEmpty,
    IsIn,
    UnknownAny,
)
from vertebra.core.screening.model import (
    CERTAINTIES,
    VERDICTS,
    RulesetError,
    Source,
    Verdict,
    VerdictSummary,
)
from vertebra.core.yamltext import load_yaml

RESOURCE_PACKAGE = "vertebra"
RESOURCE_PATH = ("data", "screening", "ruleset.yaml")

FACT_TYPES = frozenset(
    {"integer", "number", "boolean", "enum", "id_list", "object", "startback_answers"}
)
RED_FLAG_CATEGORIES = ("cauda_equina", "malignancy", "infection", "fracture", "neuro")
RED_FLAG_URGENCIES: tuple[Verdict, ...] = ("emergency", "refer")
#: The input facts of each derived fact (computed by the engine, known when its inputs are).
DERIVED_INPUTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"startback_risk": ("startback",), "pain_onset_age": ("age", "pain_duration_months")}
)
#: Catalogues an ``id_list`` fact may draw its ids from.
CATALOGUES = ("red_flags", "diagnoses", "inflammatory_features")
#: ``candidate`` is never a rule's verdict: it is what remains when no rule fires.
RULE_VERDICTS: tuple[Verdict, ...] = VERDICTS[:-1]


@dataclass(frozen=True)
class FactSpec:
    """One fact of the schema. ``path`` is dotted for fields of an object fact."""

    path: str
    type: str
    label: str
    question: str
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    #: Plain words for each of ``values`` (same order), for forms; empty = none given.
    value_labels: tuple[str, ...] = ()
    catalogue: str | None = None
    derived: bool = False
    fields: tuple[FactSpec, ...] = ()

    @property
    def key(self) -> str:
        """The last path segment: the key used in the facts JSON."""
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class RedFlag:
    """A red flag of the catalogue: ``urgency`` is the verdict it leads to."""

    id: str
    category: str
    urgency: Verdict
    label: str


@dataclass(frozen=True)
class CatalogueEntry:
    """An id with a plain-language label (diagnoses, inflammatory back pain features)."""

    id: str
    label: str


@dataclass(frozen=True)
class Rule:
    """A rule (``verdict`` set) or a note (``verdict`` is ``None``)."""

    id: str
    category: str
    verdict: Verdict | None
    when: Condition
    message: str
    clinician_message: str
    source: Source


@dataclass(frozen=True)
class Ruleset:
    """A parsed, checked rule set. Build one with :func:`load_ruleset` or :func:`parse_ruleset`."""

    id: str
    version: str
    effective: str
    title: str
    verdicts: Mapping[Verdict, VerdictSummary]
    red_flags: tuple[RedFlag, ...]
    diagnoses: tuple[CatalogueEntry, ...]
    facts: tuple[FactSpec, ...]
    rules: tuple[Rule, ...]
    notes: tuple[Rule, ...]
    inflammatory_features: tuple[CatalogueEntry, ...] = ()

    def leaf_facts(self) -> Iterator[FactSpec]:
        """All non-object facts in schema order, fields of object facts in place."""
        for spec in self.facts:
            if spec.type == "object":
                yield from spec.fields
            else:
                yield spec

    def fact(self, path: str) -> FactSpec:
        """Return the leaf fact at ``path``; ``KeyError`` if there is none."""
        for spec in self.leaf_facts():
            if spec.path == path:
                return spec
        raise KeyError(path)

    def catalogue(self, name: str) -> Sequence[RedFlag | CatalogueEntry]:
        """Entries of the catalogue ``name`` (one of :data:`CATALOGUES`); empty if unknown."""
        catalogues: dict[str, Sequence[RedFlag | CatalogueEntry]] = {
            "red_flags": self.red_flags,
            "diagnoses": self.diagnoses,
            "inflammatory_features": self.inflammatory_features,
        }
        return catalogues.get(name, ())

    def catalogue_ids(self, name: str) -> tuple[str, ...]:
        """Ids of the catalogue ``name`` (``red_flags``, ``diagnoses``, ...)."""
        return tuple(entry.id for entry in self.catalogue(name))

    @property
    def required_facts(self) -> tuple[str, ...]:
        """Facts that must all be known for ``candidate`` (the completeness rules' lists)."""
        paths: dict[str, None] = {}
        for rule in self.rules:
            if rule.verdict == "needs_more_information":
                paths.update(dict.fromkeys(rule.when.unknown_facts()))
        return tuple(paths)

    def emergency_flags(self) -> tuple[str, ...]:
        """Ids of red flags whose urgency is ``emergency``."""
        return tuple(flag.id for flag in self.red_flags if flag.urgency == "emergency")


@functools.cache
def load_ruleset() -> Ruleset:
    """Load (once per process) and check the packaged rule set."""
    resource = resources.files(RESOURCE_PACKAGE).joinpath(*RESOURCE_PATH)
    return parse_ruleset(load_yaml(resource.read_text(encoding="utf-8")))


def parse_ruleset(data: object) -> Ruleset:
    """Build a :class:`Ruleset` from the YAML's mapping; raise :class:`RulesetError` if invalid.

    Use it to evaluate with an edited rule set (e.g. a changed threshold) without code changes.
    """
    root = _mapping(data, "rule set")
    facts = tuple(_parse_fact(item, "", f"facts[{i}]") for i, item in _items(root, "facts"))
    ruleset = Ruleset(
        id=_text(root, "id", "rule set"),
        version=_text(root, "version", "rule set"),
        effective=_date_text(root.get("effective")),
        title=_text(root, "title", "rule set"),
        # Read-only: the packaged rule set is cached and shared by every caller.
        verdicts=MappingProxyType(_parse_verdicts(root.get("verdicts"))),
        red_flags=tuple(
            _parse_red_flag(item, f"red_flags[{i}]") for i, item in _items(root, "red_flags")
        ),
        diagnoses=tuple(
            _parse_entry(item, f"diagnoses[{i}]") for i, item in _items(root, "diagnoses")
        ),
        facts=facts,
        rules=(),
        notes=(),
        inflammatory_features=tuple(
            _parse_entry(item, f"inflammatory_features[{i}]")
            for i, item in _items(root, "inflammatory_features", optional=True)
        ),
    )
    # Conditions are parsed against the facts schema, so they come second.
    rules = tuple(
        _parse_rule(item, ruleset, f"rules[{i}]", True) for i, item in _items(root, "rules")
    )
    notes = tuple(
        _parse_rule(item, ruleset, f"notes[{i}]", False) for i, item in _items(root, "notes")
    )
    ruleset = dataclasses.replace(ruleset, rules=rules, notes=notes)
    _check_consistency(ruleset)
    return ruleset


# --- parsing helpers -------------------------------------------------------------------------


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise RulesetError(f"{where}: expected a mapping")
    return cast(Mapping[str, object], value)


def _items(
    root: Mapping[str, object], key: str, optional: bool = False
) -> Iterator[tuple[int, object]]:
    value = root.get(key, [] if optional else None)
    if not isinstance(value, list):
        raise RulesetError(f"rule set: '{key}' must be a list")
    return enumerate(value)


def _text(data: Mapping[str, object], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RulesetError(f"{where}: '{key}' must be a non-empty string")
    return " ".join(value.split())  # folded YAML may leave stray spaces


def _date_text(value: object) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise RulesetError("rule set: 'effective' must be a date (YYYY-MM-DD)")


def _parse_verdicts(value: object) -> dict[Verdict, VerdictSummary]:
    data = _mapping(value, "verdicts")
    if set(data) != set(VERDICTS):
        raise RulesetError(f"verdicts: need exactly {', '.join(VERDICTS)}")
    out: dict[Verdict, VerdictSummary] = {}
    for verdict in VERDICTS:
        entry = _mapping(data[verdict], f"verdicts.{verdict}")
        where = f"verdicts.{verdict}"
        out[verdict] = VerdictSummary(
            _text(entry, "title", where),
            _text(entry, "message", where),
            _text(entry, "clinician_message", where),
            _text_list(entry, "next_steps", where),
        )
    return out


def _text_list(data: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    """A non-empty list of non-empty strings (whitespace folded), e.g. a verdict's next steps.

    Raises :class:`RulesetError` naming ``where.key[index]`` for a missing list or a bad item.
    """
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise RulesetError(f"{where}: '{key}' must be a non-empty list of strings")
    texts: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RulesetError(f"{where}.{key}[{index}]: must be a non-empty string")
        texts.append(" ".join(item.split()))  # folded YAML may leave stray spaces
    return tuple(texts)


def _parse_red_flag(item: object, where: str) -> RedFlag:
    data = _mapping(item, where)
    category = _text(data, "category", where)
    urgency = _text(data, "urgency", where)
    if category not in RED_FLAG_CATEGORIES:
        raise RulesetError(f"{where}: category must be one of {', '.join(RED_FLAG_CATEGORIES)}")
    if urgency not in RED_FLAG_URGENCIES:
        raise RulesetError(f"{where}: urgency must be emergency or refer")
    return RedFlag(_text(data, "id", where), category, urgency, _text(data, "label", where))


def _parse_entry(item: object, where: str) -> CatalogueEntry:
    data = _mapping(item, where)
    return CatalogueEntry(_text(data, "id", where), _text(data, "label", where))


def _parse_fact(item: object, parent: str, where: str) -> FactSpec:
    data = _mapping(item, where)
    key = _text(data, "id", where)
    kind = _text(data, "type", where)
    if kind not in FACT_TYPES:
        raise RulesetError(f"{where}: type must be one of {', '.join(sorted(FACT_TYPES))}")
    path = f"{parent}.{key}" if parent else key
    derived = data.get("derived", False) is True
    fields: tuple[FactSpec, ...] = ()
    if kind == "object":
        raw_fields = data.get("fields")
        if parent or not isinstance(raw_fields, list):
            raise RulesetError(f"{where}: an object fact needs 'fields' and cannot be nested")
        fields = tuple(
            _parse_fact(f, path, f"{where}.fields[{i}]") for i, f in enumerate(raw_fields)
        )
    values = data.get("values", [])
    if kind == "enum" and (not isinstance(values, list) or not values):
        raise RulesetError(f"{where}: an enum fact needs 'values'")
    catalogue = data.get("catalogue")
    if kind == "id_list" and catalogue not in CATALOGUES:
        raise RulesetError(f"{where}: an id_list fact needs a catalogue: {', '.join(CATALOGUES)}")
    labels = data.get("labels", [])
    if labels and (
        kind != "enum"
        or not isinstance(labels, list)
        or not isinstance(values, list)
        or len(labels) != len(values)
        or not all(isinstance(x, str) and x.strip() for x in labels)
    ):
        raise RulesetError(f"{where}: 'labels' needs one non-empty text per enum value")
    return FactSpec(
        path=path,
        type=kind,
        label=_text(data, "label", where),
        question="" if derived or kind == "object" else _text(data, "question", where),
        minimum=_number_or_none(data.get("minimum"), where),
        maximum=_number_or_none(data.get("maximum"), where),
        values=tuple(str(v) for v in cast(list[object], values)),
        value_labels=tuple(" ".join(str(x).split()) for x in cast(list[object], labels)),
        catalogue=cast(str | None, catalogue),
        derived=derived,
        fields=fields,
    )


def _number_or_none(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RulesetError(f"{where}: minimum/maximum must be numbers")
    return value


def _parse_source(value: object, where: str) -> Source:
    data = _mapping(value, f"{where}.source")
    certainty = _text(data, "certainty", f"{where}.source")
    if certainty not in CERTAINTIES:
        raise RulesetError(f"{where}.source: certainty must be one of {', '.join(CERTAINTIES)}")
    return Source(_text(data, "citation", f"{where}.source"), certainty)


def _parse_rule(item: object, ruleset: Ruleset, where: str, is_rule: bool) -> Rule:
    data = _mapping(item, where)
    rule_id = _text(data, "id", where)
    where = f"{where} ({rule_id})"
    verdict: Verdict | None = None
    if is_rule:
        raw = data.get("verdict")
        if raw not in RULE_VERDICTS:
            raise RulesetError(f"{where}: verdict must be one of {', '.join(RULE_VERDICTS)}")
        verdict = raw
    elif "verdict" in data:
        raise RulesetError(f"{where}: notes never carry a verdict")
    return Rule(
        id=rule_id,
        category=_text(data, "category", where),
        verdict=verdict,
        when=_parse_condition(data.get("when"), ruleset, f"{where}.when"),
        message=_text(data, "message", where),
        clinician_message=_text(data, "clinician_message", where),
        source=_parse_source(data.get("source"), where),
    )


def _parse_condition(value: object, ruleset: Ruleset, where: str) -> Condition:
    """Parse one condition, checking it against the facts schema."""
    data = _mapping(value, where)
    if set(data) == {"any"} or set(data) == {"all"}:
        (kind, parts) = next(iter(data.items()))
        if not isinstance(parts, list) or not parts:
            raise RulesetError(f"{where}: '{kind}' needs a non-empty list")
        parsed = tuple(
            _parse_condition(p, ruleset, f"{where}.{kind}[{i}]") for i, p in enumerate(parts)
        )
        return AnyOf(parsed) if kind == "any" else AllOf(parsed)
    if set(data) == {"unknown_any"}:
        paths = data["unknown_any"]
        if not isinstance(paths, list) or not paths:
            raise RulesetError(f"{where}: 'unknown_any' needs a non-empty list of facts")
        return UnknownAny(tuple(_input_fact(ruleset, p, where).path for p in paths))
    spec = _input_fact(ruleset, data.get("fact"), where, allow_derived=True)
    if set(data) == {"fact", "op", "value"}:
        return _parse_compare(spec, data["op"], data["value"], where)
    if set(data) == {"fact", "in"}:
        values = data["in"]
        if not isinstance(values, list) or not values:
            raise RulesetError(f"{where}: 'in' needs a non-empty list")
        for v in values:
            _check_value(spec, v, where)
        return IsIn(spec.path, tuple(values))
    if set(data) == {"fact", "contains_any"}:
        ids = data["contains_any"]
        if spec.type != "id_list" or spec.catalogue is None:
            raise RulesetError(f"{where}: contains_any needs a list fact")
        known = ruleset.catalogue_ids(spec.catalogue)
        if not isinstance(ids, list) or not ids or any(i not in known for i in ids):
            raise RulesetError(
                f"{where}: contains_any needs ids from the {spec.catalogue} catalogue"
            )
        return ContainsAny(spec.path, tuple(ids))
    if set(data) == {"fact", "contains_none"}:
        return ContainsNone(spec.path, _catalogue_ids(ruleset, spec, data["contains_none"], where))
    if set(data) == {"fact", "empty"}:
        if spec.type != "id_list" or data["empty"] is not True:
            raise RulesetError(f"{where}: 'empty: true' needs a list fact")
        return IsEmpty(spec.path)
    if set(data) == {"fact", "at_least", "of"}:
        minimum = data["at_least"]
        ids = _catalogue_ids(ruleset, spec, data["of"], where)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
            raise RulesetError(f"{where}: 'at_least' needs a whole number of at least 1")
        if minimum > len(ids):
            raise RulesetError(f"{where}: 'at_least' {minimum} of {len(ids)} ids can never hold")
        return CountAtLeast(spec.path, minimum, ids)
    raise RulesetError(
        f"{where}: unknown condition form {sorted(data)}; use fact+op+value, fact+in, "
        "fact+contains_any, fact+contains_none, fact+empty, fact+at_least+of, any, all or "
        "unknown_any"
    )


def _catalogue_ids(ruleset: Ruleset, spec: FactSpec, ids: object, where: str) -> tuple[str, ...]:
    """Check that ``ids`` is a non-empty list of ids from the list fact's catalogue."""
    if spec.type != "id_list" or spec.catalogue is None:
        raise RulesetError(f"{where}: this condition needs a list fact")
    known = ruleset.catalogue_ids(spec.catalogue)
    if not isinstance(ids, list) or not ids or any(i not in known for i in ids):
        raise RulesetError(f"{where}: needs ids from the {spec.catalogue} catalogue")
    return tuple(cast(list[str], ids))


def _input_fact(
    ruleset: Ruleset, path: object, where: str, allow_derived: bool = False
) -> FactSpec:
    if not isinstance(path, str):
        raise RulesetError(f"{where}: 'fact' must name a fact")
    try:
        spec = ruleset.fact(path)
    except KeyError:
        raise RulesetError(f"{where}: unknown fact '{path}'") from None
    if spec.derived and not allow_derived:
        raise RulesetError(f"{where}: derived fact '{path}' is never unknown on its own")
    return spec


def _parse_compare(spec: FactSpec, op: object, value: object, where: str) -> Compare:
    if not isinstance(op, str) or op not in OPERATORS:
        raise RulesetError(f"{where}: op must be one of {', '.join(OPERATORS)}")
    if op in ORDERING_OPERATORS and spec.type not in ("integer", "number"):
        raise RulesetError(f"{where}: '{op}' needs a numeric fact, '{spec.path}' is {spec.type}")
    _check_value(spec, value, where)
    return Compare(spec.path, op, value)


def _check_value(spec: FactSpec, value: object, where: str) -> None:
    """Reject a rule value of the wrong type, e.g. ``1`` for a boolean fact (``True == 1``)."""
    ok = {
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "enum": value in spec.values,
    }.get(spec.type, False)
    if not ok:
        raise RulesetError(
            f"{where}: value {value!r} does not fit fact '{spec.path}' ({spec.type})"
        )


# --- consistency -----------------------------------------------------------------------------


def _check_consistency(ruleset: Ruleset) -> None:
    """Enforce the safety invariants listed in the module docstring."""
    for name, values in (
        ("rule ids", [rule.id for rule in (*ruleset.rules, *ruleset.notes)]),
        ("red flag ids", [flag.id for flag in ruleset.red_flags]),
        ("diagnosis ids", [entry.id for entry in ruleset.diagnoses]),
        ("inflammatory feature ids", [entry.id for entry in ruleset.inflammatory_features]),
        ("fact ids", [f.path for spec in ruleset.facts for f in (spec, *spec.fields)]),
    ):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise RulesetError(f"duplicate {name}: {', '.join(repeated)}")
    _check_red_flags_routed(ruleset)
    _check_completeness(ruleset)


def _check_red_flags_routed(ruleset: Ruleset) -> None:
    for flag in ruleset.red_flags:
        routes = [
            rule
            for rule in ruleset.rules
            if isinstance(rule.when, ContainsAny)
            and rule.when.path == "red_flags"
            and flag.id in rule.when.ids
        ]
        if len(routes) != 1 or routes[0].verdict != flag.urgency:
            raise RulesetError(
                f"red flag '{flag.id}' must be listed by exactly one rule with verdict "
                f"'{flag.urgency}' (a top-level contains_any on red_flags)"
            )


def _check_completeness(ruleset: Ruleset) -> None:
    """A derived fact counts as covered when all its inputs are (DERIVED_INPUTS)."""
    required = set(ruleset.required_facts)
    for rule in ruleset.rules:
        if rule.verdict == "needs_more_information":
            continue
        inputs = [
            source
            for path in rule.when.value_facts()
            for source in DERIVED_INPUTS.get(path, (path,))
        ]
        uncovered = [path for path in inputs if path not in required]
        if uncovered:
            raise RulesetError(
                f"rule {rule.id}: facts {', '.join(uncovered)} must be listed by a "
                "needs_more_information unknown_any rule, or 'candidate' could be given while "
                "they are unknown"
            )
