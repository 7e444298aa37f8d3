"""Research formats people use, on the ``db_env`` registry (60 synthetic patients) through the
real command line: the codebook covers every column of every export and nothing else, the CSV
loads into pandas and into R (plain `read.csv`, via Rscript) with the codebook's types and no
manual fixes (booleans 0/1, missing NA, item-level answers beside the scores), the REDCap files pass REDCap's import rules, and no
file holds an identifier."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.outcomes.test_research_export import _assert_no_identifier
from vertebra.core import redcap
from vertebra.core.codebook import TABLES, codebook, pandas_dtypes, to_markdown
from vertebra.core.instruments import score

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _export(env: dict[str, str], out: Path, fmt: str) -> Path:
    done = run_cli("export", "research", "--out", str(out), "--format", fmt,
                   "--as-of", "2026-11-25", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"research export ({fmt})" in done.stderr
    return out


@pytest.fixture(scope="module")
def csv_dir(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(db_env, tmp_path_factory.mktemp("formats") / "csv", "csv")


@pytest.fixture(scope="module")
def redcap_dir(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(db_env, tmp_path_factory.mktemp("formats") / "redcap", "redcap")


def _codebook_csv(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "codebook.csv", dtype=str, keep_default_na=False)


def _dtypes_from_codebook_csv(book: pd.DataFrame, table: str) -> dict[str, Any]:
    """What a researcher does with codebook.csv alone: one dtype per column."""
    out: dict[str, Any] = {}
    for row in book[book["table"] == table].to_dict("records"):
        if row["pandas_dtype"] == "category":
            out[row["name"]] = pd.CategoricalDtype(row["codes"].split("|"))
        else:
            out[row["name"]] = row["pandas_dtype"]
    return out


def test_codebook_covers_every_column_and_nothing_else(csv_dir: Path) -> None:
    book = _codebook_csv(csv_dir)
    manifest = json.loads((csv_dir / "manifest.json").read_text())
    assert manifest["codebook_version"] == codebook().version
    for table in TABLES:
        header = next(csv.reader(io.StringIO((csv_dir / f"{table}.csv").read_text())))
        documented = book.loc[book["table"] == table, "name"].tolist()
        assert header == documented == list(codebook().names(table))
        assert manifest["tables"][table]["columns"] == header
    assert not (book["label"] == "").any() and not (book["source"] == "").any()
    # The rendered page is the codebook, generated.
    assert (DOCS / "research-codebook.md").read_text(encoding="utf-8") == to_markdown()


def test_csv_loads_into_pandas_with_the_codebook_dtypes(csv_dir: Path) -> None:
    """No manual fixes: every value fits its dtype (a code outside a category list would turn
    into NaN silently, so missing cells are counted against the raw text)."""
    book = _codebook_csv(csv_dir)
    for table in TABLES:
        raw = pd.read_csv(csv_dir / f"{table}.csv", dtype=str, keep_default_na=False)
        typed = pd.read_csv(csv_dir / f"{table}.csv", dtype=_dtypes_from_codebook_csv(book, table))
        assert (typed.isna().sum() == (raw == "NA").sum()).all(), table
        assert not raw.isin(["True", "False", "true", "false", ""]).any().any(), table
        assert dict(typed.dtypes.astype(str)) == {
            k: str(v) for k, v in pandas_dtypes(table).items()
        }
    tp = pd.read_csv(csv_dir / "timepoints.csv", dtype=pandas_dtypes("timepoints"))
    assert set(tp["completed"].dropna()) == {True, False}
    assert tp["completed"].notna().all() and tp["expected"].notna().all()
    events = pd.read_csv(csv_dir / "events.csv", dtype=pandas_dtypes("events"))
    ae = events["kind"] == "adverse_event"
    assert events.loc[ae, "serious"].notna().all() and events.loc[~ae, "serious"].isna().all()


def test_item_answers_sit_beside_scores_and_give_the_score(csv_dir: Path) -> None:
    """ODI items (one column per linkId) re-score to the exported ODI, row by row."""
    tp = pd.read_csv(csv_dir / "timepoints.csv", dtype=pandas_dtypes("timepoints"))
    items = [c.name for c in codebook().item_columns() if c.instrument == "odi"]
    assert items[0] == "odi_pain_intensity" and len(items) == 10
    answered = tp[tp["odi"].notna()]
    assert len(answered) > 50
    for row in answered.head(40).to_dict("records"):
        answers = {i.removeprefix("odi_"): None if pd.isna(row[i]) else int(row[i]) for i in items}
        assert score("odi", answers).score == pytest.approx(row["odi"])
    unanswered = tp[tp["completed"] == False]  # noqa: E712 (nullable boolean)
    assert unanswered[items].isna().all().all()
    nrs = tp[tp["nrs_back"].notna()]
    assert (nrs["nrsb_pain_back"] == nrs["nrs_back"]).all()


def test_codebook_value_lists_match_the_registry(db: Any) -> None:
    """The codebook's codes are the registry's choices (so they cannot drift apart)."""
    from vertebra.followup.models import FollowUpTimePoint
    from vertebra.registry.models import AdverseEvent, ClinicalEvent, Diagnosis, Patient

    def codes(model: Any, name: str) -> set[str]:
        return {c for c, _ in model._meta.get_field(name).choices}

    book = codebook()
    assert set(book.column("patients", "sex").values) == codes(Patient, "sex")
    assert set(book.column("patients", "condition").values) == codes(Diagnosis, "condition") | {
        "unknown"
    }
    assert set(book.column("timepoints", "status").values) == codes(FollowUpTimePoint, "status")
    assert set(book.column("events", "relatedness").values) == codes(AdverseEvent, "relatedness")
    assert set(book.column("events", "status").values) == codes(AdverseEvent, "status")
    assert set(book.column("events", "kind").values) == codes(ClinicalEvent, "kind") | {
        "adverse_event"
    }


# ------------------------------------------------------------------------------------ REDCap


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_redcap_files_pass_redcaps_import_rules(redcap_dir: Path, db_env: dict[str, str]) -> None:
    dictionary = _rows(redcap_dir / "redcap_data_dictionary.csv")
    header = next(csv.reader((redcap_dir / "redcap_data_dictionary.csv").open(encoding="utf-8")))
    assert tuple(header) == redcap.DICTIONARY_COLUMNS
    assert header[0] == "Variable / Field Name" and header[5].startswith("Choices")
    checked = redcap.check_dictionary(dictionary)
    assert checked.problems == []
    records = _rows(redcap_dir / "redcap_records.csv")
    mapping = _rows(redcap_dir / "redcap_instrument_event_mapping.csv")
    repeating = _rows(redcap_dir / "redcap_repeating_instruments.csv")
    assert redcap.check_records(records, dictionary, mapping, repeating).problems == []
    events = {r["redcap_event_name"] for r in records}
    assert {"baseline_arm_1", "month_3_arm_1", "month_12_arm_1"} <= events
    assert events <= {e["unique_event_name"] for e in _rows(redcap_dir / "redcap_events.csv")}
    by_name = {r["Variable / Field Name"]: r for r in dictionary}
    assert by_name["completed"]["Field Type"] == "yesno"
    assert by_name["arm"]["Choices, Calculations, OR Slider Labels"].startswith(
        "bmac, Bone marrow aspirate concentrate | bmac_prp, "
    )
    assert by_name["odi"]["Text Validation Type OR Show Slider Number"] == "number"
    assert (by_name["odi"]["Text Validation Min"], by_name["odi"]["Text Validation Max"]) == ("0", "100")  # fmt: skip
    assert {r["Identifier?"] for r in dictionary} == {""}
    baseline = [r for r in records if r["redcap_event_name"] == "baseline_arm_1" and not r["redcap_repeat_instrument"]]  # fmt: skip
    patients = pd.read_csv(redcap_dir / "redcap_records.csv", dtype=str, keep_default_na=False)
    assert (
        len({r["record_id"] for r in baseline}) == len(baseline) == patients["record_id"].nunique()
    )
    assert {r["completed"] for r in records if r["completed"]} == {"0", "1"}
    assert all(r["age"] for r in baseline) and "NA" not in patients.to_numpy()
    repeats = [r for r in records if r["redcap_repeat_instrument"] == "event"]
    assert repeats and all(r["ev_kind"] and r["ev_day"] for r in repeats)
    _assert_no_identifier(redcap_dir, db_env)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("Variable / Field Name", "Age", "not a valid variable name"),
        ("Variable / Field Name", "a" * 101, "not a valid variable name"),
        ("Variable / Field Name", "redcap_event_name", "reserved"),
        ("Field Type", "number", "field type"),
        ("Choices, Calculations, OR Slider Labels", "1 Mild | 2, Moderate", "is not 'code, label'"),
        ("Text Validation Type OR Show Slider Number", "decimal", "validation"),
        ("Identifier?", "yes", "Identifier?"),
    ],
)
def test_redcap_dictionary_rules_catch_what_redcap_refuses(
    field: str, value: str, problem: str
) -> None:
    rows = redcap.dictionary()
    grade = next(i for i, r in enumerate(rows) if r["Variable / Field Name"] == "ev_ctcae_grade")
    rows[grade] = {**rows[grade], field: value}
    assert redcap.check_dictionary(redcap.dictionary()).problems == []
    found = redcap.check_dictionary(rows).problems
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("completed", "True", "not 0 or 1"),
        ("arm", "bmc", "not one of the choices"),
        ("odi", "101", "out of range"),
        ("age", "41.5", "not an integer"),
        ("ev_kind", "adverse_event", "not in baseline_arm_1/"),
    ],
)
def test_redcap_record_rules_catch_bad_values(name: str, value: str, problem: str) -> None:
    dictionary = redcap.dictionary()
    fields = [r["Variable / Field Name"] for r in dictionary]
    row = dict.fromkeys([*redcap.RECORD_KEYS, *fields[1:]], "")
    row.update({"record_id": "1", "redcap_event_name": "baseline_arm_1", name: value})
    found = redcap.check_records(
        [row], dictionary, redcap.instrument_event_mapping(), redcap.repeating_instruments()
    ).problems
    assert any(problem in p for p in found), found


def test_csv_export_is_a_report_input_like_the_parquet_one(
    csv_dir: Path, db_env: dict[str, str], tmp_path: Path
) -> None:
    """0/1 booleans and NA read back into `vertebra report --from`: the same report as from the
    typed Parquet release (pseudonyms differ, aggregates do not)."""
    pq = _export(db_env, tmp_path / "pq", "parquet")
    reports = []
    for folder in (csv_dir, pq):
        out = tmp_path / f"{folder.name}.json"
        rep = run_cli("report", "--from", str(folder), "--format", "json", "--out", str(out),
                      "--as-of", "2026-11-25", env=db_env)  # fmt: skip
        assert rep.returncode == 0, rep.stderr
        reports.append(json.loads(out.read_text()))
    from_csv, from_parquet = reports
    assert from_csv["n_patients"] == from_parquet["n_patients"] > 0
    # Survival reads completed (0/1) and the events; adverse events read serious (0/1/NA).
    assert json.dumps(from_csv["survival"], sort_keys=True) == json.dumps(
        from_parquet["survival"], sort_keys=True
    )
    ae_csv = {k: a["adverse_events"] for k, a in from_csv["arms"].items()}
    ae_parquet = {k: a["adverse_events"] for k, a in from_parquet["arms"].items()}
    assert ae_csv == ae_parquet and ae_csv


def test_csv_loads_into_r_with_the_codebook_classes(csv_dir: Path) -> None:
    """The R half of the researcher's check: plain R (`read.csv` with the codebook's `r_class`,
    closed value lists as factor levels) reads every table with no manual fix, and its row
    counts and column sums are the ones pandas reads from the same files."""
    script = Path(__file__).parent / "r" / "read_research_export.R"
    done = subprocess.run(
        ["Rscript", "--vanilla", str(script), str(csv_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    tables = {f[1]: (int(f[2]), int(f[3])) for f in lines if f[0] == "table"}
    assert set(tables) == set(TABLES)
    sums = [f for f in lines if f[0] == "sum"]
    assert len(sums) > 20
    for table in TABLES:
        frame = pd.read_csv(csv_dir / f"{table}.csv", dtype=pandas_dtypes(table))
        assert tables[table] == frame.shape, table
    for _, table, column, count, total in sums:
        values = pd.read_csv(csv_dir / f"{table}.csv", dtype=pandas_dtypes(table))[column]
        assert int(count) == int(values.notna().sum()), (table, column)
        assert float(total) == pytest.approx(float(values.astype("float64").sum()), rel=1e-12)
