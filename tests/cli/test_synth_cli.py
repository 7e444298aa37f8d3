"""``vertebra synth`` as a real subprocess: files, row counts, metadata and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli


def test_synth_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = run_cli(
        "synth", "--patients", "120", "--seed", "7", "--out", str(out), "--today", "2025-06-01"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 9 files" in result.stdout
    for name in ("clinics", "patients", "timepoints", "events"):
        assert (out / f"{name}.parquet").is_file()
        assert (out / f"{name}.csv").is_file()
    assert len(pd.read_parquet(out / "patients.parquet")) == 120
    assert len(pd.read_csv(out / "timepoints.csv")) == 720
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["seed"], meta["n_patients"], meta["today"]) == (7, 120, "2025-06-01")
    assert meta["rows"]["events"] == len(pd.read_parquet(out / "events.parquet"))


def test_synth_is_reproducible_and_format_selectable(tmp_path: Path) -> None:
    args = ["synth", "-n", "40", "--seed", "3", "--today", "2025-01-15", "--format", "parquet"]
    assert run_cli(*args, "--out", str(tmp_path / "a")).returncode == 0
    assert run_cli(*args, "--out", str(tmp_path / "b")).returncode == 0
    assert not (tmp_path / "a" / "patients.csv").exists()
    for name in ("patients", "timepoints", "events"):
        a = pd.read_parquet(tmp_path / "a" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "b" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients", "0"], "--patients must be at least 1"),
        (["--patients", "5", "--seed", "-1"], "--seed must be 0 or more"),
        (["--patients", "5", "--today", "2025-13-01"], "--today must be a date"),
        (["--patients", "5", "--format", "xlsx"], "--format must be parquet, csv or both"),
    ],
)
def test_synth_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("synth", *args, "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_synth_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("synth", "--patients", "5", "--out", str(blocker / "sub"))
    assert result.returncode == 2
    assert result.stderr.startswith("vertebra: error: synth: cannot create")
    assert len(result.stderr.strip().splitlines()) == 1
