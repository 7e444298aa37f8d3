"""Parse a search request's query string against a type's declared parameters (no database).

Unknown parameters and modifiers are refused (400) as HAPI FHIR does by default; with
``Prefer: handling=lenient`` they are ignored instead and left out of the ``self`` link
(R4 search.html#errors). ``_count`` is clamped to :data:`MAX_COUNT`; ``_offset`` is the paging
position the server writes into its own ``next`` links (as Medplum does). ``_total`` is R4's
``none`` / ``estimate`` / ``accurate`` (search.html#total); absent, the server decides (see
:mod:`vertebra.fhirserver.selectors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vertebra.core.fhir.rest import SearchError
from vertebra.fhirserver.resources import TypeSpec

__all__ = ["DEFAULT_COUNT", "EXACT_UP_TO", "MAX_COUNT", "TOTAL_MODES", "Search", "parse_search"]

DEFAULT_COUNT = 20  # HAPI FHIR's default page size
MAX_COUNT = 100  # the registry's MAX_RESULTS: one page is at most this many resources
#: Parameters every search accepts besides the type's own (not search parameters proper).
CONTROL = ("_count", "_offset", "_format", "_total")
#: Matches counted exactly when the client did not ask for ``_total=accurate``: a bounded COUNT
#: stops after this many (milliseconds whatever the table's size; ADR 0023 §9).
EXACT_UP_TO = 1000
#: R4's values of ``_total`` (search.html#total).
TOTAL_MODES = ("none", "estimate", "accurate")


@dataclass(frozen=True)
class Search:
    """A parsed search: (parameter, values of each occurrence) pairs, page size and start, and
    the ``_total`` asked for ("" when the request did not say)."""

    filters: tuple[tuple[str, tuple[str, ...]], ...]
    count: int
    offset: int
    total: str = ""


def _number(name: str, values: list[str], upper: int) -> int:
    """The single non-negative integer value of ``name``, at most ``upper``."""
    if len(values) != 1 or not values[0].isdigit():
        raise SearchError(f"{name} must be one non-negative integer, not {values!r}")
    return min(int(values[0]), upper)


def parse_search(
    spec: TypeSpec, items: Iterable[tuple[str, list[str]]], *, lenient: bool
) -> Search:
    """The search ``items`` (name, values) ask for on ``spec`` (SearchError when refused)."""
    filters: list[tuple[str, tuple[str, ...]]] = []
    count, offset, total = DEFAULT_COUNT, 0, ""
    for name, values in items:
        if name == "_count":
            count = _number(name, values, MAX_COUNT)
            continue
        if name == "_offset":
            offset = _number(name, values, 10**9)
            continue
        if name == "_total":
            if len(values) != 1 or values[0] not in TOTAL_MODES:
                raise SearchError(f"_total must be one of {list(TOTAL_MODES)}, not {values!r}")
            total = values[0]
            continue
        if name == "_format":
            continue  # checked by the view (only JSON is served)
        if spec.param(name) is None:
            if lenient:
                continue
            known = sorted(p.name for p in spec.params)
            if ":" in name:
                raise SearchError(f"Modifier in {name!r} is not supported by this server")
            raise SearchError(
                f'Unknown search parameter "{name}" for resource type "{spec.name}". '
                f"Valid search parameters for this search are: {known}"
            )
        empty = [v for v in values if not v.strip()]
        if empty:
            raise SearchError(f"{name} has an empty value")
        filters.append((name, tuple(values)))
    return Search(filters=tuple(filters), count=count, offset=offset, total=total)
