"""Parse a search request's query string against a type's declared parameters (no database).

Unknown parameters and modifiers are refused (400) as HAPI FHIR does by default; with
``Prefer: handling=lenient`` they are ignored instead and left out of the ``self`` link
(R4 search.html#errors). ``_count`` is clamped to :data:`MAX_COUNT`; ``_offset`` is the paging
position the server writes into its own ``next`` links (as Medplum does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vertebra.core.fhir.rest import SearchError
from vertebra.fhirserver.resources import TypeSpec

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Search", "parse_search"]

DEFAULT_COUNT = 20  # HAPI FHIR's default page size
MAX_COUNT = 100  # the registry's MAX_RESULTS: one page is at most this many resources
#: Parameters every search accepts besides the type's own (not search parameters proper).
CONTROL = ("_count", "_offset", "_format")


@dataclass(frozen=True)
class Search:
    """A parsed search: (parameter, values of each occurrence) pairs, page size and start."""

    filters: tuple[tuple[str, tuple[str, ...]], ...]
    count: int
    offset: int


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
    count, offset = DEFAULT_COUNT, 0
    for name, values in items:
        if name == "_count":
            count = _number(name, values, MAX_COUNT)
            continue
        if name == "_offset":
            offset = _number(name, values, 10**9)
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
    return Search(filters=tuple(filters), count=count, offset=offset)
