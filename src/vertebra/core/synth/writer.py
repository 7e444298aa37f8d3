"""Write a cohort (in memory or streamed chunk by chunk) as Parquet and/or CSV + metadata.json.

Files in `out_dir`: clinics, patients, timepoints and events, each as .parquet and/or .csv, and
metadata.json (seed, n, versions, today, row counts). Parquet is written with pyarrow's
streaming writer, one row group per chunk, so a million patients never sit in memory at once.
Dates are written as calendar dates (date32), categories as dictionary-encoded strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from vertebra.core.synth.generator import Cohort

FORMATS = ("parquet", "csv")
TABLES = ("clinics", "patients", "timepoints", "events")
#: Columns dropped when writing de-identified output (identified=False).
IDENTIFYING_COLUMNS = ("first_name", "last_name", "email")
_DATE_COLUMNS = frozenset(
    {"treatment_date", "target_date", "due_date", "window_closes", "response_date", "event_date"}
)


class _TableSink:
    """Streaming writers of one table (Parquet and/or CSV) sharing the first chunk's schema."""

    def __init__(self, base: Path, formats: Sequence[str]) -> None:
        self.base = base
        self.formats = formats
        self.schema: Any = None
        self.parquet: Any = None
        self.csv: Any = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk of rows."""
        table = _to_arrow(frame)
        if self.schema is None:
            self.schema = table.schema
            if "parquet" in self.formats:
                self.parquet = pq.ParquetWriter(
                    self.base.with_suffix(".parquet"), self.schema, compression="zstd"
                )
            if "csv" in self.formats:
                self.csv = pa_csv.CSVWriter(
                    self.base.with_suffix(".csv"), _plain_schema(self.schema)
                )
        else:
            table = table.cast(self.schema)
        if self.parquet is not None:
            self.parquet.write_table(table)
        if self.csv is not None:
            self.csv.write_table(table.cast(_plain_schema(self.schema)))
        self.rows += table.num_rows

    def close(self) -> list[Path]:
        """Finish the files; return their paths."""
        paths = []
        if self.parquet is not None:
            self.parquet.close()
            paths.append(self.base.with_suffix(".parquet"))
        if self.csv is not None:
            self.csv.close()
            paths.append(self.base.with_suffix(".csv"))
        return paths


def _to_arrow(frame: pd.DataFrame) -> Any:
    """DataFrame -> Arrow table with date columns as date32 (NaN/NaT -> null)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, name in enumerate(table.column_names):
        if name in _DATE_COLUMNS:
            table = table.set_column(i, name, table.column(i).cast(pa.date32()))
    return table


def _plain_schema(schema: Any) -> Any:
    """The schema with dictionary columns as plain strings (the CSV writer needs values)."""
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in schema]
    )


def write_cohort(
    cohort: Cohort | Iterable[Cohort],
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    identified: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, list[Path]]:
    """Write `cohort` (a Cohort or an iterable of chunks, e.g. iter_cohort) to `out_dir`.

    `formats` is any non-empty subset of ("parquet", "csv"). With identified=False the name
    and e-mail columns are left out. `on_chunk(n_patients_in_chunk)` is called after each chunk
    (for progress bars). Creates `out_dir` if needed; returns {table: [paths]} plus "metadata".
    Raises ValueError for unknown formats and OSError if the directory cannot be written.
    """
    fmts = tuple(dict.fromkeys(formats))
    if not fmts or any(f not in FORMATS for f in fmts):
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks: Iterable[Cohort] = [cohort] if isinstance(cohort, Cohort) else cohort
    sinks = {name: _TableSink(out / name, fmts) for name in TABLES}
    meta: dict[str, Any] = {}
    first = True
    for part in chunks:
        meta = part.meta
        for name, frame in part.tables().items():
            if name == "clinics" and not first:
                continue  # every chunk carries the same clinics
            if name == "patients" and not identified:
                frame = frame.drop(columns=list(IDENTIFYING_COLUMNS))
            sinks[name].write(frame)
        first = False
        if on_chunk is not None:
            on_chunk(len(part.patients))
    written = {name: sink.close() for name, sink in sinks.items()}
    meta_path = out / "metadata.json"
    document = {
        **meta,
        "identified": identified,
        "formats": list(fmts),
        "rows": {name: sink.rows for name, sink in sinks.items()},
        "files": sorted(p.name for paths in written.values() for p in paths),
    }
    meta_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return {**written, "metadata": [meta_path]}
