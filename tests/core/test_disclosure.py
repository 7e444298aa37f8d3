"""Minimum cell size (CMS cell size suppression policy, 11) on researchers' reports: pure core.
Requirement ids: HIPAA-164.514(b) (no actual knowledge), T22 (researchers' exports)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.analytics import CohortFilter, build_report
from vertebra.core.analytics.toy import toy_tables
from vertebra.core.deidentify import deidentify, release, release_manifest
from vertebra.core.disclosure import (
    COUNT_KEYS,
    Suppressed,
    is_small,
    policy,
    suppress_report,
    withhold_small_groups,
)

AS_OF = date(2026, 11, 25)
TABLES = deidentify(toy_tables(300, seed=3, clinics=4), as_of=AS_OF)
ARMS = sorted(TABLES.patients["arm"].astype(str).unique())
CONDITIONS = sorted(TABLES.patients["condition"].astype(str).unique())


def small_counts(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every count key anywhere in ``value`` whose value is 1-10."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in COUNT_KEYS and is_small(item, 11):
                found.append((f"{path}.{key}", item))
            found += small_counts(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += small_counts(item, f"{path}[{i}]")
    return found


def test_the_policy_is_versioned_data_with_its_source() -> None:
    rules = policy()
    assert rules.min_cell == 11 and rules.version == "1.0.0"
    assert "CMS cell size suppression policy" in rules.source
    assert rules.text == "fewer than 11 (suppressed)"


@settings(max_examples=25, deadline=None)
@given(
    clinics=st.lists(st.sampled_from(["1", "2", "3", "4"]), max_size=2, unique=True),
    arms=st.lists(st.sampled_from(ARMS), max_size=2, unique=True),
    conditions=st.lists(st.sampled_from(CONDITIONS), max_size=2, unique=True),
)
def test_no_report_shows_a_count_between_1_and_10(
    clinics: list[str], arms: list[str], conditions: list[str]
) -> None:
    """Whatever the filter: every count in the JSON is 0 or at least 11, every arm shown has
    at least 11 patients, and a smaller cohort shows no figure at all."""
    flt = CohortFilter.build(clinics=clinics, arms=arms, conditions=conditions)
    report = build_report(TABLES, flt, AS_OF, min_cell=11)
    data = json.loads(json.dumps(report.to_dict()))
    assert small_counts(data) == []
    assert data["disclosure"]["min_cell"] == 11 and data["disclosure"]["version"] == "1.0.0"
    for arm in data["arms"].values():
        assert arm["n_patients"] >= 11
    if report.cohort_suppressed:
        assert data["arms"] == {} and data["n_patients"] == "fewer than 11 (suppressed)"
        assert data["survival"]["curves"] == {} and data["comparisons"] == []


def test_a_filter_that_leaves_one_patient_shows_no_patient_level_value() -> None:
    patients = TABLES.patients
    one = patients.iloc[0]
    flt = CohortFilter.build(
        clinics=[str(one["clinic_id"])], arms=[str(one["arm"])], conditions=[str(one["condition"])]
    )
    full = build_report(TABLES, flt, AS_OF)
    alone = full.n_patients
    report = build_report(TABLES, flt, AS_OF, min_cell=11)
    if alone >= 11:  # the toy cohort is dense; narrow to one patient directly
        report = build_report(
            TABLES.of(patients.iloc[:1], TABLES.timepoints, TABLES.events), None, AS_OF, min_cell=11
        )
    data = report.to_dict()
    assert report.cohort_suppressed
    text = json.dumps(data)
    assert f'"age": {float(one["age"])}' not in text and '"mean"' not in text
    assert data["n_patients"] == "fewer than 11 (suppressed)"
    assert isinstance(data["n_patients"], Suppressed) and data["n_patients"].suppressed


def test_small_arms_are_withheld_from_the_tables() -> None:
    counts = TABLES.patients["arm"].astype(str).value_counts()
    arm = counts.index[-1]
    keep = (
        TABLES.patients["arm"].astype(str).ne(arm)
        | (TABLES.patients.groupby("arm", observed=True).cumcount() < 4).to_numpy()
    )
    tables = TABLES.of(TABLES.patients[keep], TABLES.timepoints, TABLES.events)
    out, withheld = withhold_small_groups(tables)
    assert dict(withheld.arms) == {arm: 4} and not withheld.cohort
    assert arm not in set(out.patients["arm"].astype(str))
    assert set(out.timepoints["patient_id"]) <= set(out.patients["patient_id"])
    assert set(out.events["patient_id"]) <= set(out.patients["patient_id"])
    report = build_report(tables, None, AS_OF, min_cell=11)
    assert arm not in report.arms and report.to_dict()["disclosure"]["withheld"]["arms"] == [arm]


def test_rates_with_a_small_part_or_complement_are_suppressed() -> None:
    data = suppress_report(
        {
            "a": {"rate": 0.05, "ci": [0.01, 0.2], "numerator": 1, "denominator": 20},
            "b": {"rate": 0.95, "ci": [0.8, 0.99], "numerator": 19, "denominator": 20},
            "c": {"rate": 0.5, "ci": [0.3, 0.7], "numerator": 12, "denominator": 24},
            "d": {"rate": 0.0, "ci": [0.0, 0.2], "numerator": 0, "denominator": 24},
        }
    )
    assert data["a"] == {
        "rate": None,
        "ci": None,
        "numerator": "fewer than 11 (suppressed)",
        "denominator": 20,
        "suppressed": True,
    }
    assert data["b"]["numerator"] == "fewer than 11 (suppressed)"  # 20 - 19 = 1
    assert data["c"]["rate"] == 0.5 and data["d"]["rate"] == 0.0


def test_a_lone_suppressed_category_takes_the_next_smallest_with_it() -> None:
    """Secondary suppression: 3 + 12 + 25 = 40 would give the 3 back from the total."""
    data = suppress_report(
        {
            "condition": {
                "x": {"rate": 0.075, "ci": None, "numerator": 3, "denominator": 40},
                "y": {"rate": 0.3, "ci": None, "numerator": 12, "denominator": 40},
                "z": {"rate": 0.625, "ci": None, "numerator": 25, "denominator": 40},
            }
        }
    )
    shown = {k: v["numerator"] for k, v in data["condition"].items()}
    assert shown == {
        "x": "fewer than 11 (suppressed)",
        "y": "fewer than 11 (suppressed)",
        "z": 25,
    }


def test_the_release_withholds_small_arms_and_says_so() -> None:
    counts = TABLES.patients["arm"].astype(str).value_counts()
    arm = counts.index[-1]
    keep = (
        TABLES.patients["arm"].astype(str).ne(arm)
        | (TABLES.patients.groupby("arm", observed=True).cumcount() < 3).to_numpy()
    )
    rel = release(TABLES.of(TABLES.patients[keep], TABLES.timepoints, TABLES.events))
    assert arm not in set(rel.tables.patients["arm"].astype(str))
    manifest = release_manifest(rel, cutoff_year=2026, table_format="csv")
    assert manifest["disclosure"]["withheld_arms"] == [arm]
    assert small_counts(manifest["follow_up_completeness"]) == []
    tiny = release(TABLES.of(TABLES.patients.iloc[:5], TABLES.timepoints, TABLES.events))
    assert tiny.withheld is not None and tiny.withheld.cohort and len(tiny.tables.patients) == 0
