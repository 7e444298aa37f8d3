"""The cost and coverage data file (data/learn/cost.yaml) and its loader."""

from __future__ import annotations

import pytest

from vertebra.core.costinfo import cost_info, load_cost_info
from vertebra.core.synth.priors import load_priors


def test_every_treatment_has_a_range_coverage_and_resolved_sources() -> None:
    info = cost_info()
    assert info.currency == "USD" and info.version
    arms = {t.arm for t in info.treatments}
    assert arms == {
        "cell_therapy",
        "surgery",
        "steroid_injection",
        "physical_therapy",
        "medication",
    }
    for t in info.treatments:
        assert 0 < t.low <= t.high and t.sources and t.as_of
        assert t.coverage in {"usually", "sometimes", "rarely"}
    cell = info.for_arm("cell_therapy")
    assert cell is not None and cell.coverage == "rarely"
    assert "outside clinical trials" in cell.coverage_words


def test_no_figure_is_marked_checked_that_the_reference_notes_do_not_hold() -> None:
    """clinical.md has no price figure, so every entry must say it is unverified (U)."""
    info = cost_info()
    assert info.any_unverified
    assert all(t.unverified for t in info.treatments)


def test_the_synthetic_priors_use_the_cited_ranges() -> None:
    info = cost_info()
    price = load_priors()["cost"]["price"]
    group = {"cell_therapy": "cell"}
    for t in info.treatments:
        spec = price[group.get(t.arm, t.arm)]
        assert (spec["low"], spec["high"]) == (t.low, t.high), t.arm


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("sources: [piuzzi2018]", "unknown or no sources"),
        ("low: 5000", "need 0 <= low <= high"),
    ],
)
def test_a_broken_file_is_refused(change: str, words: str) -> None:
    text = """
version: "1"
updated: 2026-12-06
currency: USD
treatments:
  - {id: x, arm: surgery, label: X, low: 10, high: 20, per: one, as_of: "2020",
     price_words: a, coverage: usually, coverage_words: b, sources: [s1], status: U}
sources:
  - {id: s1, citation: C, status: U}
"""
    if change.startswith("sources"):
        text = text.replace("sources: [s1]", "sources: [nope]")
    else:
        text = text.replace("low: 10", "low: 50")
    with pytest.raises(ValueError, match=words):
        load_cost_info(text)
