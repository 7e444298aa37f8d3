"""Registry reads at columnar speed: the analysis tables straight from SQL into columns.

Contracts
---------
* :func:`read_tables_columnar` returns the same tables as the ORM reference
  (``vertebra.outcomes.selectors._read_tables_orm``, kept for the tests and the benchmark):
  same rows, columns, values and dtypes, identified or de-identified, the same left-out
  counts (``exclusions``). The mapping rules are the ones in :mod:`vertebra.outcomes.selectors`
  (first treatment episode, arm refinement, STarT Back source, pain onset, odd dates).
* It runs one ``SELECT`` per source table (:func:`registry_selects`), each restricted to the
  scope's clinics in SQL and never by a list of ids, so a 1,000,000-patient read sends a few
  hundred bytes of SQL instead of millions of parameters. Choosing the first episode, the
  latest screening and so on happens on the columns (vectorised pandas), not per object.
* PostgreSQL: each SELECT is ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` on the Django
  connection's psycopg cursor (so inside the caller's transaction), parsed by
  ``pyarrow.csv`` with explicit column types. When the transaction can share its snapshot
  (nothing written, no savepoint) and ``adbc-driver-postgresql`` is installed, the same
  SELECTs are fetched instead by ADBC (binary ``COPY`` into Arrow, in C) on two connections
  that import the snapshot (:func:`_fetch_adbc`); both give the same frames. SQLite: the same
  SELECT on the raw ``sqlite3`` cursor, its rows turned into typed columns once.
* Dates travel as whole days since 1970-01-01 (an integer in both databases; no date
  parsing, no dependence on the server's DateStyle) and arrive as ``datetime64[ns]``.
  Dates outside the plausible window are nulled in SQL and flagged, so a year-0025 or
  year-9999 typo never reaches a datetime column (it would overflow) and is counted instead.
* Only literals the module builds itself are inlined in the SQL: ISO dates, integers and
  lower-case codes (checked); nothing from a request reaches the SQL text.

The rows read are the server's floor for the same data: ``bench/bench_registry_reads.py``
times these SELECTs alone (bare ``COPY`` into bytes) beside this function.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from select import select as _select_sockets
from typing import Any, Literal

import numpy as np
import pandas as pd
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from vertebra.core.analytics import AnalysisTables, CohortFilter, select_patients
from vertebra.core.deidentify import coarsen_filter, deidentify
from vertebra.core.plausibility import analytics_window
from vertebra.followup.models import (
    FollowUpSchedule,
    FollowUpTimePoint,
    QuestionnaireResponse,
    TimePointScores,
)
from vertebra.outcomes.selectors import (
    ARM_OF_SOURCE,
    BAND_COLUMNS,
    CELL_SOURCE,
    EVENT_COLUMNS,
    FOLLOWUP_HORIZON,
    SCORE_COLUMNS,
    TIMEPOINT_COLUMNS,
    _item_rows,
    _LeftOut,
    cost_codes_as_read,
    patient_columns,
)
from vertebra.registry.models import (
    AdverseEvent,
    ClinicalEvent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    Processing,
    ScreeningEvaluation,
    TreatmentEpisode,
)

__all__ = [
    "FRAME_NAMES",
    "Frames",
    "Select",
    "fetch_bytes",
    "fetch_frame",
    "frame_columns",
    "read_frames",
    "read_tables_columnar",
    "registry_selects",
    "tables_from_frames",
]

#: How a selected column arrives in pandas: int64 (never null), float64 (NaN for null),
#: days since 1970-01-01 -> datetime64[ns] (NaT), 0/1 -> bool, text -> object (None).
Kind = Literal["int", "float", "days", "bool", "str"]


@dataclass(frozen=True)
class Select:
    """One SELECT of the read: its SQL (for the connection's database) and typed columns."""

    sql: str
    columns: tuple[tuple[str, Kind], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]


# ------------------------------------------------------------------------------------- SQL

_CODE = re.compile(r"[a-z0-9_]+")


def _code(value: str) -> str:
    """``value`` as an SQL string literal; only lower-case codes are accepted."""
    if not _CODE.fullmatch(value):
        raise ValueError(f"not a code: {value!r}")
    return f"'{value}'"


class _Dialect:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, vendor: str) -> None:
        self.pg = vendor == "postgresql"

    def date(self, day: dt.date) -> str:
        """A date literal comparable with a date column."""
        return f"DATE '{day.isoformat()}'" if self.pg else f"'{day.isoformat()}'"

    def days(self, expr: str) -> str:
        """Whole days from 1970-01-01 to the date ``expr`` (an integer; NULL stays NULL)."""
        if self.pg:
            return f"({expr} - DATE '1970-01-01')"
        return f"CAST(julianday({expr}) - 2440587.5 AS INTEGER)"

    def utc_date(self, expr: str) -> str:
        """The UTC calendar date of the timestamp ``expr`` (stored in UTC by Django)."""
        return f"CAST({expr} AT TIME ZONE 'UTC' AS date)" if self.pg else f"date({expr})"

    def flag(self, condition: str) -> str:
        """1 when ``condition`` holds, else 0 (booleans travel as integers on both)."""
        return f"CASE WHEN {condition} THEN 1 ELSE 0 END"

    def json_text(self, column: str, *path: str) -> tuple[str, str]:
        """(the JSON string at ``path`` of ``column``, a condition that it is a string)."""
        for key in path:
            _code(key)
        if self.pg:
            arrows = "".join(f"->'{k}'" for k in path[:-1])
            return (
                f"{column}{arrows}->>'{path[-1]}'",
                f"jsonb_typeof({column}{arrows}->'{path[-1]}') = 'string'",
            )
        where = "$." + ".".join(path)
        return f"json_extract({column}, '{where}')", f"json_type({column}, '{where}') = 'text'"


