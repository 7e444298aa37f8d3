"""`vertebra report`: JSON/HTML output and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vertebra.cli.main import run
from vertebra.core.analytics.toy import toy_tables


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tables")
    t = toy_tables(400, seed=3)
    t.patients.to_parquet(d / "patients.parquet")
    t.timepoints.to_parquet(d / "timepoints.parquet")
    t.events.to_parquet(d / "events.parquet")
    return d


def test_json_report_with_filters(table_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run(
        [
            "report",
            "--from",
            str(table_dir),
            "--format",
            "json",
            "--out",
            str(out),
            "--arm",
            "bmac",
            "--arm",
            "physical_therapy",
            "--as-of",
            "2026-11-25",
        ]
    )
    d = json.loads(out.read_text())
    assert sorted(d["arms"]) == ["bmac", "physical_therapy"]
    assert d["as_of"] == "2026-11-25"


def test_html_report_is_self_contained(table_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    run(
        [
            "report",
            "--from",
            str(table_dir),
            "--format",
            "html",
            "--out",
            str(out),
            "--as-of",
            "2026-11-25",
        ]
    )
    text = out.read_text()
    assert "missing = non-response" in text and "Observational" in text
    assert "<link" not in text and 'src="http' not in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "/nonexistent-dir"], "not a directory"),
        (["--as-of", "2026-13-01"], "--as-of"),
        (["--format", "pdfx"], "--format"),
        (["--arm", "no_such_arm"], "no patients"),
    ],
)
def test_bad_input_one_line_exit_2(
    table_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    base = ["report", "--from", str(table_dir), "--out", str(tmp_path / "x.json")]
    with pytest.raises(SystemExit) as exc:
        run(base + args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
