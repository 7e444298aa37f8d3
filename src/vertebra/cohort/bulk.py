"""Write many rows of Django models fast: COPY on PostgreSQL, executemany on SQLite.

Rows arrive as pandas frames whose columns are model attribute names (``patient_id``) holding
database-ready values: integers, floats (NaN is NULL), booleans, text (None is NULL), dates and
datetimes as text (see :func:`db_date_texts`, :func:`db_datetime_text`) and JSON columns as
already-serialised JSON text. Primary keys are assigned by the caller (:class:`IdAllocator`) so
related rows can refer to each other before anything is written; PostgreSQL sequences are moved
past them afterwards (:func:`reset_sequences`).

On PostgreSQL a :class:`FrameWriter` sends the frames from a background thread, in order, on
the current transaction's connection, so the server stores one chunk while Python builds the
next (each side has its own core). See docs/adr/0007-bulk-loading.md.

Writers into a live registry (the FHIR import, ADR 0016) take their ids from the tables'
own sequences instead (:func:`reserve_ids`) and turn model instances into frames with
:func:`instances_frame`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
from django.db import connection, models
from django.db.models import Model


class IdAllocator:
    """Hands out consecutive primary keys per model, starting after the current maximum."""

    def __init__(self) -> None:
        self._next: dict[type[Model], int] = {}

    def take(self, model: type[Model], count: int) -> np.ndarray:
        """Reserve ``count`` new ids for ``model`` and return them (int64 array)."""
        if model not in self._next:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT MAX(id) FROM {connection.ops.quote_name(model._meta.db_table)}"
                )
                current = cursor.fetchone()[0] or 0
            self._next[model] = current + 1
        start = self._next[model]
        self._next[model] = start + count
        return np.arange(start, start + count, dtype=np.int64)


def reserve_ids(model: type[Model], count: int) -> list[int]:
    """``count`` new primary keys of ``model``'s table, ascending, safe against concurrent
    writers; the caller inserts its rows with them in the current transaction.

    PostgreSQL: drawn from the table's own id sequence (``nextval``, as an INSERT would), so a
    concurrent insert, which draws from the same sequence, never gets one of them (unlike
    :class:`IdAllocator`'s MAX(id), which only a loader holding the tables to itself may use).
    A rolled-back transaction leaves a gap, as a rolled-back INSERT does.
    SQLite: after the largest id the table has ever had (MAX(id) and ``sqlite_sequence``:
    AUTOINCREMENT never reuses an id). Safe because the caller is inside a write transaction
    (``transaction_mode`` IMMEDIATE: BEGIN takes the database's write lock, so nobody else
    inserts until the commit); the ids must be inserted before the next call for that table.
    """
    if count <= 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, model._meta.pk.column, count],
            )
            return sorted(int(row[0]) for row in cursor.fetchall())
        if not connection.in_atomic_block:
            raise RuntimeError("reserve_ids must be called inside transaction.atomic()")
        cursor.execute(
            f"SELECT MAX({model._meta.pk.column}) FROM {connection.ops.quote_name(table)}"
        )
        largest = int(cursor.fetchone()[0] or 0)
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        found = cursor.fetchone()
        start = max(largest, int(found[0]) if found else 0) + 1
    return list(range(start, start + count))


def _db_value(field: models.Field[Any, Any]) -> Callable[[Any], Any] | None:
    """How a value of ``field`` is sent (see the module docstring); None: as it is (text,
    numbers, booleans, foreign keys: what Django would send, before the driver adapts it)."""
    if isinstance(field, models.DateTimeField):  # db_datetime_text, the vendor asked once
        utc = dt.UTC
        if connection.vendor == "sqlite":
            return lambda value: str(value.astimezone(utc).replace(tzinfo=None))
        return lambda value: value.astimezone(utc).isoformat()
    if isinstance(field, models.DateField):
        return dt.date.isoformat
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return lambda value: json.dumps(value, cls=encoder)  # Django's adapt_json_value
    if isinstance(field, models.DecimalField):
        return lambda value: str(field.to_python(value))
    if isinstance(field, models.UUIDField):  # native on PostgreSQL, 32 hex digits on SQLite
        return lambda value: str(field.get_db_prep_value(value, connection))
    if isinstance(
        field,
        models.CharField | models.TextField | models.IntegerField | models.BooleanField
        | models.FloatField | models.AutoField | models.ForeignKey,
    ):  # fmt: skip
        return None
    return lambda value: field.get_db_prep_save(value, connection)


def prepare_instances(model: type[Model], instances: Sequence[Model]) -> None:
    """What ``bulk_create`` does to instances before it inserts them: each field's ``pre_save``
    where it computes the value (``auto_now``, ``auto_now_add``) and the check that related
    objects are saved (copying their ids). Call it before snapshotting the rows for audit."""
    auto = [
        f
        for f in model._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    for instance in instances:
        for field in auto:
            field.pre_save(instance, True)
        # Django's own step of bulk_create (a private method: the stubs do not list it).
        cast(Any, instance)._prepare_related_fields_for_save(operation_name="bulk_create")


def mark_saved(instances: Iterable[Model]) -> None:
    """Set the state ``bulk_create`` leaves on instances it inserted."""
    alias = connection.alias
    for instance in instances:
        instance._state.adding = False
        instance._state.db = alias


def instances_frame(
    model: type[Model], instances: Sequence[Model], *, with_id: bool = True
) -> pd.DataFrame:
    """The concrete fields of ``instances`` (already prepared: :func:`prepare_instances`) as a
    frame for :class:`FrameWriter`, values converted as Django converts them for the current
    database (dates and datetimes as text, JSON as its text, UUIDs, decimals). Without
    ``with_id`` the id column is left out (the database assigns it)."""
    fields = [f for f in model._meta.concrete_fields if with_id or not f.primary_key]
    columns: dict[str, list[Any]] = {}
    for field in fields:
        values = [getattr(instance, field.attname) for instance in instances]
        convert = _db_value(field)
        if convert is not None:
            values = [None if value is None else convert(value) for value in values]
        columns[field.attname] = values
    return pd.DataFrame(columns, dtype=object)


def db_datetime_text(value: dt.datetime) -> str:
    """An aware datetime as the current database stores it (UTC; SQLite: Django's naive form)."""
    utc = value.astimezone(dt.UTC)
    if connection.vendor == "sqlite":
        return str(utc.replace(tzinfo=None))
    return utc.isoformat()


def db_date_texts(values: Any) -> list[str | None]:
    """Dates (datetime64 or date values) as ISO ``YYYY-MM-DD`` text, None where missing."""
    days = pd.Series(values).to_numpy(dtype="datetime64[D]")
    texts = np.datetime_as_string(days, unit="D").tolist()
    return [None if t == "NaT" else t for t in texts]


def _columns_sql(model: type[Model], frame: pd.DataFrame) -> tuple[str, str]:
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    missing = [name for name in frame.columns if name not in by_attname]
    if missing:
        raise ValueError(f"{model.__name__} has no fields {missing}")
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(by_attname[str(c)].column)) for c in frame)
    return table, columns


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as PostgreSQL-ready CSV: text always quoted, NULL as an unquoted empty field."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue()