def _table(model: Any) -> str:
    return str(model._meta.db_table)


def registry_selects(
    vendor: str,
    clinic_ids: frozenset[int] | None,
    window: tuple[dt.date, dt.date],
    followup_high: dt.date,
    *,
    with_mrn: bool = False,
    item_instruments: Iterable[str] = (),
    patient_ids: Collection[int] | None = None,
) -> dict[str, Select]:
    """The SELECTs of a registry read, by name, for database ``vendor``.

    ``clinic_ids`` None reads every clinic; ``window`` is the plausible date range
    (:func:`vertebra.core.plausibility.analytics_window`), ``followup_high`` the latest
    plausible follow-up date. ``item_instruments`` adds the ``items`` SELECT (answers).
    ``patient_ids`` (None: all) keeps only these patients' rows, every row of theirs that
    the whole read has (what an incremental snapshot refresh re-reads, ADR 0022 §9).
    """
    d = _Dialect(vendor)
    low, high = d.date(window[0]), d.date(window[1])
    tp_high = d.date(followup_high)

    def outside(expr: str, upper: str = high) -> str:
        return f"({expr} < {low} OR {expr} > {upper})"

    def odd_or(condition: str, expr: str) -> str:
        return f"CASE WHEN {condition} THEN NULL ELSE {d.days(expr)} END"

    patient, episode = _table(Patient), _table(TreatmentEpisode)
    # Each restriction as (rows of these patients, rows of these patients' episodes).
    patient_sets: list[str] = []
    episode_sets: list[str] = []
    if clinic_ids is not None:
        clinics = ", ".join(str(int(c)) for c in sorted(clinic_ids)) or "NULL"
        patient_sets.append(f"SELECT id FROM {patient} WHERE clinic_id IN ({clinics})")
        episode_sets.append(
            f"SELECT e.id FROM {episode} e JOIN {patient} p ON p.id = e.patient_id "
            f"WHERE p.clinic_id IN ({clinics})"
        )
    if patient_ids is not None:
        # literals, not parameters: the same text runs under COPY, ADBC and sqlite3
        listed = ", ".join(str(int(p)) for p in sorted(patient_ids)) or "NULL"
        patient_sets.append(listed)
        episode_sets.append(f"SELECT id FROM {episode} WHERE patient_id IN ({listed})")

    def in_scope_patient(column: str) -> str:
        return "".join(f" AND {column} IN ({rows})" for rows in patient_sets)

    def in_scope_episode(column: str) -> str:
        return "".join(f" AND {column} IN ({rows})" for rows in episode_sets)

    odd_episode = f"({outside('e.start_date')} OR {outside('p.date_of_birth')})"
    response, point = _table(QuestionnaireResponse), _table(FollowUpTimePoint)
    kept = _table(TimePointScores)

    def first(sql: str, partition: str, order: str) -> str:
        """``sql`` (a SELECT ... FROM ... WHERE ...) numbered 1.. per ``partition``."""
        select, rest = sql.split(" FROM ", 1)
        number = f"ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS rn"
        return f"{select}, {number} FROM {rest}"

    diagnoses = first(
        f"SELECT g.patient_id, g.condition FROM {_table(Diagnosis)} g"
        f" WHERE g.voided_at IS NULL{in_scope_patient('g.patient_id')}",
        "g.patient_id",
        "g.diagnosed_on, g.id",
    )
    group, is_text = d.json_text("s.result", "startback", "risk_group")
    screenings = first(
        f"SELECT s.patient_id, {group} AS startback_group FROM {_table(ScreeningEvaluation)} s"
        f" WHERE {is_text} AND {group} <> ''{in_scope_patient('s.patient_id')}",
        "s.patient_id",
        "s.evaluated_at DESC, s.id DESC",
    )
    # The STarT Back answered at baseline, from the kept scores (``TimePointScores``: the
    # band, when and which response, only when answered with a band).
    baseline = first(
        f"SELECT t.patient_id, k.startback_band AS band FROM {kept} k"
        f" JOIN {point} t ON t.id = k.time_point_id"
        f" WHERE k.startback_band IS NOT NULL AND t.key = {_code('baseline')}"
        f"{in_scope_patient('t.patient_id')}",
        "t.patient_id",
        "k.startback_at, k.startback_id",
    )
    odd_start = outside("r.started_on")
    prior = (
        f"SELECT r.patient_id, MIN({odd_or(odd_start, 'r.started_on')}) AS onset,"
        f" SUM({d.flag(odd_start)}) AS odd FROM {_table(PriorTreatment)} r"
        f" WHERE r.voided_at IS NULL AND r.started_on IS NOT NULL"
        f"{in_scope_patient('r.patient_id')} GROUP BY r.patient_id"
    )
    harvests = (
        f"SELECT h.episode_id, h.source, {d.flag('pr.adjunct_prp')} AS prp,"
        f" {d.flag('pr.adjunct_hyaluronic_acid')} AS hyaluronic_acid FROM {_table(Harvest)} h"
        f" LEFT JOIN {_table(Processing)} pr ON pr.harvest_id = h.id"
        f" WHERE h.voided_at IS NULL{in_scope_episode('h.episode_id')}"
    )
    injections = first(
        f"SELECT i.episode_id, i.cell_dose, i.allogeneic_lot_id,"
        f" MAX({d.flag('i.adjunct_prp')}) OVER (PARTITION BY i.episode_id) AS any_prp"
        f" FROM {_table(Injection)} i WHERE i.voided_at IS NULL{in_scope_episode('i.episode_id')}",
        "i.episode_id",
        "i.injected_on, i.id",
    )
    selects: dict[str, Select] = {}
    # One row per live episode in scope, with everything the patients table takes from the
    # patient (first diagnosis, STarT Back, pain onset) and from the episode (harvest, first
    # injection): the first episode is chosen on the columns, after odd patients are dropped.
    selects["episodes"] = Select(
        f"SELECT e.id, e.patient_id, e.arm, {odd_or(odd_episode, 'e.start_date')},"
        f" {odd_or(odd_episode, 'p.date_of_birth')}, {d.flag(odd_episode)}, p.clinic_id, p.sex,"
        " dg.condition, sb.startback_group, bl.band, pt.onset, COALESCE(pt.odd, 0),"
        " h.source, COALESCE(h.prp, 0), COALESCE(h.hyaluronic_acid, 0), inj.cell_dose,"
        " inj.allogeneic_lot_id, COALESCE(inj.any_prp, 0),"
        " e.price, e.patient_paid, e.currency, e.billed_to"
        + (", p.mrn" if with_mrn else "")
        + f" FROM {episode} e JOIN {patient} p ON p.id = e.patient_id"
        f" LEFT JOIN ({diagnoses}) dg ON dg.patient_id = e.patient_id AND dg.rn = 1"
        f" LEFT JOIN ({screenings}) sb ON sb.patient_id = e.patient_id AND sb.rn = 1"
        f" LEFT JOIN ({baseline}) bl ON bl.patient_id = e.patient_id AND bl.rn = 1"
        f" LEFT JOIN ({prior}) pt ON pt.patient_id = e.patient_id"
        f" LEFT JOIN ({harvests}) h ON h.episode_id = e.id"
        f" LEFT JOIN ({injections}) inj ON inj.episode_id = e.id AND inj.rn = 1"
        f" WHERE e.voided_at IS NULL{in_scope_patient('e.patient_id')}",
        (
            ("episode_id", "int"),
            ("patient_id", "int"),
            ("registry_arm", "str"),
            ("treatment_date", "days"),
            ("date_of_birth", "days"),
            ("odd", "int"),
            ("clinic_id", "int"),
            ("sex", "str"),
            ("condition", "str"),
            ("screened_group", "str"),
            ("baseline_group", "str"),
            ("onset", "days"),
            ("odd_onsets", "int"),
            ("source", "str"),
            ("harvest_prp", "bool"),
            ("hyaluronic_acid", "bool"),
            ("dose", "float"),
            ("lot_id", "float"),
            ("injected_prp", "bool"),
            ("cost_price", "float"),
            ("cost_patient_paid", "float"),
            ("cost_currency", "str"),
            ("cost_billed_to", "str"),
            *((("mrn", "str"),) if with_mrn else ()),
        ),
    )
    odd_point = " OR ".join(outside(f"t.{c}", tp_high) for c in ("target", "opens", "closes"))
    odd_point = f"({odd_point})"
    selects["timepoints"] = Select(
        f"SELECT t.id, s.episode_id, t.patient_id, t.key, t.months,"
        f" {odd_or(odd_point, 't.target')},"
        f" {odd_or(odd_point, 't.opens')}, {odd_or(odd_point, 't.closes')}, t.status,"
        f" {d.days(d.utc_date('t.completed_at'))}, {d.flag(odd_point)},"
        # Each time point's scores as kept by the response table's triggers (``followup
        # 0010``): the pivot of its live responses, without aggregating them here.
        + ", ".join(
            f" k.{_code(c)[1:-1]}" for c in (*SCORE_COLUMNS.values(), *BAND_COLUMNS.values())
        )
        + f" FROM {point} t JOIN {_table(FollowUpSchedule)} s ON s.id = t.schedule_id"
        f" LEFT JOIN {kept} k ON k.time_point_id = t.id"
        # by the time point's own patient column: an incremental re-read uses its index
        f" WHERE 1 = 1"
        + (
            in_scope_episode("s.episode_id")
            if patient_ids is None
            else in_scope_patient("t.patient_id")
        ),
        (
            ("tp_id", "int"),
            ("episode_id", "int"),
            ("patient_id", "int"),
            ("timepoint", "str"),
            ("months", "float"),
            ("target_date", "days"),
            ("due_date", "days"),
            ("window_closes", "days"),
            ("status", "str"),
            ("completed_date", "days"),
            ("odd", "int"),
            *((c, "float") for c in SCORE_COLUMNS.values()),
            *((c, "str") for c in BAND_COLUMNS.values()),
        ),
    )
    odd_onset = outside("a.onset")
    selects["adverse_events"] = Select(
        f"SELECT a.patient_id, {odd_or(odd_onset, 'a.onset')}, a.ctcae_grade,"
        f" {d.flag('a.serious')}, a.relatedness, a.status, {d.flag(odd_onset)}"
        f" FROM {_table(AdverseEvent)} a"
        f" WHERE a.voided_at IS NULL{in_scope_patient('a.patient_id')} ORDER BY a.id",
        (
            ("patient_id", "int"),
            ("date", "days"),
            ("ctcae_grade", "float"),
            ("serious", "bool"),
            ("relatedness", "str"),
            ("status", "str"),
            ("odd", "int"),
        ),
    )
    odd_occurred = outside("c.occurred_on")
    selects["clinical_events"] = Select(
        f"SELECT c.patient_id, c.kind, {odd_or(odd_occurred, 'c.occurred_on')},"
        f" {d.flag(odd_occurred)} FROM {_table(ClinicalEvent)} c"
        f" WHERE c.voided_at IS NULL{in_scope_patient('c.patient_id')} ORDER BY c.id",
        (("patient_id", "int"), ("kind", "str"), ("date", "days"), ("odd", "int")),
    )
    wanted = sorted(set(item_instruments))
    if wanted:
        answers = "CAST(q.answers AS text)" if d.pg else "q.answers"
        selects["items"] = Select(
            f"SELECT q.time_point_id, q.instrument_id, {answers} FROM {response} q"
            f" JOIN {point} t ON t.id = q.time_point_id WHERE q.voided_at IS NULL"
            f" AND q.instrument_id IN ({', '.join(_code(i) for i in wanted)})"
            f"{in_scope_patient('t.patient_id')}",
            (("tp_id", "int"), ("instrument_id", "str"), ("answers", "str")),
        )
    return selects


