"""The codebook of the research export: every column, its type, units, values and missing code.

Pure (no Django, no database). The source is ``vertebra/data/research/codebook.yaml``; the
item-level columns are expanded from the instrument definitions (``data/instruments``), so
the codebook can never disagree with the questionnaires. Documented in
docs/research-exports.md.

Contracts
---------
* :func:`codebook` returns the :class:`Codebook` (read once): ``columns(table)`` in file order,
  ``column(table, name)``, ``version`` and ``missing_code``.
* :func:`for_csv` turns a released table into the codebook's written form (integers without
  ``.0``, booleans as 0/1, categorical codes as text) and raises :class:`CodebookError` when a
  column is not in the codebook or a value is not in its value list; columns the codebook
  lists for the table but the frame lacks are added empty (item columns of instruments nobody
  answered), so every export has the same columns.
* :func:`rows` / :func:`to_markdown` give the codebook as CSV rows and as a Markdown page.
* :func:`pandas_dtypes` gives the dtypes to read an export's CSV with (``pd.read_csv(...,
  dtype=...)``), from the codebook alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import pandas as pd

from vertebra.core.instruments import InstrumentDefinition, get_definition
from vertebra.core.yamltext import load_yaml

__all__ = [
    "CSV_FIELDS",
    "TABLES",
    "Codebook",
    "CodebookError",
    "Column",
    "codebook",
    "for_csv",
    "pandas_dtypes",
    "r_col_classes",
    "rows",
    "to_markdown",
]

TABLES = ("patients", "timepoints", "events")
TYPES = ("integer", "number", "boolean", "categorical")
#: The codebook CSV's columns, in order.
CSV_FIELDS = (
    "table",
    "name",
    "label",
    "type",
    "units",
    "values",
    "codes",
    "missing_code",
    "missing_when",
    "source",
    "r_class",
    "pandas_dtype",
)


class CodebookError(ValueError):
    """The codebook file breaks its contract, or a table does not fit the codebook."""


@dataclass(frozen=True)
class Column:
    """One column of one table: what it holds and how it is written."""

    table: str
    name: str
    label: str
    type: str
    units: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    open: bool = False
    missing: str = "never"
    source: str = ""
    instrument: str = ""
    link_id: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def nullable(self) -> bool:
        """Whether the column may hold the missing code."""
        return self.missing != "never"


@dataclass(frozen=True)
class Codebook:
    """The codebook: version, missing code, and the columns of every table in order."""

    version: str
    missing_code: str
    tables: Mapping[str, tuple[Column, ...]]

    def columns(self, table: str) -> tuple[Column, ...]:
        """The columns of ``table`` in the order the export writes them."""
        return self.tables[table]

    def names(self, table: str) -> tuple[str, ...]:
        """The column names of ``table`` in order."""
        return tuple(c.name for c in self.tables[table])

    def column(self, table: str, name: str) -> Column:
        """The column ``name`` of ``table`` (KeyError if the codebook has none)."""
        for col in self.tables[table]:
            if col.name == name:
                return col
        raise KeyError(f"{table}.{name}")

    def item_columns(self) -> tuple[Column, ...]:
        """The item-level answer columns (instrument and linkId set), in order."""
        return tuple(c for t in TABLES for c in self.tables[t] if c.link_id)


@cache
def codebook() -> Codebook:
    """The codebook from ``data/research/codebook.yaml`` plus the instruments' item columns.

    Raises CodebookError if a column has an unknown type, a name appears twice in a table, or
    a name is not a lower-case code (REDCap's and R's safe names).
    """
    raw: Any = load_yaml(
        files("vertebra").joinpath("data", "research", "codebook.yaml").read_text("utf-8")
    )
    tables: dict[str, list[Column]] = {t: [_column(t, c) for c in raw["tables"][t]] for t in TABLES}
    items = raw["item_columns"]
    for spec in items["instruments"]:
        defn = get_definition(str(spec["id"]))
        tables[items["table"]].extend(_item_columns(items, defn, str(spec["prefix"])))
    out = Codebook(
        version=str(raw["version"]),
        missing_code=str(raw["missing_code"]),
        tables={t: tuple(cols) for t, cols in tables.items()},
    )
    _check(out)
    return out


def _column(table: str, raw: Mapping[str, Any]) -> Column:
    """A Column from its YAML entry."""
    low, high = raw.get("range", (None, None))
    return Column(
        table=table,
        name=str(raw["name"]),
        label=str(raw["label"]),
        type=str(raw["type"]),
        units=str(raw.get("units", "")),
        values={str(k): str(v) for k, v in (raw.get("values") or {}).items()},
        open=bool(raw.get("open", False)),
        missing=str(raw.get("missing", "never")),
        source=str(raw.get("source", "")),
        minimum=None if low is None else float(low),
        maximum=None if high is None else float(high),
    )


def _item_columns(spec: Mapping[str, Any], defn: InstrumentDefinition, prefix: str) -> list[Column]:
    """One column per item of ``defn``: ``<prefix>_<linkId>``, typed from the definition."""
    out = []
    for item in defn.items:
        source = f"{defn.id} v{defn.version}, item {item.id} ({defn.title})"
        common: dict[str, Any] = {
            "table": str(spec["table"]),
            "name": f"{prefix}_{item.id}",
            "label": f"{defn.title}: {item.text}",
            "missing": str(spec["missing"]),
            "source": source,
            "instrument": defn.id,
            "link_id": item.id,
        }
        if item.type == "number":
            out.append(
                Column(
                    type="number",
                    units=_item_units(defn, item.id),
                    minimum=item.minimum,
                    maximum=item.maximum,
                    **common,
                )
            )
            continue
        numeric = all(isinstance(o.code, int) for o in item.options)
        values = {str(o.code): o.label for o in item.options}
        out.append(Column(type="integer" if numeric else "categorical", values=values, **common))
    return out


def _item_units(defn: InstrumentDefinition, item_id: str) -> str:
    """Units of a number item (only the opioid dose is one today)."""
    if (defn.id, item_id) == ("opioid_use", "daily_dose"):
        return "mg/day (µg/h for a fentanyl patch)"
    return defn.unit


def _check(book: Codebook) -> None:
    """The codebook's own rules: known types, unique lower-case names, value lists for closed
    categorical columns."""
    import re

    name = re.compile(r"^[a-z][a-z0-9_]*$")
    for table, cols in book.tables.items():
        seen: set[str] = set()
        for col in cols:
            where = f"{table}.{col.name}"
            if col.type not in TYPES:
                raise CodebookError(f"{where}: type {col.type!r} is not one of {TYPES}")
            if not name.fullmatch(col.name) or col.name in seen:
                raise CodebookError(f"{where}: not a unique lower-case name")
            if col.type == "categorical" and not col.values and not col.open:
                raise CodebookError(f"{where}: a categorical column needs values (or open)")
            seen.add(col.name)


# --------------------------------------------------------------------------- written form


def for_csv(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` in the codebook's written form, columns in codebook order (see module doc).

    Raises CodebookError naming a column the codebook does not know, a missing value in a
    column that is never missing, or a value outside a column's value list.
    """
    book = codebook()
    unknown = [c for c in frame.columns if c not in book.names(table)]
    if unknown:
        raise CodebookError(f"{table}: columns not in the codebook: {unknown}")
    out = {}
    for col in book.columns(table):
        series = (
            frame[col.name] if col.name in frame.columns else pd.Series(None, index=frame.index)
        )
        out[col.name] = _written(series, col)
    return pd.DataFrame(out, index=frame.index)


