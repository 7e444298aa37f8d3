"""The trigger-kept scores of each time point (``followup 0010``, ADR 0020 §6) equal the pivot
of its live responses after every kind of write: the bulk loader (COPY on PostgreSQL), a
portal submission, ORM saves, ``update()`` of many rows, voids, deletes — checked on both
databases, and as a property over random sequences of those writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fhir.test_import_lossless import clinic, source  # noqa: F401 (fixtures)
from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.followup.models import QuestionnaireResponse, TimePointScores
from vertebra.followup.services import submit_responses
from vertebra.followup.worker import open_windows
from vertebra.interop.importer import import_fhir_folder
from vertebra.outcomes.selectors import BAND_COLUMNS, SCORE_COLUMNS

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
KEPT_COLUMNS = [
    *SCORE_COLUMNS.values(),
    *BAND_COLUMNS.values(),
    "startback_band",
    "startback_at",
    "startback_id",
]


def pivot() -> dict[int, tuple[Any, ...]]:
    """Time point -> the kept columns, computed in Python from its live responses."""
    found: dict[int, dict[str, Any]] = {}
    rows = QuestionnaireResponse.objects.filter(
        voided_at__isnull=True,
        instrument_id__in=[*SCORE_COLUMNS, *BAND_COLUMNS, "startback"],
    ).values_list("time_point_id", "instrument_id", "score", "band", "submitted_at", "id")
    for tp_id, instrument, score, band, submitted_at, pk in rows:
        row = found.setdefault(tp_id, dict.fromkeys(KEPT_COLUMNS))
        if instrument in SCORE_COLUMNS:
            row[SCORE_COLUMNS[instrument]] = score
        if instrument in BAND_COLUMNS and band:
            row[BAND_COLUMNS[instrument]] = band
        if instrument == "startback" and band:
            row.update(startback_band=band, startback_at=submitted_at, startback_id=pk)
    return {tp: tuple(row[c] for c in KEPT_COLUMNS) for tp, row in found.items()}


def kept() -> dict[int, tuple[Any, ...]]:
    """Time point -> the kept columns, as the triggers wrote them."""
    rows = TimePointScores.objects.values_list("time_point_id", *KEPT_COLUMNS)
    return {row[0]: tuple(row[1:]) for row in rows}


@pytest.fixture
def loaded(db: Any) -> None:
    load_cohort(generate_cohort(30, 5, today=TODAY), now=NOW)


def test_the_kept_columns_are_the_analysed_instruments() -> None:
    """A new analysed instrument needs its column and new triggers (a migration)."""
    fields = [f.name for f in TimePointScores._meta.get_fields() if f.name != "time_point"]
    assert fields == KEPT_COLUMNS


def test_the_loader_keeps_the_scores(loaded: None) -> None:
    expected = pivot()
    assert kept() == expected
    assert len(expected) > 60
    columns = list(zip(*expected.values(), strict=True))
    for name, values in zip(KEPT_COLUMNS, columns, strict=True):
        assert any(v is not None for v in values), f"{name} never filled by the loader"


def test_updates_voids_and_deletes_recompute(loaded: None) -> None:
    odi = QuestionnaireResponse.objects.filter(instrument_id="odi", voided_at__isnull=True)
    # update() of many rows: a new score, then a void
    QuestionnaireResponse.objects.filter(pk__in=list(odi.values_list("pk", flat=True)[:5])).update(
        score=77.0
    )
    assert kept() == pivot()
    QuestionnaireResponse.objects.filter(pk__in=list(odi.values_list("pk", flat=True)[:3])).update(
        voided_at=NOW
    )
    assert kept() == pivot()
    # one ORM save of a band (work status) and of the STarT Back band
    for instrument, band in (("work_status", "unemployed"), ("startback", "high")):
        response = QuestionnaireResponse.objects.filter(instrument_id=instrument).first()
        assert response is not None
        response.band = band
        response.save()
    assert kept() == pivot()
    # an update that changes nothing kept (the answers' extras) leaves the rows as they were
    before = kept()
    QuestionnaireResponse.objects.filter(instrument_id="nrs_back").update(extras={"x": 1})
    assert kept() == before == pivot()
    # every analysed response of one time point voided: its row goes
    tp_id = next(iter(before))
    QuestionnaireResponse.objects.filter(time_point_id=tp_id).update(voided_at=NOW)
    assert tp_id not in kept() and kept() == pivot()
    # deletes (an analysed response nothing refers to)
    deletable = QuestionnaireResponse.objects.filter(
        instrument_id__in=list(SCORE_COLUMNS), escalations__isnull=True
    )[:10]
    QuestionnaireResponse.objects.filter(pk__in=[r.pk for r in deletable]).delete()
    assert kept() == pivot()


@pytest.mark.django_db
@pytest.mark.parametrize("careful", [False, True], ids=["bulk", "careful"])
def test_the_fhir_importer_keeps_the_scores(
    source: Any,  # noqa: F811
    clinic: Any,  # noqa: F811
    careful: bool,
) -> None:
    report = import_fhir_folder(
        source, clinic_id=clinic.pk, username="importer", today=TODAY, now=NOW, careful=careful
    )
    assert report.patients_imported == 40
    expected = pivot()
    assert len(expected) > 40 and kept() == expected


@pytest.mark.django_db
def test_a_portal_submission_is_kept_in_its_transaction() -> None:
    schedule = make_schedule(start=T0, today=T0)
    tp = point(schedule, "week_6")
    open_windows(at(tp.opens))
    tp.refresh_from_db()
    with transaction.atomic():
        submit_responses(
            tp, answers_for(tp), "key-kept-0123456789", at(tp.opens), psfs_names=PSFS_NAMES
        )
        row = TimePointScores.objects.get(time_point_id=tp.pk)
    assert (row.odi, row.nrs_back) == (40.0, 6.0)
    assert kept() == pivot()


WRITES = st.lists(
    st.tuples(
        st.sampled_from(["score", "void", "unvoid", "band", "delete"]),
        st.integers(min_value=0, max_value=10_000),
        st.floats(min_value=0, max_value=100, allow_nan=False) | st.none(),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(writes=WRITES)
def test_any_sequence_of_writes_keeps_the_pivot(loaded: None, writes: list[Any]) -> None:
    """Property: whatever sequence of single-row writes, the kept rows equal the pivot."""
    ids = list(
        QuestionnaireResponse.objects.filter(escalations__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        for kind, pick, value in writes:
            target = QuestionnaireResponse.objects.filter(pk=ids[pick % len(ids)])
            if kind == "score":
                target.update(score=value)
            elif kind == "void":
                target.update(voided_at=NOW)
            elif kind == "unvoid":
                target.update(voided_at=None)
            elif kind == "band":
                target.update(band="" if value is None else f"band{int(value)}")
            else:
                target.delete()
            assert kept() == pivot()
        transaction.set_rollback(True)  # each example starts from the loaded registry