def _sqlite_rows(frame: pd.DataFrame) -> Iterable[tuple[Any, ...]]:
    plain = cast(Any, frame.astype(object)).where(frame.notna(), None)  # stubs lack None
    return plain.itertuples(index=False, name=None)


class FrameWriter:
    """Inserts frames in the order given, inside the caller's transaction.

    PostgreSQL: a background thread runs one ``COPY ... FROM STDIN (FORMAT csv)`` per frame on
    the transaction's own connection; at most ``depth`` frames wait in memory. The caller must
    not use the connection between :meth:`write` and :meth:`close`. An error in the thread is
    raised by the next :meth:`write` or by :meth:`close` (the transaction then rolls back).
    SQLite: writes inline with ``executemany``. Use as a context manager.
    """

    def __init__(self, depth: int = 3) -> None:
        self.counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[tuple[type[Model], pd.DataFrame] | None] = queue.Queue(depth)
        if connection.vendor == "postgresql":
            connection.ensure_connection()
            self._raw = connection.connection
            self._thread = threading.Thread(target=self._run, name="bulk-copy", daemon=True)
            self._thread.start()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(raise_error=exc is None)

    def write(self, model: type[Model], frame: pd.DataFrame) -> None:
        """Queue (PostgreSQL) or insert (SQLite) the rows of ``frame`` into ``model``'s table."""
        self._raise_error()
        name = model._meta.model_name or model.__name__.lower()
        self.counts[name] = self.counts.get(name, 0) + len(frame)
        if len(frame) == 0:
            return
        if self._thread is None:
            self._insert_sqlite(model, frame)
        else:
            self._queue.put((model, frame))

    def close(self, *, raise_error: bool = True) -> None:
        """Wait until every queued frame is written; raise the writer's error, if any."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if raise_error:
            self._raise_error()

    def _raise_error(self) -> None:
        """Raise the writer thread's error as Django's own (IntegrityError, DataError, ...)."""
        if self._error is not None:
            with connection.wrap_database_errors:
                raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the transaction will roll back
            model, frame = item
            try:
                self._copy(model, frame)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def _copy(self, model: type[Model], frame: pd.DataFrame) -> None:
        table, columns = _columns_sql(model, frame)
        data = _csv_bytes(frame)
        with (
            self._raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
        ):
            view = memoryview(data)
            for start in range(0, len(view), 1 << 22):
                copy.write(view[start : start + (1 << 22)])

    @staticmethod
    def _insert_sqlite(model: type[Model], frame: pd.DataFrame) -> None:
        table, columns = _columns_sql(model, frame)
        marks = ", ".join(["%s"] * len(frame.columns))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(_sqlite_rows(frame))
            )


@contextmanager
def foreign_keys_checked_at_end(models: Iterable[type[Model]]) -> Iterator[None]:
    """PostgreSQL: check the foreign keys of ``models``' tables once, in bulk, after the block.

    PostgreSQL checks a foreign key row by row (a query per row); for millions of rows that is
    most of the server's work. As its manual advises for bulk loads ("Populating a Database":
    remove foreign key constraints, load, re-create them), the constraints are dropped inside
    the caller's transaction and re-created after the block, which checks every row in one
    join. Any violation raises and rolls the whole transaction back, constraints included.
    The tables stay locked (ACCESS EXCLUSIVE) until the transaction ends: meant for loads into
    a registry nobody is using meanwhile (the demo, benchmarks). No-op on SQLite.
    """
    if connection.vendor != "postgresql":
        yield
        return
    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) "
            "ORDER BY conrelid, conname",
            [tables],
        )
        constraints = cursor.fetchall()
        for table, name, _definition in constraints:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {connection.ops.quote_name(name)}")
    yield
    with connection.cursor() as cursor:
        for table, name, definition in constraints:
            cursor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {connection.ops.quote_name(name)} {definition}"
            )


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
