"""write_cohort: Parquet and CSV files, metadata.json, streaming equals in-memory."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from vertebra.core.synth import (
    GENERATOR_VERSION,
    IDENTIFYING_COLUMNS,
    generate_cohort,
    iter_cohort,
    load_priors,
    write_cohort,
)

TODAY = date(2025, 6, 1)
TABLES = ("clinics", "patients", "timepoints", "events")


def test_writes_parquet_csv_and_metadata(tmp_path: Path) -> None:
    cohort = generate_cohort(300, 9, today=TODAY)
    written = write_cohort(cohort, tmp_path)
    for name in TABLES:
        assert [p.name for p in written[name]] == [f"{name}.parquet", f"{name}.csv"]
        expected = len(cohort.tables()[name])
        assert pq.read_metadata(tmp_path / f"{name}.parquet").num_rows == expected
        assert len(pd.read_csv(tmp_path / f"{name}.csv")) == expected
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["seed"] == 9 and meta["n_patients"] == 300 and meta["today"] == "2025-06-01"
    assert meta["generator_version"] == GENERATOR_VERSION
    assert meta["priors_version"] == load_priors().version
    assert meta["rows"]["timepoints"] == 1800


def test_parquet_round_trip_keeps_values_and_dates(tmp_path: Path) -> None:
    cohort = generate_cohort(200, 4, today=TODAY)
    write_cohort(cohort, tmp_path, ("parquet",))
    tp = pd.read_parquet(tmp_path / "timepoints.parquet")
    assert (
        tp.odi.equals(cohort.timepoints.odi)
        or (tp.odi.fillna(-1) == cohort.timepoints.odi.fillna(-1)).all()
    )
    assert (
        str(pq.read_schema(tmp_path / "timepoints.parquet").field("due_date").type) == "date32[day]"
    )
    assert not (tmp_path / "timepoints.csv").exists()


def test_streamed_chunks_equal_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vertebra.core.synth import generator

    monkeypatch.setattr(generator, "CHUNK_SIZE", 250)
    cohort = generate_cohort(600, 2, today=TODAY)
    write_cohort(iter_cohort(600, 2, today=TODAY), tmp_path / "a", ("parquet",))
    write_cohort(cohort, tmp_path / "b", ("parquet",))
    for name in TABLES:
        a = pd.read_parquet(tmp_path / "a" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "b" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_deidentified_output_drops_names(tmp_path: Path) -> None:
    write_cohort(generate_cohort(20, 1, today=TODAY), tmp_path, ("csv",), identified=False)
    patients = pd.read_csv(tmp_path / "patients.csv")
    assert not set(IDENTIFYING_COLUMNS) & set(patients.columns)
    assert json.loads((tmp_path / "metadata.json").read_text())["identified"] is False


def test_progress_callback_counts_patients(tmp_path: Path) -> None:
    seen: list[int] = []
    write_cohort(iter_cohort(30, 1, today=TODAY), tmp_path, ("parquet",), on_chunk=seen.append)
    assert sum(seen) == 30


@pytest.mark.parametrize("formats", [(), ("xlsx",), ("parquet", "json")])
def test_rejects_unknown_formats(tmp_path: Path, formats: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="formats"):
        write_cohort(generate_cohort(5, 1, today=TODAY), tmp_path, formats)
