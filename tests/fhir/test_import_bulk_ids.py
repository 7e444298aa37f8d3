"""Ids of the bulk import's COPY writes (ADR 0016, "COPY writing"): reserved from the table's own
sequence, so a writer inserting into the live registry meanwhile never collides with them
(PostgreSQL), and never an id the table has had before (SQLite's AUTOINCREMENT). Rows written
from instances read back as the ORM wrote them."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import connections, transaction

from vertebra.cohort.bulk import FrameWriter, instances_frame, prepare_instances, reserve_ids
from vertebra.followup import models as fm
from vertebra.registry import models as m


def _write(model: type[m.Clinic], rows: list[m.Clinic], ids: list[int]) -> None:
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
    prepare_instances(model, rows)
    with FrameWriter() as writer:
        writer.write(model, instances_frame(model, rows))


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgresql  # the PostgreSQL pass only (no skip is ever reported in CI)
def test_reserved_ids_never_collide_with_a_concurrent_insert() -> None:
    """Another connection inserts (and commits) while a batch holds reserved ids and has not
    written them yet: its row takes the next free id, ours still go in, all distinct."""
    other = connections.create_connection("default")
    try:
        with transaction.atomic():
            ids = reserve_ids(m.Clinic, 5)
            assert ids == sorted(ids) and len(set(ids)) == 5
            with other.cursor() as cursor:  # autocommit: committed at once
                cursor.execute(
                    f"INSERT INTO {m.Clinic._meta.db_table} (name, regulatory_status, nct_id, "
                    "irb, ind_number, lab_accreditation, updated_at) "
                    "VALUES ('Concurrent clinic', 'none', '', '', '', '', now()) RETURNING id"
                )
                theirs = cursor.fetchone()[0]
            assert theirs not in ids
            _write(m.Clinic, [m.Clinic(name=f"Batch clinic {n}") for n in range(5)], ids)
    finally:
        other.close()
    assert sorted(m.Clinic.objects.values_list("id", flat=True)) == sorted([*ids, theirs])
    # The ORM goes on from the sequence too: no collision with either.
    assert m.Clinic.objects.create(name="Later").pk not in {*ids, theirs}


@pytest.mark.django_db
def test_reserved_ids_are_new_to_the_table() -> None:
    """Never an id the table has had, even one whose row was deleted (AUTOINCREMENT on SQLite,
    the sequence on PostgreSQL)."""
    with transaction.atomic():
        first = m.Clinic.objects.create(name="A")
        last = m.Clinic.objects.create(name="B")
        deleted = last.pk
        last.delete()
        ids = reserve_ids(m.Clinic, 3)
        assert min(ids) > deleted > first.pk
        _write(m.Clinic, [m.Clinic(name=f"C{n}") for n in range(3)], ids)
    assert m.Clinic.objects.count() == 4


@pytest.mark.django_db
def test_rows_written_from_instances_read_back_as_the_orm_wrote_them() -> None:
    """Dates, datetimes, JSON, UUIDs, floats and NULLs through instances_frame + FrameWriter
    equal the same instance saved by the ORM (every concrete field but the id)."""
    clinic = m.Clinic.objects.create(name="Clinic")
    patient = m.Patient.objects.create(
        clinic=clinic, mrn="M1", given_name="A", family_name="B",
        date_of_birth=dt.date(1970, 1, 2), sex="female",
    )  # fmt: skip
    episode = m.TreatmentEpisode.objects.create(
        patient=patient, arm="cell_therapy", start_date=dt.date(2026, 1, 5)
    )
    schedule = fm.FollowUpSchedule.objects.create(
        episode=episode, protocol_id="p", protocol_version="1", treatment_date=episode.start_date,
        created_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), updated_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
    )  # fmt: skip
    when = dt.datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=dt.UTC)

    def point(key: str) -> fm.FollowUpTimePoint:
        return fm.FollowUpTimePoint(
            schedule=schedule, patient=patient, clinic_id=patient.clinic_id, key=key, label="Month 1", months=1.5,
            target=dt.date(2026, 2, 5), opens=dt.date(2026, 2, 1), closes=dt.date(2026, 2, 9),
            instruments=["odi", {"nrs": [1, 2.5, None, "é"]}], status="completed",
            completed_at=when, public_id=uuid.uuid4(),
        )  # fmt: skip

    by_orm = point("m1")
    by_orm.save()
    by_copy = point("m2")
    with transaction.atomic():
        _write(fm.FollowUpTimePoint, [by_copy], reserve_ids(fm.FollowUpTimePoint, 1))
    names = [f.attname for f in fm.FollowUpTimePoint._meta.concrete_fields]
    orm, copied = (
        fm.FollowUpTimePoint.objects.values(*names).get(pk=row.pk) for row in (by_orm, by_copy)
    )
    for row, given in ((orm, by_orm), (copied, by_copy)):
        assert row.pop("id") == given.pk
        assert row.pop("key") == given.key
        assert row.pop("public_id") == given.public_id
    assert orm == copied


@pytest.mark.django_db
def test_batch_audit_writes_every_column_of_an_audit_row() -> None:
    """The COPY of the batch's audit records names every column of ``AuditEvent`` (a field added
    to the model must be added to the frame too, not left to a database default)."""
    from django.contrib.auth import get_user_model

    from vertebra.interop import importbulk
    from vertebra.registry.permissions import Actor

    user = get_user_model().objects.create(username="importer")
    m.Membership.objects.create(
        user=user, clinic=m.Clinic.objects.create(name="C"), role="clinician"
    )
    with transaction.atomic():
        audit = importbulk.BatchAudit(Actor.for_user(user, "clinician"), dt.datetime.now(dt.UTC))
        audit.create("thing", 1, clinic_id=None, patient_id=None, new_values={"n": 1.0})
        frame = audit._frame([1])
    assert sorted(frame.columns) == sorted(f.attname for f in m.AuditEvent._meta.concrete_fields)
