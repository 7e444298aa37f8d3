"""The dashboard view model and the HTML report, from a report of toy tables (no database):
headline numbers add up, every code is in words, and small cells suppressed upstream (for
researchers) are shown as "fewer than 11 (suppressed)" instead of crashing anything."""

from __future__ import annotations

import copy
import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from vertebra.core.analytics import CohortFilter, Report, build_report
from vertebra.core.analytics.headline import SUPPRESSED, clinic_letters, filter_words
from vertebra.core.analytics.toy import toy_tables
from vertebra.outcomes import presenters
from vertebra.outcomes.rendering import report_html

AS_OF = dt.date(2026, 11, 25)


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(toy_tables(600, seed=3, clinics=4), CohortFilter(), AS_OF, processes=1)


def _suppress(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with the kinds of markers a small-cell rule may leave behind."""
    d = copy.deepcopy(d)
    arm = next(iter(d["arms"].values()))
    tp = next(t for t in arm["timepoints"] if t["timepoint"] == "month_12")
    tp["n_completed"] = "<11"
    tp["completeness"] = {"suppressed": True}
    tp["odi"]["responder_rate_completers"] = {"suppressed": True}
    tp["odi"]["responder_rate_all"]["numerator"] = None
    tp["odi"]["responder_rate_all"]["suppressed"] = True
    tp["odi"]["mean_change_ci"] = None
    arm["adverse_events"]["serious"] = {"suppressed": True}
    arm["adverse_events"]["by_grade"]["3"] = {"suppressed": True}
    arm["surgery_free"][0]["survival"] = {"suppressed": True}
    arm["surgery_free"][0]["at_risk"] = "<11"
    if d["benchmark"]:
        d["benchmark"]["clinics"][0]["raw_rate"] = {"suppressed": True}
        d["benchmark"]["clinics"][0]["adjusted_rate"] = {"suppressed": True}
    return d


def test_headlines_pool_the_arms_with_their_denominators(report: Report) -> None:
    d = report.to_dict()
    board = presenters.dashboard(report)
    heads = {h.key: h for h in board.headlines}
    tps = [
        next(t for t in a["timepoints"] if t["timepoint"] == "month_12") for a in d["arms"].values()
    ]
    due = sum(t["n_expected"] for t in tps)
    answered = sum(t["n_completed"] for t in tps)
    assert heads["completeness"].value == f"{100 * answered / due:.0f}%"
    assert f"{answered:,} of {due:,} patients due answered" == heads["completeness"].detail
    num = sum(t["odi"]["responder_rate_all"]["numerator"] for t in tps)
    assert heads["responder_rate_all"].detail.startswith(f"{num:,} of {due:,} patients due")
    assert heads["patients"].value == f"{report.n_patients:,}"
    assert set(heads) == {
        "patients",
        "completeness",
        "responder_rate_completers",
        "responder_rate_all",
        "serious_ae",
        "surgery_free",
    }


def test_every_figure_has_a_chart_and_a_table_in_words(report: Report) -> None:
    board = presenters.dashboard(report, {str(i): f"Clinic {i} name" for i in range(1, 5)})
    keys = [f.key for f in board.figures]
    assert keys[:2] == ["responders-odi", "trajectory-odi"]
    for fig in board.figures:
        ET.fromstring(fig.chart.wide)
        ET.fromstring(fig.chart.narrow)
        assert fig.table.rows
    text = repr([(f.heading, f.caption, f.table.header, f.table.rows) for f in board.figures])
    text += repr([(t.header, t.rows) for t in board.tables])
    assert not re.findall(
        r"\b(?:bmac|adipose|steroid_injection|physical_therapy|month_\d+|week_6)\b", text
    )
    assert "Steroid injection" in text and "12 months" in text and "Clinic 1 name" in text


def test_suppressed_cells_are_worded_never_a_crash(report: Report, monkeypatch: Any) -> None:
    suppressed = _suppress(report.to_dict())
    monkeypatch.setattr(Report, "to_dict", lambda self: suppressed)
    board = presenters.dashboard(report)
    cells = [c for f in board.figures for r in f.table.rows for c in r]
    cells += [c for t in board.tables for r in t.rows for c in r]
    assert SUPPRESSED in cells
    odi = next(f for f in board.figures if f.key == "responders-odi")
    assert SUPPRESSED in odi.chart.wide
    heads = {h.key: h for h in board.headlines}
    assert "cells under 11 left out" in heads["completeness"].detail
    html = report_html(report)
    assert SUPPRESSED in html and "Traceback" not in html


def test_filters_and_clinics_in_words() -> None:
    flt = CohortFilter.build(
        clinics=["2"], conditions=["degenerative_disc_disease"], arms=["steroid_injection"],
        adjuncts=["prp"], dose_min=50, dose_max=200,
    )  # fmt: skip
    words = filter_words(flt.to_dict(), {"2": "Northbridge Back Care"}, "month_12")
    assert words == (
        "Northbridge Back Care · Degenerative disc disease · Steroid injection · "
        "Adjunct: Platelet-rich plasma (PRP) · Dose 50–200 million cells · 12 months"
    )
    assert filter_words(CohortFilter().to_dict()) == "All clinics · All conditions · All treatments"
    letters = clinic_letters(["10", "2", "1"])
    assert letters == {"1": "Clinic A", "2": "Clinic B", "10": "Clinic C"}
    assert clinic_letters([str(i) for i in range(28)])["27"] == "Clinic AB"


def test_pdf_loggers_pass_only_errors_while_rendering(caplog: Any) -> None:
    import logging

    from vertebra.outcomes.rendering import quiet_pdf_logging

    fonts = logging.getLogger("fontTools.subset")
    weasy = logging.getLogger("weasyprint")
    weasy.setLevel(logging.INFO)
    caplog.set_level(logging.DEBUG)
    with quiet_pdf_logging():
        fonts.info("subsetting glyphs")
        weasy.warning("ignored css")
        weasy.error("could not load image")
    assert [r.getMessage() for r in caplog.records] == ["could not load image"]
    assert weasy.level == logging.INFO  # restored afterwards
    weasy.setLevel(logging.NOTSET)


def test_mcid_lines_come_from_the_report_s_rules_not_constants(
    report: Report, monkeypatch: Any
) -> None:
    d = copy.deepcopy(report.to_dict())
    d["responder_rules"]["odi"]["points"] = 12.5
    monkeypatch.setattr(Report, "to_dict", lambda self: d)
    board = presenters.dashboard(report)
    odi = next(f for f in board.figures if f.key == "trajectory-odi")
    assert "MCID: 12.5 points better" in odi.chart.wide
    assert "MCID: 12.5 points better" in report_html(report)
