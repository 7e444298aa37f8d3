"""``Bundle.total`` follows R4's ``_total`` (search.html#total; ADR 0023 §9): exact when asked
(``accurate``) or when there are few matches, left out above that unless an estimate is asked
for, and paging by ``next`` links returns the same resources in every mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from tests.fhirserver.conftest import World
from vertebra.fhirserver import selectors

#: A small bound so the 40-patient world has searches on both sides of it.
CAP = 7


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(selectors, "EXACT_UP_TO", CAP)
    return CAP


def get(client: Any, world: World, url: str) -> dict[str, Any]:
    answer = client.get(url.removeprefix("http://testserver"), **world.auth("clinician"))
    assert answer.status_code == 200, (url, answer.content[:300])
    return json.loads(answer.content)  # type: ignore[no-any-return]


def walk(client: Any, world: World, url: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Every id a search returns by following ``next`` links, and the pages seen."""
    pages, found = [], []
    next_url: str | None = url
    while next_url is not None:
        page = get(client, world, next_url)
        pages.append(page)
        found += [entry["resource"]["id"] for entry in page.get("entry", [])]
        next_url = next((ln["url"] for ln in page["link"] if ln["relation"] == "next"), None)
    return found, pages


@pytest.mark.parametrize(
    ("kind", "size"), [("Patient", 3), ("Observation", 100), ("Procedure", 5), ("Condition", 3)]
)
def test_every_mode_pages_through_the_same_resources(
    world: World, client: Any, small_cap: int, kind: str, size: int
) -> None:
    """Procedure has five source tables: pages cross from one table to the next without counts
    (page sizes keep each walk under the API's request throttle)."""
    accurate, pages = walk(client, world, f"/fhir/{kind}?_count={size}&_total=accurate")
    assert len(accurate) == len(set(accurate)) == pages[0]["total"] > small_cap
    assert all(page["total"] == len(accurate) for page in pages)
    for mode in ("", "&_total=none", "&_total=estimate"):
        found, pages = walk(client, world, f"/fhir/{kind}?_count={size}{mode}")
        assert found == accurate, mode
        # the next links keep the mode asked for
        for page in pages:
            nxt = [ln["url"] for ln in page["link"] if ln["relation"] == "next"]
            assert all(mode.lstrip("&") in url for url in nxt)
        if mode == "&_total=estimate" and connection.vendor != "postgresql":
            assert pages[0]["total"] == len(accurate)  # SQLite: counted exactly
        elif mode == "&_total=estimate":
            assert isinstance(pages[0]["total"], int) and pages[0]["total"] > small_cap
        else:
            assert "total" not in pages[0], mode


def test_deep_offsets_without_counts(world: World, client: Any, small_cap: int) -> None:
    """An offset past the first tables of a type lands on the same resources as with counts,
    and an offset past the end is an empty last page."""
    accurate, _ = walk(client, world, "/fhir/Procedure?_count=100&_total=accurate")
    for offset in (0, 1, len(accurate) // 2, len(accurate) - 1, len(accurate), len(accurate) + 5):
        page = get(client, world, f"/fhir/Procedure?_count=4&_offset={offset}&_total=none")
        ids = [entry["resource"]["id"] for entry in page.get("entry", [])]
        assert ids == accurate[offset : offset + 4], offset
        has_next = any(ln["relation"] == "next" for ln in page["link"])
        assert has_next == (offset + 4 < len(accurate)), offset


def test_few_matches_keep_an_exact_total(world: World, client: Any, small_cap: int) -> None:
    everything = get(client, world, "/fhir/Patient?_count=100&_total=accurate")
    patient = everything["entry"][0]["resource"]["id"]
    for query in (f"_id={patient}", "identifier=nothing|none"):
        for mode in ("", "&_total=estimate"):
            page = get(client, world, f"/fhir/Patient?{query}{mode}")
            assert page["total"] == len(page.get("entry", [])) <= 1
    # _count=0 asks for the count alone: exact, whatever its size
    assert get(client, world, "/fhir/Patient?_count=0")["total"] == everything["total"]
    assert "total" not in get(client, world, "/fhir/Patient?_count=0&_total=none")


def test_unknown_total_mode_is_refused(world: World, client: Any) -> None:
    answer = client.get("/fhir/Patient?_total=maybe", **world.auth("clinician"))
    assert answer.status_code == 400
    assert "_total" in json.loads(answer.content)["issue"][0]["diagnostics"]