def _written(series: pd.Series, col: Column) -> pd.Series:
    """One column converted to its type, its codes checked."""
    where = f"{col.table}.{col.name}"
    written: pd.Series[Any]
    if col.type == "boolean":
        written = series.astype("boolean").astype("Int8")
    elif col.type == "integer":
        number = pd.to_numeric(series, errors="raise")
        if (number.dropna() % 1 != 0).any():
            raise CodebookError(f"{where}: a value that is not a whole number")
        written = number.round().astype("Int64")
    elif col.type == "number":
        written = pd.to_numeric(series, errors="raise").astype("float64")
    else:
        written = series.astype("string")
    if not col.nullable and written.isna().any():
        raise CodebookError(f"{where}: a missing value in a column that is never missing")
    if col.values and not col.open:
        present = {str(v) for v in pd.unique(written.dropna().astype(str))}
        bad = sorted(present - set(col.values))
        if bad:
            raise CodebookError(f"{where}: values not in the codebook: {bad}")
    return written


# ----------------------------------------------------------------------------- reading back

_PANDAS = {"integer": "Int64", "number": "float64", "boolean": "boolean"}
_R = {"integer": "integer", "number": "numeric", "boolean": "integer", "categorical": "factor"}


def _pandas_dtype(col: Column) -> Any:
    """The pandas dtype one column reads with."""
    if col.type == "categorical":
        return "string" if col.open else pd.CategoricalDtype(list(col.values))
    return _PANDAS[col.type]