# ---------------------------------------------------------------------------------- fetch


def _pg_copy(select: Select) -> bytearray:
    """The rows of ``select`` as PostgreSQL CSV: ``COPY (SELECT ...) TO STDOUT`` on the Django
    connection, inside the caller's transaction.

    The rows are drained straight from libpq (psycopg's public ``pq`` layer): psycopg's
    ``Copy`` iterator costs a few microseconds of Python per row, which at millions of rows
    is most of the read. Waiting for the socket releases the GIL (``select``).
    """
    from psycopg import pq

    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with raw.cursor() as cursor:  # psycopg opens a pending transaction (BEGIN) on execute
        cursor.execute("SELECT 1")
    pgconn = raw.pgconn
    pgconn.send_query(f"COPY ({select.sql}) TO STDOUT (FORMAT csv)".encode())
    while pgconn.flush():
        _wait(pgconn, write=True)
    result = _next_result(pgconn)
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        _fail(pgconn, result)
    # One growing buffer, not a list of rows: each row's libpq buffer is freed at once (a
    # list of 600,000 memoryviews held ~200 MB more at 100,000 patients).
    rows = bytearray()
    receive = pgconn.get_copy_data
    while True:
        size, data = receive(1)
        if size > 0:
            rows += data
        elif size == 0:  # nothing buffered: wait for the server
            _wait(pgconn)
            pgconn.consume_input()
        elif size == -1:
            break
        else:
            _fail(pgconn, None)
    result = _next_result(pgconn)
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        _fail(pgconn, result)
    while _next_result(pgconn) is not None:
        pass
    return rows


