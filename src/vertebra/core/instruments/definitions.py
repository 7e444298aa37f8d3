"""Parse instrument definition files (YAML mappings) into validated InstrumentDefinition values.

Parsing is strict: a shipped file that is malformed is a packaging bug, and we would rather fail
at first use with the file and field named than score patients with a half-read rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from vertebra.core import mme
from vertebra.core.instruments.model import (
    PLACEHOLDER_MARKER,
    Band,
    Code,
    DefinitionError,
    Direction,
    InstrumentDefinition,
    Item,
    Licence,
    ResponseOption,
    ScoringRule,
)

_DIRECTIONS: tuple[Direction, ...] = ("higher_is_worse", "higher_is_better", "none")
#: Option lists that are generated from other data files, so the two cannot drift apart.
_OPTION_SOURCES = ("mme_factors",)


def parse_definition(raw: Any, origin: str) -> InstrumentDefinition:
    """Build a definition from a parsed YAML mapping; `origin` names the file in errors.

    Checks structure (required fields, unique ids and codes, ordered bands, known direction);
    the scoring method's own parameters are checked by `scoring.check_definition`.
    """
    m = _mapping(raw, origin, "definition")
    ident = _str(m, "id", origin)
    where = f"{origin} ({ident})"
    items = tuple(_parse_item(it, where) for it in _list(m, "items", where))
    _unique([i.id for i in items], where, "item id")
    rng = _mapping(m.get("range"), where, "range")
    range_min, range_max = float(rng["min"]), float(rng["max"])
    if not range_min <= range_max:
        raise DefinitionError(f"{where}: range min {range_min} exceeds max {range_max}")
    direction = _str(m, "direction", where)
    if direction not in _DIRECTIONS:
        raise DefinitionError(f"{where}: direction must be one of {_DIRECTIONS}, got {direction!r}")
    shipped = m.get("item_text_shipped")
    if not isinstance(shipped, bool):
        raise DefinitionError(f"{where}: item_text_shipped must be true or false")
    defn = InstrumentDefinition(
        id=ident,
        version=_str(m, "version", where),
        title=_str(m, "title", where),
        recall=str(m.get("recall", "")),
        instructions=str(m.get("instructions", "")),
        direction=direction,
        range_min=range_min,
        range_max=range_max,
        unit=str(m.get("unit", "")),
        item_text_shipped=shipped,
        licence=_parse_licence(m.get("licence"), where),
        scoring=_parse_scoring(m.get("scoring"), where),
        bands=_parse_bands(m.get("bands") or [], where),
        items=items,
        text_source="shipped" if shipped else "placeholder",
    )
    _check_text_policy(defn, where)
    return defn


def _check_text_policy(defn: InstrumentDefinition, where: str) -> None:
    """Text that is not licensed for shipping must be placeholder wording, and vice versa."""
    if not defn.item_text_shipped:
        for it in defn.items:
            if PLACEHOLDER_MARKER not in it.text:
                raise DefinitionError(
                    f"{where}: item {it.id!r} must carry placeholder wording "
                    f"('{PLACEHOLDER_MARKER}') because item_text_shipped is false"
                )
    elif defn.has_placeholder_text:
        raise DefinitionError(f"{where}: item_text_shipped is true but placeholder text remains")


def _parse_item(raw: Any, where: str) -> Item:
    m = _mapping(raw, where, "item")
    ident = _str(m, "id", where)
    here = f"{where} item {ident!r}"
    item_type = str(m.get("type", "choice"))
    optional = bool(m.get("optional", False))
    if item_type == "number":
        lo, hi = float(m["min"]), float(m["max"])
        if not lo <= hi:
            raise DefinitionError(f"{here}: min exceeds max")
        return Item(ident, _str(m, "text", here), "number", (), lo, hi, optional)
    if item_type != "choice":
        raise DefinitionError(f"{here}: type must be 'choice' or 'number', got {item_type!r}")
    if "options_from" in m:
        options = _generated_options(str(m["options_from"]), here)
    else:
        options = tuple(_parse_option(o, here) for o in _list(m, "options", here))
    if not options:
        raise DefinitionError(f"{here}: a choice item needs at least one option")
    _unique([o.code for o in options], here, "option code")
    return Item(ident, _str(m, "text", here), "choice", options, None, None, optional)


def _parse_option(raw: Any, where: str) -> ResponseOption:
    m = _mapping(raw, where, "option")
    code = m.get("code")
    # bool is an int subclass; a YAML `yes` would silently become code True == 1.
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise DefinitionError(f"{where}: option code must be an integer or string, got {code!r}")
    key = m.get("key")
    return ResponseOption(
        code=code, label=_str(m, "label", where), key=None if key is None else str(key)
    )


def _generated_options(source: str, where: str) -> tuple[ResponseOption, ...]:
    """Options built from another data file: today only the MME table (+ 'other')."""
    if source not in _OPTION_SOURCES:
        raise DefinitionError(f"{where}: options_from must be one of {_OPTION_SOURCES}")
    opts = [
        ResponseOption(code=o.id, key=o.id, label=f"{o.label} ({o.dose_unit})")
        for o in mme.known_opioids()
    ]
    opts.append(ResponseOption(code="other", key="other", label="Other opioid"))
    return tuple(opts)


def _parse_licence(raw: Any, where: str) -> Licence:
    m = _mapping(raw, where, "licence")
    return Licence(
        holder=_str(m, "holder", where),
        terms=_str(m, "terms", where),
        source=_str(m, "source", where),
    )


def _parse_scoring(raw: Any, where: str) -> ScoringRule:
    m = _mapping(raw, where, "scoring")
    params = m.get("params") or {}
    if not isinstance(params, Mapping):
        raise DefinitionError(f"{where}: scoring.params must be a mapping")
    return ScoringRule(
        method=_str(m, "method", where),
        params=MappingProxyType(dict(params)),
        description=" ".join(str(m.get("description", "")).split()),
        source=str(m.get("source", "")),
        unverified=tuple(str(u) for u in m.get("unverified") or ()),
    )


def _parse_bands(raw: Any, where: str) -> tuple[Band, ...]:
    if not isinstance(raw, list):
        raise DefinitionError(f"{where}: bands must be a list")
    bands = tuple(
        Band(id=_str(_mapping(b, where, "band"), "id", where), upper=float(b["max"])) for b in raw
    )
    uppers = [b.upper for b in bands]
    if uppers != sorted(uppers) or len(set(uppers)) != len(uppers):
        raise DefinitionError(f"{where}: band upper edges must be strictly increasing")
    return bands


def _mapping(raw: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{where}: {what} must be a mapping")
    return raw


def _list(m: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = m.get(key)
    if not isinstance(value, list):
        raise DefinitionError(f"{where}: {key!r} must be a list")
    return value


def _str(m: Mapping[str, Any], key: str, where: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{where}: {key!r} must be a non-empty string")
    return value


def _unique(values: list[Code], where: str, what: str) -> None:
    seen: set[Code] = set()
    for v in values:
        if v in seen:
            raise DefinitionError(f"{where}: duplicate {what} {v!r}")
        seen.add(v)
