"""The patient list and search as they must behave at a national registry's size (ADR 0023).

The page is read ids-first and, past the middle, from the end (``selectors._page_of``): every
page must still be exactly the slice of the ordered result, for every sort; paging past the end
lands on the last page; the number of queries does not grow with the rows shown; name and MRN
search can use the trigram indexes on PostgreSQL; scoping and the audit row are unchanged.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.registry.factories import make_patient
from tests.registry.web import bearer, signed_in
from vertebra.registry import selectors
from vertebra.registry.models import AuditEvent, Clinic, Patient
from vertebra.registry.permissions import Actor
from vertebra.registry.views import PAGE_SIZE

pytestmark = pytest.mark.django_db

NAMES = ["Anders", "Berg", "Carlson", "Dahl", "Ek", "Berg", "Anders"]


def _many(clinic: Clinic, n: int, start: int = 0) -> list[Patient]:
    """``n`` patients with repeating family names (ties broken by given name, then id)."""
    return [
        make_patient(
            clinic, family_name=NAMES[i % len(NAMES)], given_name=f"G{(i * 7) % 5}", mrn=f"M{i:03d}"
        )
        for i in range(start, start + n)
    ]


@pytest.mark.parametrize("sort", list(selectors.SORTS))
def test_every_page_is_the_slice_of_the_ordered_result(
    coordinator: Actor, clinic: Clinic, other_clinic: Clinic, sort: str
) -> None:
    _many(clinic, 23)
    make_patient(other_clinic, family_name="Berg")  # another clinic's: never on a page
    expected = list(
        Patient.objects.filter(clinic=clinic)
        .order_by(*selectors.SORTS[sort])
        .values_list("pk", flat=True)
    )
    for limit in (1, 4, 10):
        for offset in range(0, 26):
            page = selectors.search_patients(
                actor=coordinator, sort=sort, limit=limit, offset=offset
            )
            assert page.total == 23
            assert [p.pk for p in page.items] == expected[offset : offset + limit], (limit, offset)


def test_search_across_many_matches_pages_through_all_of_them(
    coordinator: Actor, clinic: Clinic
) -> None:
    patients = _many(clinic, 35)
    bergs = sorted(
        (p for p in patients if p.family_name == "Berg"), key=lambda p: (p.given_name, p.pk)
    )
    seen = []
    for offset in range(0, len(bergs), 3):
        page = selectors.search_patients(actor=coordinator, search="bER", limit=3, offset=offset)
        assert page.total == len(bergs)
        seen += [p.pk for p in page.items]
    assert seen == [p.pk for p in bergs]
    # New rows carry no seq (ADR 0021): within one test the id is their order.
    rows = AuditEvent.objects.filter(action="search", object_type="patient").order_by("id")
    assert rows.count() == len(range(0, len(bergs), 3))
    last = rows.last()
    assert last is not None and last.new_values is not None
    assert last.new_values["patient_ids"] == seen[-len(last.new_values["patient_ids"]) :]


def test_paging_past_the_end_shows_the_last_page(coordinator: Actor, clinic: Clinic) -> None:
    _many(clinic, PAGE_SIZE + 3)
    client = signed_in(coordinator)
    response = client.get("/clinic/", {"page": 99, "q": "g"})
    assert response.status_code == 302
    assert response["Location"] == "/clinic/?q=g&page=2"
    response = client.get("/clinic/", {"page": 999_999_999})
    assert response.status_code == 302 and response["Location"] == "/clinic/?page=2"
    body = client.get(response["Location"]).content.decode()
    assert "Page 2 of 2" in body and len(re.findall(r'href="/clinic/patients/\d+/"', body)) == 3
    assert selectors.search_patients(actor=coordinator, offset=10_000).items == []


def test_api_offset_past_the_end_is_an_empty_page_with_the_total(
    coordinator: Actor, clinic: Clinic
) -> None:
    from django.test import Client

    _many(clinic, 5)
    response = Client().get("/api/v1/patients?offset=7", headers=bearer(coordinator))
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 5, "limit": 25, "offset": 7}


@pytest.mark.parametrize("path", ["/clinic/", "/clinic/?page=2", "/clinic/?q=berg"])
def test_the_list_page_reads_the_same_number_of_queries_for_3_or_60_patients(
    coordinator: Actor, clinic: Clinic, path: str
) -> None:
    _many(clinic, 3)
    client = signed_in(coordinator)
    client.get(path)  # warm: session, content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(path).status_code in (200, 302)
    _many(clinic, 57, start=3)
    with CaptureQueriesContext(connection) as many:
        assert client.get(path).status_code == 200
    assert len(many) == len(few) or path.endswith("page=2"), [q["sql"] for q in many]
    # A bound, not a count: the page's audited read is sealed in line on SQLite (ADR 0021).
    assert len(many) <= 22


@pytest.mark.postgresql
def test_name_and_mrn_search_can_use_the_trigram_indexes(
    coordinator: Actor, clinic: Clinic
) -> None:
    """The expressions Django writes for icontains/istartswith match the indexes' (0014)."""
    for lookup in ("family_name__icontains", "given_name__icontains", "mrn__istartswith"):
        query = Patient.objects.filter(**{lookup: "berg"}).order_by().values("pk")
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            # Tiny tables: forbid the other plans so the test asks "can", not "would".
            for plan in ("seqscan", "indexscan", "indexonlyscan"):
                cursor.execute(f"SET LOCAL enable_{plan} = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "_trgm" in plan, plan