def _wait(pgconn: Any, *, write: bool = False) -> None:
    """Block (GIL released) until the connection's socket is readable (or writable)."""
    sock = pgconn.socket
    _select_sockets([] if write else [sock], [sock] if write else [], [])


def _next_result(pgconn: Any) -> Any:
    """The connection's next result (None when the command is done), waiting for it."""
    while pgconn.is_busy():
        _wait(pgconn)
        pgconn.consume_input()
    return pgconn.get_result()


def _fail(pgconn: Any, result: Any) -> None:
    """Drain what is left of a failed COPY and raise a DatabaseError saying why."""
    message = (result.error_message if result is not None else b"") or pgconn.error_message
    while _next_result(pgconn) is not None:
        pass
    raise DatabaseError(f"registry read failed: {message.decode(errors='replace').strip()}")


def fetch_bytes(select: Select) -> int:
    """The floor: run ``select`` and receive its rows without building anything (bytes of CSV
    on PostgreSQL, tuples on SQLite); returns the number of bytes or rows received."""
    if connection.vendor == "postgresql":
        return len(_pg_copy(select))
    connection.ensure_connection()
    assert connection.connection is not None
    cursor = connection.connection.cursor()
    try:
        return len(cursor.execute(select.sql).fetchall())
    finally:
        cursor.close()


def fetch_frame(select: Select) -> pd.DataFrame:
    """The rows of ``select`` as a DataFrame with the dtypes its column kinds promise."""
    if connection.vendor == "postgresql":
        return _pg_frame(select)
    return _sqlite_frame(select)


