"""Racing corrections of one record (real threads, real transactions): exactly one editor of a
version wins, every other is refused as stale, and nothing is lost or silently overwritten."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient
from vertebra.registry import corrections, services
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.errors import StaleEditError
from vertebra.registry.models import AuditEvent, Harvest, Role

THREADS = 4


@pytest.mark.postgresql  # SQLite admits one writer at a time (BEGIN IMMEDIATE): no race to run
@pytest.mark.django_db(transaction=True)
def test_racing_editors_of_one_version_one_wins_the_others_are_stale() -> None:
    clinic = make_clinic("Race Clinic")
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = make_patient(clinic)
    episode = services.start_episode(
        actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0
    )
    harvest = services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="adipose", harvested_on=DAY0, volume_ml=10
    )
    start = threading.Barrier(THREADS)
    won: list[float] = []
    stale: list[float] = []
    errors: list[BaseException] = []

    def editor(n: int) -> None:
        value = float(20 + n)
        try:
            start.wait()
            corrections.correct_record(
                actor=clinician, record_type="harvests", object_id=harvest.pk,
                expected_version=1, changes={"volume_ml": value}, reason=f"editor {n}",
            )  # fmt: skip
            won.append(value)
        except StaleEditError:
            stale.append(value)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=editor, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(won) == 1 and len(stale) == THREADS - 1
    stored = Harvest.objects.get(pk=harvest.pk)
    assert (stored.volume_ml, stored.version) == (won[0], 2)
    rows = AuditEvent.objects.filter(action="update", object_type="harvest")
    assert [row.new_values["volume_ml"] for row in rows] == won
    assert verify_audit_chain() == []
