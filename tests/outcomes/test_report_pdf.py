"""The PDF report as a reader gets it: `vertebra report --format pdf` run as a real
subprocess on the registry database (``db_env``), its text extracted with poppler's
``pdftotext -layout`` and word boxes with ``pdftotext -bbox``: filters in words on the first
page, every column header on every page a table spans, nothing off the A4 page, no codes,
and a quiet console (no log flood)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

ODI_TABLE = "ODI (disability, 0–100): follow-up, change and responders by treatment and time point"
RESPONDER_HEADERS = (
    "Treatment",
    "Time point",
    "Due",
    "Answered",
    "Mean change (95% CI)",
    "Responders among those who answered",
    "Responders, missing = non-response",
    "≥50% better among those who answered",
    "≥50% better, missing = non-response",
)
TABLES = {
    ODI_TABLE: RESPONDER_HEADERS,
    "Back pain (0–10): follow-up, change and responders by treatment and time point": (
        RESPONDER_HEADERS
    ),
    "Opioid use by treatment and time point": (
        "Treatment",
        "Time point",
        "On opioids",
        "Mean change in opioid dose, MME/day (95% CI)",
    ),
    "Surgery-free survival at 6, 12 and 24 months": (
        "Treatment",
        "At",
        "Surgery-free",
        "95% CI",
        "At risk",
        "Surgeries so far",
    ),
}


@pytest.fixture(scope="module")
def pdf_run(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of one condition as PDF, and everything the command printed."""
    assert shutil.which("pdftotext"), "poppler-utils (pdftotext) is needed"
    out = tmp_path_factory.mktemp("pdf") / "report.pdf"
    done = run_cli(
        "report", "--format", "pdf", "--out", str(out), "--as-of", "2026-11-25",
        "--condition", "degenerative_disc_disease", env=db_env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, done.stdout + done.stderr


def _pages(pdf: Path) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return [page for page in text.split("\f") if page.strip()]


def _words(text: str) -> set[str]:
    """Words, with hyphens as breaks (a cell may wrap "non-response" after "non-")."""
    return {w for w in re.split(r"[\s\-]+", text) if w}


def test_report_prints_no_log_flood(pdf_run: tuple[Path, str]) -> None:
    _pdf, printed = pdf_run
    lines = [line for line in printed.splitlines() if line.strip()]
    assert len(lines) < 10, printed
    assert not any("weasyprint" in line or "fontTools" in line for line in lines)
    assert lines[-1].startswith("wrote ")


def test_pdf_states_its_filters_in_words_and_shows_no_codes(pdf_run: tuple[Path, str]) -> None:
    pages = _pages(pdf_run[0])
    first = " ".join(pages[0].split())
    assert "Filters: All clinics · Degenerative disc disease · All treatments · 12 months" in first
    assert "Follow-up as of 25 Nov 2026" in first
    assert "filter: {" not in first
    for needle in ("Follow-up at 12 months", "Responders, missing = non-response",
                   "Serious adverse events", "Surgery-free at 12 months"):  # fmt: skip
        assert needle in first
    whole = "\n".join(pages)
    codes = re.findall(r"\b[a-z]+_[a-z0-9_]+\b", whole)
    assert codes == []


def test_every_column_header_is_on_every_page_of_its_table(pdf_run: tuple[Path, str]) -> None:
    pages = _pages(pdf_run[0])
    spans = dict.fromkeys(TABLES, 0)
    for number, page in enumerate(pages, start=1):
        flat = " ".join(page.split())
        words = _words(page)
        for title, headers in TABLES.items():
            if title not in flat:
                continue
            spans[title] += 1
            for header in headers:
                missing = _words(header) - words
                assert not missing, f"page {number}: {title}: {header!r} lacks {missing}"
    assert all(n >= 1 for n in spans.values()), spans
    assert spans[ODI_TABLE] >= 2, "the responder table should run over pages in this test"


def test_nothing_runs_off_the_a4_page(pdf_run: tuple[Path, str]) -> None:
    html = subprocess.run(
        ["pdftotext", "-bbox", str(pdf_run[0]), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', html, re.S)
    assert pages
    for width, height, body in pages:
        w, h = float(width), float(height)
        assert {round(w), round(h)} == {842, 595}  # A4 (landscape)
        for x_max, y_max in re.findall(r'xMax="([\d.]+)" yMax="([\d.]+)"', body):
            assert float(x_max) <= w and float(y_max) <= h