def _to_datetime(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 (float, NaN for missing) as datetime64[ns] (NaT)."""
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = ~np.isnan(days)
    out[known] = days[known].astype(np.int64).astype("datetime64[D]")
    return out


def _pg_frame(select: Select) -> pd.DataFrame:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.csv as pacsv  # type: ignore[import-untyped]

    arrow = {"int": pa.int64(), "float": pa.float64(), "days": pa.float64(), "str": pa.string()}
    arrow["bool"] = pa.int8()
    data = _pg_copy(select)
    if not data:  # no rows (Arrow refuses an empty CSV)
        return _typed_frame(select, [[] for _ in select.columns])
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=select.names),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: arrow[kind] for name, kind in select.columns},
            strings_can_be_null=True,  # an unquoted empty field is NULL,
            quoted_strings_can_be_null=False,  # a quoted one ("") the empty string
        ),
    )
    return _arrow_frame(select, table)


def _arrow_frame(select: Select, table: Any) -> pd.DataFrame:
    """The Arrow ``table`` of ``select`` (its columns in order) as a frame with the dtypes its
    column kinds promise. Takes the types either reader gives: the CSV reader's (int64,
    float64, int8, string, as asked) or ADBC's (the server's own: int16/int32/int64, float64,
    text, and ``numeric`` as an opaque extension holding its text)."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    columns: dict[str, Any] = {}
    for index, (name, kind) in enumerate(select.columns):
        col = table.column(index)  # by position: ADBC names unnamed expressions alike
        if isinstance(col.type, pa.BaseExtensionType):  # PostgreSQL numeric: its text
            col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        if kind == "str":
            columns[name] = col.to_pandas().to_numpy(dtype=object)
            continue
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.float64())  # numeric text, parsed as the CSV reader does
        if kind == "int" and col.null_count == 0:
            columns[name] = col.to_numpy().astype(np.int64, copy=False)
        elif kind == "bool":
            columns[name] = col.to_numpy(zero_copy_only=False).astype(bool)
        else:
            values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            columns[name] = _to_datetime(values) if kind == "days" else values
    return pd.DataFrame(columns, columns=select.names)


def _sqlite_frame(select: Select) -> pd.DataFrame:
    connection.ensure_connection()
    assert connection.connection is not None
    cursor = connection.connection.cursor()
    try:
        rows = cursor.execute(select.sql).fetchall()
    finally:
        cursor.close()
    return _typed_frame(select, list(zip(*rows, strict=True)) if rows else [])


def _typed_frame(select: Select, raw: list[Any]) -> pd.DataFrame:
    """Python column sequences (one per selected column; none for no rows) as typed columns."""
    raw = raw or [() for _ in select.columns]
    columns: dict[str, Any] = {}
    for (name, kind), values in zip(select.columns, raw, strict=True):
        if kind == "str":
            columns[name] = np.array(values, dtype=object)
        elif kind == "bool":
            columns[name] = np.array(values, dtype=bool)
        else:
            floats = np.array(values, dtype=np.float64)  # None -> NaN
            if kind == "days":
                columns[name] = _to_datetime(floats)
            elif kind == "int" and not np.isnan(floats).any():
                columns[name] = np.array(values, dtype=np.int64)
            else:
                columns[name] = floats
    return pd.DataFrame(columns, columns=select.names)


# ---------------------------------------------------------------------------------- tables


def read_tables_columnar(
    clinic_ids: frozenset[int] | None,
    deidentified: bool,
    flt: CohortFilter | None = None,
    *,
    with_mrn: bool = False,
    as_of: dt.date | None = None,
    with_items: bool = False,
    fetch: Callable[[Select], pd.DataFrame] = fetch_frame,
) -> AnalysisTables:
    """The analysis tables of the patients of ``clinic_ids`` (None: every clinic) that satisfy
    ``flt``; the contract of :func:`vertebra.outcomes.selectors.read_tables`, which calls it.

    Two steps: :func:`read_frames` (the SELECTs, rows as typed columns) then
    :func:`tables_from_frames` (the mapping rules, on the columns). The analysis snapshot
    (:mod:`vertebra.outcomes.snapshot`) stores the first step's frames and runs the second.
    No permission check and no audit here (the selectors do both).
    """
    if with_mrn and deidentified:
        raise ValueError("a de-identified read cannot carry the MRN")
    item_columns = _item_columns() if with_items else ()
    frames = read_frames(
        clinic_ids,
        with_mrn=with_mrn,
        item_instruments={c.instrument for c in item_columns},
        fetch=fetch,
    )
    return tables_from_frames(
        frames, clinic_ids, deidentified, flt, with_mrn=with_mrn, as_of=as_of, items=item_columns
    )


#: The frames of :func:`read_frames`, by name (the names of :func:`registry_selects`).
FRAME_NAMES = ("episodes", "timepoints", "adverse_events", "clinical_events")


@dataclass(frozen=True)
class Frames:
    """The rows of a registry read as typed columns, before any mapping rule: one frame per
    SELECT of :func:`registry_selects` (``items`` only when answers were asked for), and the
    plausible-date window the SELECTs used."""

    frames: dict[str, pd.DataFrame]
    window: tuple[dt.date, dt.date]


