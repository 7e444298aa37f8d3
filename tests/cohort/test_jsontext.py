"""Column-wise JSON texts equal the audit trail's canonical JSON, value by value."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from django.db import IntegrityError, transaction
from hypothesis import given
from hypothesis import strategies as st

from vertebra.cohort import jsontext
from vertebra.cohort.bulk import FrameWriter
from vertebra.registry import models as m
from vertebra.registry.audit import (
    CONTENT_FIELDS,
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_json,
    compute_hash,
    hash_text,
    record_template,
)

finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.one_of(st.none(), st.text())))
def test_strings_match_canonical_json(values: list[str | None]) -> None:
    assert jsontext.strings(pd.Series(values, dtype=object)) == [canonical_json(v) for v in values]


@given(st.lists(st.sampled_from(["a", 'q"uote', "Ōkonkwo", "tab\there", None])))
def test_categorical_strings_match_canonical_json(values: list[str | None]) -> None:
    column = pd.Series(values, dtype="category")
    assert jsontext.strings(column) == [canonical_json(v) for v in values]


@given(st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62))))
def test_integers_match_canonical_json(values: list[int | None]) -> None:
    assert jsontext.integers(pd.Series(values, dtype="Int64")) == [
        canonical_json(v) for v in values
    ]
    plain = [v for v in values if v is not None]
    assert jsontext.integers(pd.Series(plain, dtype=np.int64)) == [canonical_json(v) for v in plain]


@given(st.lists(st.one_of(st.none(), finite)))
def test_numbers_match_canonical_json(values: list[float | None]) -> None:
    assert jsontext.numbers(pd.Series(values, dtype=float)) == [canonical_json(v) for v in values]


def test_numbers_refuse_infinity() -> None:
    with pytest.raises(ValueError, match="infinity"):
        jsontext.numbers([math.inf])


@given(st.lists(st.one_of(st.none(), st.booleans())))
def test_booleans_match_canonical_json(values: list[bool | None]) -> None:
    column = pd.Series(values, dtype="boolean")
    assert jsontext.booleans(column) == [canonical_json(v) for v in values]


@given(
    st.dictionaries(st.text(min_size=1), st.one_of(st.none(), st.integers(), st.text()), min_size=1)
)
def test_objects_sort_keys_like_canonical_json(value: dict[str, object]) -> None:
    members = {key: [canonical_json(item)] for key, item in value.items()}
    assert jsontext.objects(members) == [canonical_json(value)]


def test_timestamp_is_the_audit_form() -> None:
    when = dt.datetime(2026, 11, 25, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert json.loads(jsontext.timestamp(when)) == "2026-11-25T09:30:00+00:00"


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), finite, st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.fixed_dictionaries(
        {
            "seq": st.integers(1, 10**9),
            "actor_user_id": st.integers(1, 10**6),
            "actor_username": st.text(),
            "role": st.text(),
            "clinic_id": st.one_of(st.none(), st.integers(1, 10**6)),
            "patient_id": st.one_of(st.none(), st.integers(1, 10**6)),
            "action": st.text(),
            "object_type": st.text(),
            "object_id": st.text(),
            "old_values": st.one_of(st.none(), json_values),
            "new_values": st.one_of(st.none(), json_values),
            "reason": st.text(),  # may hold "%": the template must escape it
            "request_id": st.text(),
            "prev_hash": st.just(GENESIS_HASH),
        }
    ),
    st.sets(st.sampled_from(HASHED_FIELDS)),
)
def test_filled_template_hashes_like_compute_hash(
    fields: dict[str, object], open_set: set[str]
) -> None:
    """The bulk path (template filled with per-field texts) and compute_hash agree."""
    fields["occurred_at"] = dt.datetime(2026, 11, 25, 9, 0, 0, 123, tzinfo=dt.UTC)
    texts = {
        name: canonical_json(
            "2026-11-25T09:00:00.000123+00:00" if name == "occurred_at" else fields[name]
        )
        for name in HASHED_FIELDS
    }
    fixed = {k: v for k, v in texts.items() if k not in open_set}
    template, open_fields = record_template(fixed, HASHED_FIELDS)  # the old in-row chain
    assert set(open_fields) == open_set
    assert hash_text(template % tuple(texts[name] for name in open_fields)) == compute_hash(fields)
    # Rows written now (ADR 0021) hash their content only: no seq, no prev_hash.
    content = {k: v for k, v in fixed.items() if k in CONTENT_FIELDS}
    template, open_fields = record_template(content)
    assert set(open_fields) == open_set & set(CONTENT_FIELDS)
    filled = template % tuple(texts[name] for name in open_fields)
    assert hash_text(filled) == compute_hash({**fields, "seq": None})


@pytest.mark.django_db(transaction=True)
def test_a_failed_bulk_write_raises_and_writes_nothing() -> None:
    """A constraint violation in the writer (a thread on PostgreSQL) reaches the caller and
    the transaction rolls back as a whole."""
    frame = pd.DataFrame(
        {"id": [900001, 900001], "name": ["A", "B"], "regulatory_status": "none", "nct_id": "",
         "irb": "", "ind_number": "", "lab_accreditation": ""}
    )  # fmt: skip
    ok = frame.iloc[:1].assign(id=900002, name="C")
    with pytest.raises(IntegrityError), transaction.atomic(), FrameWriter() as writer:
        writer.write(m.Clinic, ok)
        writer.write(m.Clinic, frame)
    assert not m.Clinic.objects.filter(id__in=[900001, 900002]).exists()