def pandas_dtypes(table: str) -> dict[str, Any]:
    """Column -> pandas dtype for ``pd.read_csv(path, dtype=pandas_dtypes(table))``."""
    return {c.name: _pandas_dtype(c) for c in codebook().columns(table)}


def r_col_classes(table: str) -> dict[str, str]:
    """Column -> R class for ``read.csv(colClasses=...)`` (factors get levels afterwards)."""
    return {c.name: _R[c.type] for c in codebook().columns(table)}


# -------------------------------------------------------------------------------- rendered


def _values_text(col: Column) -> str:
    """The value list as ``code = label; ...`` (open lists say so)."""
    text = "; ".join(f"{k} = {v}" for k, v in col.values.items())
    return (text + "; " if text else "") + "other codes allowed" if col.open else text


def _units(col: Column) -> str:
    """Units with the range when the codebook gives one."""
    bits = [col.units] if col.units else []
    if col.minimum is not None or col.maximum is not None:
        low = "" if col.minimum is None else f"{col.minimum:g}"
        high = "" if col.maximum is None else f"{col.maximum:g}"
        bits.append(f"range {low}-{high}")
    return ", ".join(bits)


def rows() -> list[dict[str, str]]:
    """The codebook as CSV rows (:data:`CSV_FIELDS`), table by table, in column order."""
    book = codebook()
    out = []
    for table in TABLES:
        for col in book.columns(table):
            dtype = _pandas_dtype(col)
            out.append(
                {
                    "table": table,
                    "name": col.name,
                    "label": col.label,
                    "type": col.type,
                    "units": _units(col),
                    "values": _values_text(col),
                    "codes": "" if col.open else "|".join(col.values),
                    "missing_code": "" if not col.nullable else book.missing_code,
                    "missing_when": col.missing,
                    "source": col.source,
                    "r_class": _R[col.type],
                    "pandas_dtype": "category" if not isinstance(dtype, str) else dtype,
                }
            )
    return out


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown() -> str:
    """The codebook as a Markdown page (docs/research-codebook.md is this, generated)."""
    book = codebook()
    lines = [
        "# Research export codebook",
        "",
        f"Codebook version {book.version}. Generated from "
        "`src/vertebra/data/research/codebook.yaml` and the instrument definitions by "
        "`vertebra export codebook --format markdown`; do not edit by hand. Every research "
        "export carries the same table as `codebook.csv`. Missing values are written "
        f"`{book.missing_code}` (empty in REDCap files); booleans are 0 = no, 1 = yes. "
        "See docs/research-exports.md.",
        "",
    ]
    for table in TABLES:
        lines += [
            f"## {table}",
            "",
            "| name | label | type | units | values | missing when | source |",
            "|---|---|---|---|---|---|---|",
        ]
        for col in book.columns(table):
            lines.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        f"`{col.name}`",
                        col.label,
                        col.type,
                        _units(col),
                        _values_text(col),
                        col.missing,
                        col.source,
                    )
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)