def read_frames(
    clinic_ids: frozenset[int] | None,
    *,
    with_mrn: bool = False,
    item_instruments: Iterable[str] = (),
    fetch: Callable[[Select], pd.DataFrame] = fetch_frame,
    patient_ids: Collection[int] | None = None,
) -> Frames:
    """Run the SELECTs of a registry read (one transaction; planner settings on PostgreSQL)
    and return their rows as typed frames (:data:`FRAME_NAMES`, plus ``items``).
    ``patient_ids``: only these patients' rows (:func:`registry_selects`), on this connection
    alone (a few patients are not worth a second connection)."""
    window = analytics_window(timezone.localdate())
    selects = registry_selects(
        connection.vendor,
        clinic_ids,
        window,
        window[1] + FOLLOWUP_HORIZON,
        with_mrn=with_mrn,
        item_instruments=item_instruments,
        patient_ids=patient_ids,
    )
    # No savepoint of its own: a snapshot cannot be exported from a subtransaction, and a
    # caller's transaction (e.g. one that audits the read after it) is where it is exported.
    whole = patient_ids is None
    with transaction.atomic(savepoint=False), _whole_table_plans(whole=whole):
        beside = _snapshot_to_share() if fetch is fetch_frame and whole else None
        if beside is None:
            frames = {name: fetch(select) for name, select in selects.items()}
        elif (adbc := _adbc_dbapi()) is not None:
            frames = _fetch_adbc(adbc, selects, beside)
        else:
            frames = _fetch_beside(selects, beside)
    return Frames(frames, window)


#: The SELECT a second connection runs while this one runs the others (the largest).
_BESIDE = "timepoints"
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


def _snapshot_to_share() -> str | None:
    """The id of this transaction's snapshot (``pg_export_snapshot``) when a second
    connection can read exactly what this one sees: PostgreSQL, no savepoint open
    (PostgreSQL exports no snapshot from a subtransaction), and this transaction has written
    nothing yet (another connection never sees uncommitted rows). Otherwise None."""
    # ``savepoint_ids`` holds None for a nested block that opened no savepoint
    if connection.vendor != "postgresql" or any(connection.savepoint_ids):
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id_if_assigned() IS NULL")
        (clean,) = cursor.fetchone()
        if not clean:
            return None
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
    return str(snapshot) if _SNAPSHOT_ID.fullmatch(str(snapshot)) else None


def _fetch_beside(selects: dict[str, Select], snapshot: str) -> dict[str, pd.DataFrame]:
    """Fetch :data:`_BESIDE` on a second connection that imports ``snapshot``, in a thread,
    while this connection fetches the others: the server works on two SELECTs at once (two
    cores) and both read the same committed state. Frames come back in ``selects``' order;
    an error on either side is raised here."""
    found: dict[str, pd.DataFrame] = {}

    def beside() -> None:
        try:  # this thread has its own Django connection: opened here, closed below
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                with _whole_table_plans():
                    found[_BESIDE] = fetch_frame(selects[_BESIDE])
        finally:
            connection.close()

    def here() -> None:
        for name, select in selects.items():
            if name != _BESIDE:
                found[name] = fetch_frame(select)

    _beside_and_here(beside, here)
    return {name: found[name] for name in selects}


