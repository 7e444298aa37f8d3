"""The trigger-kept time-point counts (``followup 0008``, ADR 0023 §10) equal a live
``COUNT(*) GROUP BY clinic, status`` after every kind of write: the bulk loader (COPY on
PostgreSQL), ORM saves, ``update()`` of many rows, deletes, and the worker's compaction."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Count, ProtectedError

from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.followup.counts import compact, status_counts
from vertebra.followup.models import FollowUpTimePoint, TimePointCount, TimePointStatus
from vertebra.registry.models import Clinic

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def live() -> dict[tuple[int, str], int]:
    """(clinic, status) -> time points, counted from the time points themselves."""
    rows = (
        FollowUpTimePoint.objects.values_list("patient__clinic_id", "status")
        .order_by()
        .annotate(n=Count("id"))
    )
    return {(clinic, status): n for clinic, status, n in rows}


def kept() -> dict[tuple[int, str], int]:
    """The same from the counts, per clinic through :func:`status_counts`."""
    found: dict[tuple[int, str], int] = {}
    for clinic in Clinic.objects.values_list("pk", flat=True):
        for status, n in status_counts([clinic]).items():
            if n:
                found[(clinic, status)] = n
    return found


@pytest.fixture
def loaded(db: Any) -> list[int]:
    load_cohort(generate_cohort(30, 5, today=TODAY), now=NOW)
    return list(Clinic.objects.order_by("pk").values_list("pk", flat=True))


def test_counts_follow_every_write(loaded: list[int]) -> None:
    assert kept() == live() and sum(live().values()) > 100
    # update() of many rows at once (the worker closes windows this way)
    FollowUpTimePoint.objects.filter(status=TimePointStatus.OPEN).update(
        status=TimePointStatus.MISSED
    )
    assert kept() == live()
    # one ORM save, and a save that changes nothing counted
    point = FollowUpTimePoint.objects.filter(status=TimePointStatus.PENDING).first()
    assert point is not None
    point.status = TimePointStatus.OPEN
    point.save()
    point.label = "renamed"
    point.save()
    assert kept() == live()
    # a delete (a time point nothing else refers to)
    deleted = 0
    for spare in FollowUpTimePoint.objects.filter(status=TimePointStatus.PENDING)[:20]:
        try:
            with transaction.atomic():
                spare.delete()
                deleted += 1
        except ProtectedError:
            continue  # something refers to it
    assert deleted and kept() == live()
    # the per-clinic sums add up across clinics
    both = status_counts(loaded[:2])
    expected: Counter[str] = Counter()
    for (clinic, status), n in live().items():
        if clinic in loaded[:2]:
            expected[status] += n
    assert {k: v for k, v in both.items() if v} == dict(expected)


def test_compaction_keeps_the_sums(loaded: list[int]) -> None:
    FollowUpTimePoint.objects.filter(status=TimePointStatus.OPEN).update(
        status=TimePointStatus.MISSED
    )
    before = TimePointCount.objects.count()
    assert compact() == before
    groups = {(c, s) for c, s in live()}
    assert TimePointCount.objects.count() == len(groups) and kept() == live()
    # a second load adds to the compacted rows
    load_cohort(generate_cohort(10, 6, today=TODAY), now=NOW)
    assert kept() == live()
