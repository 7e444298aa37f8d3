"""Canonical JSON texts for whole columns at once, for the bulk loader's rows and audit records.

Every function returns one JSON text per element, exactly as
:func:`vertebra.registry.audit.canonical_json` would write that element (sorted keys, no spaces,
UTF-8 kept, integral floats as integers, missing values as ``null``), so the texts can be
stored in JSON columns and hashed into the audit chain without serialising each row whole.
``tests/cohort/test_jsontext.py`` checks each against ``canonical_json``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pandas as pd

Texts = list[str]


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def string(value: Any) -> str:
    """One value as a JSON string (``null`` when missing)."""
    return "null" if _is_missing(value) else encode_basestring(str(value))


def strings(values: Any) -> Texts:
    """A column of text as JSON strings; categorical columns encode each category once."""
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if isinstance(series.dtype, pd.CategoricalDtype):
        encoded = np.array(
            [encode_basestring(str(c)) for c in series.cat.categories] + ["null"], dtype=object
        )
        codes = series.cat.codes.to_numpy()
        return list(encoded[np.where(codes < 0, len(encoded) - 1, codes)])
    return [string(v) for v in series.tolist()]


def integers(values: Any) -> Texts:
    """A column of integers (nullable) as JSON numbers."""
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iu":  # no missing values
        return list(map(str, series.tolist()))
    return ["null" if _is_missing(v) else str(int(v)) for v in series.tolist()]


def number(value: Any) -> str:
    """One float as canonical JSON: integral values as integers, NaN/None as ``null``."""
    if _is_missing(value):
        return "null"
    value = float(value)
    if math.isinf(value):
        raise ValueError("JSON has no infinity")
    return str(int(value)) if value.is_integer() else repr(value)


def numbers(values: Any) -> Texts:
    """A column of floats as canonical JSON numbers."""
    array = pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    return [number(v) for v in array.tolist()]


def booleans(values: Any) -> Texts:
    """A column of booleans (nullable) as JSON."""
    series = pd.Series(values)
    return ["null" if _is_missing(v) else ("true" if v else "false") for v in series.tolist()]


def iso_dates(values: Sequence[str | None]) -> Texts:
    """ISO date texts (``YYYY-MM-DD`` or None) as JSON strings."""
    return ["null" if v is None else f'"{v}"' for v in values]


def timestamp(value: dt.datetime) -> str:
    """An aware datetime as the audit trail writes it (``to_json_value``: UTC ISO 8601)."""
    return f'"{value.astimezone(dt.UTC).isoformat()}"'


def objects(members: Mapping[str, Sequence[str]]) -> Texts:
    """JSON objects from columns of member texts (keys sorted, as canonical JSON sorts them)."""
    keys = sorted(members)
    members_text = (encode_basestring(k).replace("%", "%%") + ":%s" for k in keys)
    template = "{" + ",".join(members_text) + "}"
    columns = [members[k] for k in keys]
    return [template % row for row in zip(*columns, strict=True)]


def frame_objects(frame: pd.DataFrame, texts: Mapping[str, Sequence[str]]) -> Texts:
    """The JSON object of each row of ``frame`` (all its columns), given each column's texts."""
    return objects({name: texts[name] for name in frame.columns})
