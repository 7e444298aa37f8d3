"""Insert many rows of a Django model fast: COPY on PostgreSQL, executemany on SQLite.

Rows are tuples in the order of the ``fields`` given (attribute names, e.g. ``patient_id``).
Primary keys are assigned by the caller (see :class:`IdAllocator`) so that related rows can
refer to each other before anything is written; PostgreSQL sequences are moved past them
afterwards so later ordinary inserts do not collide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField, Model


class RawJson(str):
    """JSON text already serialised by the caller: written to a JSON column verbatim."""


class IdAllocator:
    """Hands out consecutive primary keys per model, starting after the current maximum."""

    def __init__(self) -> None:
        self._next: dict[type[Model], int] = {}

    def take(self, model: type[Model], count: int) -> range:
        """Reserve ``count`` new ids for ``model`` and return them as a range."""
        if model not in self._next:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT MAX(id) FROM {connection.ops.quote_name(model._meta.db_table)}"
                )
                current = cursor.fetchone()[0] or 0
            self._next[model] = current + 1
        start = self._next[model]
        self._next[model] = start + count
        return range(start, start + count)


def _fields(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    return [by_attname[name] for name in names]


def insert_rows(model: type[Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert ``rows`` into ``model``'s table in the current transaction; return the count.

    JSON fields take plain Python values (dumped here). Database constraints still apply.
    """
    table = model._meta.db_table
    model_fields = _fields(model, fields)
    json_columns = [i for i, field in enumerate(model_fields) if isinstance(field, JSONField)]
    count = 0
    if connection.vendor == "postgresql":
        columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in model_fields)
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(
                f"COPY {connection.ops.quote_name(table)} ({columns}) FROM STDIN"
            ) as copy:
                for row in rows:
                    values = list(row)
                    for i in json_columns:
                        if values[i] is not None and not isinstance(values[i], RawJson):
                            values[i] = json.dumps(values[i], separators=(",", ":"))
                    copy.write_row(values)
                    count += 1
        return count
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in model_fields)
    marks = ", ".join(["%s"] * len(model_fields))
    sql = f"INSERT INTO {connection.ops.quote_name(table)} ({columns}) VALUES ({marks})"
    batch: list[list[Any]] = []
    with connection.cursor() as cursor:
        for row in rows:
            batch.append(
                [
                    str(value)
                    if isinstance(value, RawJson)
                    else field.get_db_prep_save(value, connection)
                    for field, value in zip(model_fields, row, strict=True)
                ]
            )
            if len(batch) >= 5000:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


def reset_sequences(models: Iterable[type[Model]]) -> None:
    """Move PostgreSQL id sequences past the ids inserted explicitly (no-op on SQLite)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {connection.ops.quote_name(table)}), 1))",
                [table],
            )
