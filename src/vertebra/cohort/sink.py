"""Where the bulk loader's rows go: the table (through a :class:`FrameWriter`) and, for each
created object, one ``create`` record on the hash-chained audit trail.

The records are the ones the registry services write for the same objects (same fields, same
canonical JSON, same hash rule: :func:`vertebra.registry.audit.record_template`, same MAC with
the current key), by the system account ``synthetic-loader``, at one instant, in the order the
rows are written. Like every audit row they carry their content hash and MAC; the trail seals
them (ADR 0021) once the frames are written (:meth:`AuditTrail.seal`), continuing the seal
chain under the chain lock the loader holds for the whole load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, models
from django.db.models import Model

from vertebra.cohort import jsontext
from vertebra.cohort.bulk import FrameWriter, db_datetime_text
from vertebra.registry.audit import (
    SEAL_COLUMNS,
    canonical_json,
    chain_seals,
    record_template,
    seal_head,
    timestamp_json,
)
from vertebra.registry.auditseal import keyring
from vertebra.registry.models import AuditEvent, AuditSeal, Correctable

LOADER_USERNAME = "synthetic-loader"
_OPEN_FIELDS = ("clinic_id", "new_values", "object_id", "object_type", "patient_id")
#: Rows read back and sealed per step of :meth:`AuditTrail.seal` (bounded memory at any size).
SEAL_CHUNK = 100_000


def _with_correction_columns(model: type[Model], frame: pd.DataFrame, now_db: str) -> pd.DataFrame:
    """``frame`` with the columns every correctable record starts with (version 1, not voided)
    and the last-updated time ``now_db`` of any table that keeps one (COPY and executemany
    bypass ``auto_now``) added when missing, so the audit record is the services' full
    snapshot of the row."""
    count = len(frame)
    defaults: dict[str, Callable[[], Any]] = {}
    if issubclass(model, Correctable):
        defaults = {
            "version": lambda: 1,
            "voided_at": lambda: None,
            "voided_by_id": lambda: pd.array([None] * count, dtype="Int64"),
            "void_reason": lambda: "",
        }
    if any(f.name == "updated_at" for f in model._meta.concrete_fields):
        defaults["updated_at"] = lambda: now_db
    missing = {name: make() for name, make in defaults.items() if name not in frame.columns}
    return frame.assign(**missing) if missing else frame


def _id_texts(values: Any, count: int) -> list[str]:
    """Ids (an array, nullable, or None for all) as JSON numbers."""
    if values is None:
        return ["null"] * count
    return jsontext.integers(pd.Series(values))


class AuditTrail:
    """Appends ``create`` records for bulk-written objects, then seals them (ADR 0021).

    Construct it inside the caller's transaction while holding the chain lock
    (:func:`vertebra.registry.audit.lock_chain`; on SQLite the write transaction is exclusive)
    and hold both until :meth:`seal` has run: the seal chain's head is read here, and nobody
    else may append seals meanwhile. Other writers may still insert audit rows (they take no
    lock); their rows are told apart by this trail's ``request_id``.
    """

    def __init__(self, actor_id: int, now: dt.datetime, reason: str) -> None:
        self._ring = keyring()  # every row gets its MAC, as record_audit gives it (ADR 0008)
        self._head = seal_head()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT MAX(id) FROM {connection.ops.quote_name(AuditEvent._meta.db_table)}"
            )
            self._after_id = int(cursor.fetchone()[0] or 0)  # every row of ours comes after
        self.request_id = f"synth-{uuid.uuid4().hex[:12]}"
        self.rows = 0
        self._constants = {
            "occurred_at": db_datetime_text(now),
            "actor_user_id": actor_id,
            "actor_username": LOADER_USERNAME,
            "role": "system",
            "action": "create",
            "old_values": None,
            "reason": reason,
            "request_id": self.request_id,
        }
        self._template, open_fields = record_template(
            {
                "action": '"create"',
                "actor_user_id": str(int(actor_id)),
                "actor_username": canonical_json(LOADER_USERNAME),
                "occurred_at": timestamp_json(now),
                "old_values": "null",
                "reason": canonical_json(reason),
                "request_id": canonical_json(self.request_id),
                "role": '"system"',
            }
        )
        # The loop in created() fills the open fields positionally, in this order.
        assert open_fields == _OPEN_FIELDS, open_fields

    def created(
        self,
        object_type: str,
        object_ids: Sequence[int] | np.ndarray,
        new_values: Sequence[str],
        *,
        clinic_ids: Any,
        patient_ids: Any,
    ) -> pd.DataFrame:
        """The audit rows (a frame for :class:`FrameWriter`) of objects just created, each with
        its content hash and MAC; write them in the order made (:meth:`seal` seals in id order).

        ``new_values`` are canonical JSON texts; ``clinic_ids``/``patient_ids`` are arrays (or
        None when the objects belong to no clinic/patient).
        """
        count = len(object_ids)
        object_texts = [f'"{int(i)}"' for i in object_ids]
        type_text = canonical_json(object_type)
        clinics = _id_texts(clinic_ids, count)
        patients = _id_texts(patient_ids, count)
        hashes: list[str] = []
        macs: list[str] = []
        template, sha256 = self._template, hashlib.sha256
        mac_of = self._ring.row_mac
        for clinic, values, object_text, patient in zip(
            clinics, new_values, object_texts, patients, strict=True
        ):
            text = template % (clinic, values, object_text, type_text, patient)
            digest = sha256(text.encode("utf-8")).hexdigest()
            hashes.append(digest)
            macs.append(mac_of(digest))
        self.rows += count
        frame = pd.DataFrame(
            {
                **{name: [value] * count for name, value in self._constants.items()},
                "clinic_id": _nullable_ids(clinic_ids, count),
                "patient_id": _nullable_ids(patient_ids, count),
                "object_type": [object_type] * count,
                "object_id": [str(int(i)) for i in object_ids],
                "new_values": list(new_values),
                "hash": hashes,
                "mac": macs,
                "mac_key": [self._ring.current_id] * count,
            }
        )
        return frame

    def seal(self) -> int:
        """Seal every row this trail wrote, in id order (the order written), continuing the
        seal chain from the head read at construction; return how many.

        Call once the frames are written (the :class:`FrameWriter` closed: this reads and
        writes on the connection), still in the transaction and under the chain lock.
        """
        table = connection.ops.quote_name(AuditEvent._meta.db_table)
        after, sealed = self._after_id, 0
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, hash FROM {table} WHERE id > %s AND request_id = %s "
                    f"ORDER BY id LIMIT {int(SEAL_CHUNK)}",
                    [after, self.request_id],
                )
                rows = [(int(i), str(h)) for i, h in cursor.fetchall()]
            if not rows:
                return sealed
            seals, self._head = chain_seals(rows, self._head, self._ring)
            frame = pd.DataFrame.from_records(seals, columns=list(SEAL_COLUMNS))
            with FrameWriter() as writer:
                writer.write(AuditSeal, frame)
            after, sealed = rows[-1][0], sealed + len(rows)


def _nullable_ids(values: Any, count: int) -> pd.Series:
    if values is None:
        return pd.Series([None] * count, dtype="Int64")
    return pd.Series(values, dtype="Int64").reset_index(drop=True)


class Sink:
    """Writes frames and their audit records; tracks how many rows of each kind were written."""

    def __init__(self, writer: FrameWriter, trail: AuditTrail, now: dt.datetime) -> None:
        self.writer = writer
        self.trail = trail
        self.now_db = db_datetime_text(now)
        self.now_json = jsontext.timestamp(now)

    def write(self, model: type[Model], frame: pd.DataFrame) -> None:
        """Rows audited as part of another object's record (time points, responses)."""
        self.writer.write(model, _with_correction_columns(model, frame, self.now_db))

    def created(
        self,
        model: type[Model],
        frame: pd.DataFrame,
        *,
        clinic_ids: Any,
        patient_ids: Any,
        object_type: str | None = None,
        new_values: Sequence[str] | None = None,
    ) -> None:
        """Write ``frame`` and one ``create`` record per row.

        The record's values are the row as written (the services' ``snapshot``) unless
        ``object_type`` and ``new_values`` give what the owning service records instead.
        """
        frame = _with_correction_columns(model, frame, self.now_db)
        self.writer.write(model, frame)
        kind = object_type or model._meta.model_name or model.__name__.lower()
        values = new_values if new_values is not None else self.snapshot_texts(model, frame)
        audit = self.trail.created(
            kind, frame["id"].to_numpy(), values, clinic_ids=clinic_ids, patient_ids=patient_ids
        )
        self.writer.write(AuditEvent, audit)

    def snapshot_texts(self, model: type[Model], frame: pd.DataFrame) -> list[str]:
        """Each row as the JSON object ``audit.snapshot`` records (columns by their field type)."""
        fields = {field.attname: field for field in model._meta.concrete_fields}
        texts = {name: self._column_texts(fields[name], frame[name]) for name in frame.columns}
        return jsontext.frame_objects(frame, texts)

    def _column_texts(self, field: models.Field[Any, Any], column: pd.Series) -> list[str]:
        converter: Callable[[Any], list[str]]
        if isinstance(field, models.BooleanField):
            converter = jsontext.booleans
        elif isinstance(field, models.FloatField):
            converter = jsontext.numbers
        elif isinstance(field, models.DateTimeField):
            # The loader stamps its rows with one instant; anything else is a mistake here.
            known = {self.now_db: self.now_json}
            return ["null" if v is None else known[v] for v in column.tolist()]
        elif isinstance(field, models.DateField):
            return jsontext.iso_dates(column.tolist())
        elif isinstance(field, models.JSONField):
            return ["null" if v is None else v for v in column.tolist()]
        elif isinstance(field, models.IntegerField | models.AutoField | models.ForeignKey):
            converter = jsontext.integers
        else:
            converter = jsontext.strings
        return converter(column)