def _beside_and_here(beside: Callable[[], None], here: Callable[[], None]) -> None:
    """Run ``beside`` in a thread while this thread runs ``here``; return when both are done,
    raising the error of either (this thread's first; the thread's is handed over)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            beside()
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=run, name="registry-read", daemon=True)
    worker.start()
    try:
        here()
    finally:
        worker.join()
    if failed:
        raise failed[0]


def _adbc_dbapi() -> Any:
    """ADBC's PostgreSQL DB-API module (``adbc_driver_postgresql.dbapi``), or None when it is
    not installed (the read then stays on psycopg and CSV)."""
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        return None
    return dbapi


def _conninfo() -> str:
    """The libpq connection string of the Django connection (host or socket directory, port,
    database, user, password, and libpq options such as ``sslmode``), for ADBC. It holds the
    password: never log it."""
    from psycopg import conninfo, pq

    libpq = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    params = connection.get_connection_params()
    return conninfo.make_conninfo(
        "", **{k: v for k, v in params.items() if k in libpq and v not in (None, "")}
    )


def _fetch_adbc(dbapi: Any, selects: dict[str, Select], snapshot: str) -> dict[str, pd.DataFrame]:
    """Fetch every SELECT over two ADBC connections that import ``snapshot``: :data:`_BESIDE`
    on one (in a thread), the others on the other (this thread). ADBC reads each as binary
    ``COPY`` straight into Arrow in C (GIL released), so the server writes binary instead of
    CSV text and no CSV is parsed. Same frames as :func:`fetch_frame`; the Django connection
    only holds the exported snapshot open meanwhile. Frames come back in ``selects``' order;
    an error on either side is raised here (as a ``DatabaseError``)."""
    info = _conninfo()
    groups = [[_BESIDE], [name for name in selects if name != _BESIDE]]
    found: dict[str, pd.DataFrame] = {}

    def fetch(names: list[str]) -> None:
        try:
            with dbapi.connect(info, autocommit=True) as conn, conn.cursor() as cursor:
                # explicit statements: SET TRANSACTION SNAPSHOT must be the transaction's first
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                for setting, value in _PLANNER_SETTINGS:
                    cursor.execute(f"SET LOCAL {setting} = {value}")
                for name in names:
                    cursor.execute(selects[name].sql)
                    found[name] = _arrow_frame(selects[name], cursor.fetch_arrow_table())
                cursor.execute("COMMIT")
        except dbapi.Error as exc:
            raise DatabaseError(f"registry read failed: {exc}") from exc

    _beside_and_here(lambda: fetch(groups[0]), lambda: fetch(groups[1]))
    return {name: found[name] for name in selects}


def frame_columns(*, with_mrn: bool = False) -> dict[str, tuple[tuple[str, Kind], ...]]:
    """The typed columns of each frame of :func:`read_frames` (the snapshot's schema)."""
    today = dt.date(2000, 1, 1)  # any window: only the column list is wanted
    selects = registry_selects(
        "sqlite", None, (today, today), today, with_mrn=with_mrn, item_instruments=()
    )
    return {name: selects[name].columns for name in FRAME_NAMES}


def tables_from_frames(
    frames: Frames,
    clinic_ids: frozenset[int] | None,
    deidentified: bool,
    flt: CohortFilter | None = None,
    *,
    with_mrn: bool = False,
    as_of: dt.date | None = None,
    items: tuple[Any, ...] = (),
) -> AnalysisTables:
    """The analysis tables of ``clinic_ids`` (None: every clinic) and ``flt`` built from the
    rows of :func:`read_frames` by the mapping rules (pandas only, no database).

    ``frames`` may hold more clinics than ``clinic_ids`` (the registry-wide snapshot): rows of
    other clinics are dropped first, so the tables and the left-out counts are those of a read
    scoped in SQL.
    """
    if with_mrn and deidentified:
        raise ValueError("a de-identified read cannot carry the MRN")
    flt = flt or CohortFilter()
    if deidentified:
        flt = coarsen_filter(flt)
    left_out = _LeftOut(frames.window)
    episodes_frame = frames.frames["episodes"]
    if clinic_ids is not None:
        wanted = [int(c) for c in clinic_ids]
        episodes_frame = episodes_frame[episodes_frame["clinic_id"].isin(wanted)]
    patients = _patients(episodes_frame, flt, with_mrn=with_mrn, left_out=left_out)
    if len(patients):
        patients = patients.loc[select_patients(patients, flt)].reset_index(drop=True)
    episodes = pd.Series(patients["patient_id"].to_numpy(), index=patients["episode_id"])
    timepoints = _timepoints(frames.frames, episodes, left_out, items=items)
    events = _events(frames.frames, patients["patient_id"], left_out)
    patients = patients.drop(columns=["episode_id"])
    tables = AnalysisTables.of(patients, timepoints, events, exclusions=left_out.exclusions())
    if deidentified:
        tables = deidentify(tables, as_of=as_of or timezone.localdate())
    return tables


#: PostgreSQL settings for the read's transaction (``SET LOCAL``, undone after the read).
_PLANNER_SETTINGS = (
    # Every SELECT reads whole tables (or a clinic's share), for which hash joins are right;
    # a planner without statistics (a freshly bulk-loaded table before ANALYZE) guesses a few
    # hundred rows and nests loops over 100,000 episodes x 27,000 harvests: minutes, not 1 s.
    ("enable_nestloop", "off"),
    # The per-time-point score aggregate (one group per time point) spills to disk at the
    # default 4 MB; 64 MB holds 1,000,000 groups. Only this transaction, only while reading.
    ("work_mem", "'64MB'"),
    # Compiling these plans costs more than it saves on a read that streams rows out.
    ("jit", "off"),
)


@contextmanager
def _whole_table_plans(*, whole: bool = True) -> Iterator[None]:
    """On PostgreSQL, :data:`_PLANNER_SETTINGS` while the read runs (``SET LOCAL``, set back
    to the defaults after). Must run inside a transaction (the caller's or the read's own).
    ``whole`` False (a few patients' rows): nested loops stay allowed, so their rows are
    found by index instead of hashing whole tables."""
    if connection.vendor != "postgresql":
        yield
        return
    chosen = [(n, v) for n, v in _PLANNER_SETTINGS if whole or n != "enable_nestloop"]
    with connection.cursor() as cursor:
        for name, value in chosen:
            cursor.execute(f"SET LOCAL {name} = {value}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name, _ in chosen:
                cursor.execute(f"SET LOCAL {name} TO DEFAULT")


def _first(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The first row of each ``key`` in the frame's (SQL-given) order."""
    return frame.drop_duplicates(key, keep="first")


def _patients(
    ep: pd.DataFrame, flt: CohortFilter, *, with_mrn: bool, left_out: _LeftOut
) -> pd.DataFrame:
    """One row per treated patient in scope (first live episode), in the patients schema."""
    odd = pd.unique(ep.loc[ep["odd"].to_numpy() != 0, "patient_id"])
    left_out.add("patients", "treatment date or birth date", len(odd))
    keep = ~ep["patient_id"].isin(odd)
    if flt.clinics:
        wanted = [int(c) for c in flt.clinics if str(c).isdigit()]
        keep &= ep["clinic_id"].isin(wanted)
    ep = ep[keep].sort_values(["patient_id", "treatment_date", "episode_id"], kind="stable")
    frame = ep.drop_duplicates("patient_id", keep="first").reset_index(drop=True)
    frame["condition"] = frame["condition"].fillna("unknown")
    group = frame["screened_group"].where(frame["screened_group"].notna(), frame["baseline_group"])
    frame["startback_group"] = group.fillna("unknown")
    left_out.add(
        "prior-treatment start dates", "prior-treatment start date", int(frame["odd_onsets"].sum())
    )

    source = frame["source"].map(CELL_SOURCE)
    source = source.mask(source.isna() & frame["lot_id"].notna(), "allogeneic")
    prp = frame["harvest_prp"].to_numpy() | frame["injected_prp"].to_numpy()
    adjunct = pd.Series(None, index=frame.index, dtype=object)
    adjunct[frame["hyaluronic_acid"].to_numpy()] = "hyaluronic_acid"
    adjunct[prp] = "prp"
    base = source.map(ARM_OF_SOURCE).fillna("cell_therapy")
    cell_arm = np.where(prp, base + "_prp", base)

    treated = frame["treatment_date"]
    frame["age"] = np.floor((treated - frame["date_of_birth"]).dt.days / 365.25).astype(float)
    frame["pain_duration_months"] = ((treated - frame["onset"]).dt.days / 30.0).astype(float)
    is_cell = frame["registry_arm"].eq("cell_therapy")
    frame["arm"] = np.where(is_cell, cell_arm, frame["registry_arm"])
    frame["cell_source"] = source.where(is_cell, np.nan)
    frame["adjunct"] = adjunct.where(is_cell, np.nan)
    frame["dose"] = frame["dose"].where(is_cell, np.nan).astype(float)
    frame["clinic_id"] = frame["clinic_id"].astype(str)
    cost_codes_as_read(frame)
    return frame[patient_columns(with_mrn=with_mrn)]


def _timepoints(
    frames: dict[str, pd.DataFrame],
    episode_to_patient: pd.Series,
    left_out: _LeftOut,
    *,
    items: tuple[Any, ...] = (),
) -> pd.DataFrame:
    """One row per patient x scheduled time point of the first episodes, with scores, sorted
    by patient and months (stable: ties keep the SELECT's order).

    The rows kept and their order are found on numpy arrays first and the columns wanted are
    taken once: at 6,000,000 time points every intermediate frame (filter, copy, sort,
    ``reset_index``) copied ~18 columns, 9 s of the 1,000,000-patient read.
    """
    tp = frames["timepoints"]
    episode_ids = tp["episode_id"].to_numpy()
    # -1: not a first episode
    position = episode_to_patient.index.get_indexer(pd.Index(episode_ids))
    in_scope = position >= 0
    odd = in_scope & (tp["odd"].to_numpy() != 0)
    left_out.add("follow-up time points", "follow-up due date", int(odd.sum()))
    rows = np.flatnonzero(in_scope & ~odd)
    patient_ids = episode_to_patient.to_numpy().astype(np.int64)[position[rows]]
    # np.lexsort is stable and puts NaN months last, as DataFrame.sort_values does
    order = np.lexsort((tp["months"].to_numpy()[rows], patient_ids))
    rows, patient_ids = rows[order], patient_ids[order]
    # column by column: a frame-level take of the 2-D blocks was several times slower
    taken = {c: tp[c].to_numpy()[rows] for c in (*TIMEPOINT_COLUMNS, "tp_id") if c in tp.columns}
    taken["patient_id"] = patient_ids
    taken["completed"] = taken["status"] == "completed"
    mme = taken["mme"].astype(np.float64)
    taken["opioid_use"] = np.where(np.isnan(mme), np.nan, (mme > 0).astype(float))
    columns = list(TIMEPOINT_COLUMNS)
    out = pd.DataFrame({c: taken[c] for c in columns}, copy=False)
    if items:
        answers = frames["items"]
        frame = _item_frame(answers[answers["tp_id"].isin(taken["tp_id"])], items)
        out = out.join(frame.reindex(taken["tp_id"]).set_axis(out.index))
    return out


def _item_columns() -> tuple[Any, ...]:
    from vertebra.core.codebook import codebook

    return tuple(codebook().item_columns())


def _item_frame(answers: pd.DataFrame, columns: tuple[Any, ...]) -> pd.DataFrame:
    """Time point id -> one column per codebook item column (rules of selectors._items)."""
    rows = zip(
        answers["tp_id"].tolist(),
        answers["instrument_id"].tolist(),
        (json.loads(text) if text is not None else None for text in answers["answers"]),
        strict=True,
    )
    return _item_rows(rows, columns)


def _events(
    frames: dict[str, pd.DataFrame], patient_ids: pd.Series, left_out: _LeftOut
) -> pd.DataFrame:
    """Adverse and clinical events of these patients (odd dates left out and counted)."""
    adverse = frames["adverse_events"]
    adverse = adverse[adverse["patient_id"].isin(patient_ids)]
    clinical = frames["clinical_events"]
    clinical = clinical[clinical["patient_id"].isin(patient_ids)]
    odd_adverse = adverse["odd"].to_numpy() != 0
    odd_clinical = clinical["odd"].to_numpy() != 0
    left_out.add(
        "adverse or clinical events", "event date", int(odd_adverse.sum() + odd_clinical.sum())
    )
    adverse = adverse[~odd_adverse].drop(columns=["odd"]).assign(kind="adverse_event")
    adverse["relatedness"] = adverse["relatedness"].replace("", None)
    clinical = clinical[~odd_clinical].drop(columns=["odd"])
    parts = [p for p in (adverse, clinical) if len(p)]
    events = pd.concat(parts, ignore_index=True) if parts else adverse
    events = events.reindex(columns=list(EVENT_COLUMNS))
    events["date"] = pd.to_datetime(events["date"])
    events["ctcae_grade"] = pd.to_numeric(events["ctcae_grade"], errors="coerce").astype(float)
    events["serious"] = events["serious"].astype("boolean")
    return events.sort_values(["patient_id", "date"], kind="stable").reset_index(drop=True)
