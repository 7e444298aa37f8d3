"""The research codebook and its written form (pure): types, codes, missing values; and the
REDCap value rules as properties."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vertebra.core import redcap
from vertebra.core.codebook import CodebookError, codebook, for_csv
from vertebra.core.instruments import get_definition


def _events(**cols: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "patient_id": [1, 2],
        "kind": ["adverse_event", "subsequent_surgery"],
        "day": [3.0, 120.0],
        "ctcae_grade": [2.0, None],
        "serious": [True, None],
        "relatedness": ["procedure", None],
        "status": ["adjudicated", None],
    }
    return pd.DataFrame({**base, **cols})


def test_written_form_is_r_friendly() -> None:
    out = for_csv(_events(), "events")
    assert list(out.columns) == list(codebook().names("events"))
    text = out.to_csv(index=False, na_rep="NA").splitlines()
    assert text[1] == "1,adverse_event,3,2,1,procedure,adjudicated"
    assert text[2] == "2,subsequent_surgery,120,NA,NA,NA,NA"


@pytest.mark.parametrize(
    ("cols", "message"),
    [
        ({"relatedness": ["maybe", None]}, "values not in the codebook: ['maybe']"),
        ({"day": [3.5, 1.0]}, "not a whole number"),
        ({"kind": ["adverse_event", None]}, "never missing"),
        ({"note": ["x", "y"]}, "columns not in the codebook: ['note']"),
    ],
)
def test_written_form_refuses_what_the_codebook_does_not_allow(
    cols: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(CodebookError, match=message.replace("[", r"\[").replace("]", r"\]")):
        for_csv(_events(**cols), "events")


def test_item_columns_follow_the_instrument_definitions() -> None:
    book = codebook()
    odi = get_definition("odi")
    cols = [c for c in book.item_columns() if c.instrument == "odi"]
    assert [c.link_id for c in cols] == [i.id for i in odi.items]
    assert all(
        c.type == "integer" and list(c.values) == ["0", "1", "2", "3", "4", "5"] for c in cols
    )
    dose = book.column("timepoints", "opi_daily_dose")
    assert dose.type == "number" and dose.units.startswith("mg/day")
    assert book.column("timepoints", "opi_opioid").type == "categorical"
    names = [c.name for t in ("patients", "timepoints", "events") for c in book.columns(t)]
    assert len(book.item_columns()) == sum(
        len(get_definition(i).items) for i in {c.instrument for c in book.item_columns()}
    )
    assert all(len(n) <= redcap.MAX_NAME for n in names)


_FIELDS = {r["Variable / Field Name"]: r for r in redcap.dictionary()}


@given(st.sampled_from(sorted(_FIELDS)), st.data())
def test_every_value_the_codebook_allows_passes_redcaps_value_rules(
    name: str, data: st.DataObject
) -> None:
    spec = _FIELDS[name]
    kind = spec["Field Type"]
    if kind == "yesno":
        value = data.draw(st.sampled_from(["0", "1"]))
    elif kind in ("dropdown", "radio"):
        codes = [
            p.split(",", 1)[0].strip()
            for p in spec["Choices, Calculations, OR Slider Labels"].split("|")
        ]
        value = data.draw(st.sampled_from(codes))
    elif spec["Text Validation Type OR Show Slider Number"] in ("integer", "number"):
        low = float(spec["Text Validation Min"] or -1000)
        high = float(spec["Text Validation Max"] or 1000)
        number = data.draw(st.integers(int(low), int(high)))
        value = str(number)
    else:
        value = data.draw(st.from_regex(r"^[a-z0-9_]{1,20}$", fullmatch=True))
    assert redcap._value_problem(spec, value) == ""


@given(st.text(min_size=1, max_size=5).filter(lambda t: t not in ("0", "1")))
def test_yesno_takes_only_0_and_1(value: str) -> None:
    assert redcap._value_problem(_FIELDS["completed"], value) == "not 0 or 1"
