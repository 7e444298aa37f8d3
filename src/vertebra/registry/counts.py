"""Patients per clinic from the trigger-kept running sums (``PatientCount``; ADR 0023 §10).

Contracts
---------
* :func:`patient_counts` / :func:`patients_in` answer "how many patients have these clinics"
  from a few rows per clinic, whatever the registry's size; they equal ``COUNT(*)`` of the
  clinics' patients at every moment, because database triggers write the deltas in the
  writer's own transaction (``registry 0016``; ``tests/registry/test_patient_counts.py``).
* :func:`fold` folds a delta table into one row per key; it deletes exactly the rows it sums
  (``DELETE ... RETURNING`` in one transaction), so a delta committed meanwhile is never lost.
  The follow-up worker folds both count tables each pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Sum

from vertebra.registry.models import PatientCount

__all__ = ["compact_patient_counts", "fold", "patient_counts", "patients_in", "sums_by"]


def sums_by(model: type[models.Model], key: str, clinic_ids: Iterable[int]) -> dict[Any, int]:
    """``key`` value -> the sum of ``model``'s signed ``n`` over the clinics' delta rows (a
    count table kept by triggers and folded by :func:`fold`; keys with no rows are missing)."""
    rows = (
        model._default_manager.filter(clinic_id__in=list(clinic_ids))
        .order_by()
        .values(key)
        .annotate(total=Sum("n"))
        .values_list(key, "total")
    )
    return {value: int(total or 0) for value, total in rows}


def patient_counts(clinic_ids: Iterable[int]) -> dict[int, int]:
    """clinic id -> its number of patients (clinics with none may be missing)."""
    return sums_by(PatientCount, "clinic_id", clinic_ids)


def patients_in(clinic_ids: Iterable[int]) -> int:
    """How many patients the clinics have together."""
    return sum(patient_counts(clinic_ids).values())


def fold(model: type[models.Model], keys: tuple[str, ...]) -> int:
    """Replace ``model``'s rows (``keys`` + a signed ``n``) by one row per key with their sum
    (none when it is 0); return how many rows were folded."""
    table = model._meta.db_table
    columns = ", ".join((*keys, "n"))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} RETURNING {columns}")
        gone = cursor.fetchall()
        sums: dict[tuple[object, ...], int] = defaultdict(int)
        for *key, n in gone:
            sums[tuple(key)] += n
        model._default_manager.bulk_create(
            model(**dict(zip(keys, key, strict=True)), n=n)
            for key, n in sorted(sums.items(), key=lambda item: str(item[0]))
            if n
        )
    return len(gone)


def compact_patient_counts() -> int:
    """Fold the patient-count deltas (one row per clinic after it)."""
    return fold(PatientCount, ("clinic_id",))
