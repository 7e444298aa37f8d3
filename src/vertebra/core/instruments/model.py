"""Typed values for instrument definitions, answers and scores.

Everything here is immutable: a definition loaded once is shared by every caller, and a score
result can be stored or cached without fear of later mutation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

#: Marker carried by every placeholder text that stands in for licensed wording.
PLACEHOLDER_MARKER = "demo wording — load your licensed text"

Direction: TypeAlias = Literal["higher_is_worse", "higher_is_better", "none"]
ItemType: TypeAlias = Literal["choice", "number"]
#: A response option code: small integers for scales, strings for named choices (e.g. a drug).
Code: TypeAlias = int | str
#: A validated answer: an option code, a number (for number items) or None for missing.
Answer: TypeAlias = int | float | str | None
#: Values allowed in ScoreResult.extras (JSON-serialisable by construction).
JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list[str] | list[int]


class InstrumentError(Exception):
    """Base class for every error raised by the instruments package."""


class UnknownInstrumentError(InstrumentError, KeyError):
    """Raised when an instrument id is not defined."""

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes; keep it readable for CLI users.
        return str(self.args[0]) if self.args else "unknown instrument"


class InvalidAnswerError(InstrumentError, ValueError):
    """Raised when an answer is out of range, of the wrong type, or names an unknown item."""


class DefinitionError(InstrumentError, ValueError):
    """Raised when a shipped definition file is malformed (a packaging bug)."""


class InstrumentTextError(InstrumentError, ValueError):
    """Raised when a site's licensed-text overlay does not match the instrument structure."""


@dataclass(frozen=True, slots=True)
class ResponseOption:
    """One allowed answer of a choice item: its stored code, optional stable key and label."""

    code: Code
    label: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One question. Choice items have options; number items have an inclusive [min, max]."""

    id: str
    text: str
    type: ItemType = "choice"
    options: tuple[ResponseOption, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False

    @property
    def codes(self) -> tuple[Code, ...]:
        """The allowed option codes, in display order."""
        return tuple(o.code for o in self.options)

    def option(self, code: Code) -> ResponseOption:
        """Return the option with this code (KeyError if none)."""
        for opt in self.options:
            if opt.code == code:
                return opt
        raise KeyError(code)

    def allowed_description(self) -> str:
        """Human-readable list of allowed values, used in error messages."""
        if self.type == "number":
            return f"a number from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return ", ".join(str(c) for c in self.codes)


@dataclass(frozen=True, slots=True)
class Licence:
    """Who holds the copyright, on what terms, and where the terms were read."""

    holder: str
    terms: str
    source: str


@dataclass(frozen=True, slots=True)
class Band:
    """A named score band; `upper` is the inclusive upper edge."""

    id: str
    upper: float


@dataclass(frozen=True, slots=True)
class ScoringRule:
    """How an instrument is scored: a method name plus its parameters, with provenance."""

    method: str
    params: Mapping[str, Any]
    description: str
    source: str
    unverified: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstrumentDefinition:
    """A versioned instrument: items, scoring rule, range, direction and licence.

    `text_source` says where the item wording in this object came from: "shipped" (Vertebra's
    own or licence-free text), "placeholder" (demo wording) or "overlay:<file>" (site text).
    """

    id: str
    version: str
    title: str
    recall: str
    instructions: str
    direction: Direction
    range_min: float
    range_max: float
    unit: str
    item_text_shipped: bool
    licence: Licence
    scoring: ScoringRule
    bands: tuple[Band, ...]
    items: tuple[Item, ...]
    text_source: str

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Item ids in questionnaire order (the order of a Sequence of answers)."""
        return tuple(i.id for i in self.items)

    def item(self, item_id: str) -> Item:
        """Return the item with this id (KeyError if none)."""
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    def band_for(self, value: float) -> str | None:
        """Return the first band whose inclusive upper edge is >= value, or None if no bands."""
        for band in self.bands:
            if value <= band.upper:
                return band.id
        return None

    @property
    def has_placeholder_text(self) -> bool:
        """True when any instruction, item or option text is still demo wording."""
        texts = [self.instructions]
        for it in self.items:
            texts.append(it.text)
            texts.extend(o.label for o in it.options)
        return any(PLACEHOLDER_MARKER in t for t in texts)


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The outcome of scoring one questionnaire response.

    `score` is None when the response cannot be scored under the instrument's missing-item rule
    (the reason is then in ``extras["unscored_reason"]``). `band` is the named band or risk group
    (None when the instrument has none or there is no score). `extras` holds method-specific,
    JSON-serialisable values such as ``raw``, ``se``, ``psychosocial_subscale``.
    """

    instrument_id: str
    version: str
    score: float | None
    band: str | None
    items_answered: int
    items_total: int
    extras: Mapping[str, JSONValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Freeze extras so that a "frozen" result really cannot change.
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # mappingproxy cannot be pickled; rebuild from a plain dict (multiprocessing, caches).
        return (
            type(self),
            (
                self.instrument_id,
                self.version,
                self.score,
                self.band,
                self.items_answered,
                self.items_total,
                dict(self.extras),
            ),
        )

    @property
    def scored(self) -> bool:
        """True when a score was computed."""
        return self.score is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict, ready for json.dumps (extras copied, lists copied)."""
        return {
            "instrument_id": self.instrument_id,
            "version": self.version,
            "score": self.score,
            "band": self.band,
            "items_answered": self.items_answered,
            "items_total": self.items_total,
            "extras": {k: (list(v) if isinstance(v, list) else v) for k, v in self.extras.items()},
        }


def _fmt(value: float | None) -> str:
    """Format a bound for messages: integers without '.0', None as 'any'."""
    if value is None:
        return "any"
    if math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)
