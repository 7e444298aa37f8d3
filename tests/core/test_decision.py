"""The decision aid's core: rules, a hand-worked example, the difference rule, agreement with
the outcomes analytics, both time bases, and properties over random registries."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from vertebra.core.analytics import (
    AnalysisTables,
    CohortFilter,
    arm_outcomes,
    build_panel,
    surgery_free_survival,
)
from vertebra.core.decision import (
    KEYS,
    SUMS,
    CellTable,
    DecisionRulesError,
    EvidenceError,
    Profile,
    ProfileError,
    build_cell_table,
    decision_rules,
    estimate,
    load_evidence,
    parse_evidence,
    parse_rules,
)
from vertebra.core.decision.cells import leaf_sums
from vertebra.core.decision.evidence import _packaged
from vertebra.core.deidentify import deidentify
from vertebra.core.instruments import get_definition
from vertebra.core.knowledge import find_promising_language, load_knowledge_base
from vertebra.core.synth import generate_cohort

AS_OF = dt.date(2026, 11, 25)
RULES = decision_rules()
DDD = "degenerative_disc_disease"


def with_min(minimum: int) -> Any:
    """The packaged rules with another minimum cell size (for small hand-made registries)."""
    return dataclasses.replace(RULES, min_patients=minimum)


# ------------------------------------------------------------------------------- rules


def test_rules_are_the_packaged_data() -> None:
    assert RULES.min_patients == 20
    assert RULES.timepoint == "month_12" and RULES.measure == "odi"
    assert [a.id for a in RULES.arms] == [
        "medication",
        "physical_therapy",
        "steroid_injection",
        "surgery",
        "cell_therapy",
    ]
    assert [b.id for b in RULES.age_bands] == ["18-39", "40-49", "50-59", "60-69", "70+"]
    assert RULES.age_band(17) is None and RULES.age_band(39).id == "18-39"  # type: ignore[union-attr]
    assert RULES.age_band(90).id == "70+"  # type: ignore[union-attr]


@given(st.one_of(st.floats(0, 100), st.integers(0, 100), st.just(float("nan"))))
def test_vectorised_odi_bands_equal_the_instrument_bands(score: float) -> None:
    code = int(RULES.odi_band_codes([score])[0])
    if math.isnan(score):
        assert code == -1
        return
    inst = get_definition("odi").band_for(float(score))
    assert inst in RULES.odi_bands[code].bands
    assert RULES.odi_band(score) == RULES.odi_bands[code]


@given(st.one_of(st.integers(0, 130), st.floats(0, 130), st.just(float("nan"))))
def test_vectorised_age_bands_equal_the_scalar_rule(age: float) -> None:
    code = int(RULES.age_band_codes([age])[0])
    band = RULES.age_band(age)
    assert (code == -1) == (band is None)
    if band is not None:
        assert RULES.age_bands[code] == band


def raw_rules() -> dict[str, Any]:
    from importlib.resources import files

    import yaml

    text = files("vertebra").joinpath("data", "decision", "rules.yaml").read_text("utf-8")
    raw: dict[str, Any] = yaml.safe_load(text)
    return raw


def test_rules_refuse_gaps_promises_and_missing_caveats() -> None:
    raw = raw_rules()
    raw["similarity"]["age_bands"][1]["from"] = 41  # a gap between 39 and 41
    raw["caveats"] = [c for c in raw["caveats"] if c["id"] != "sham"]
    raw["caveats"][0]["text"] = "This treatment is guaranteed to work."
    raw["similarity"]["baseline_odi_bands"][0]["bands"] = ["minimal"]  # moderate lost
    with pytest.raises(DecisionRulesError) as err:
        parse_rules(raw)
    message = str(err.value)
    for expected in ("must start the year after", "sham", "guaranteed", "moderate"):
        assert expected in message


# ------------------------------------------------------------------ a hand-made registry


def hand_tables(extra_patients: list[dict[str, Any]] | None = None) -> AnalysisTables:
    """Eight patients; A-E are "like" a 52-year-old with degenerative disc disease who had
    physical therapy (see test_hand_worked_example)."""
    early, late = dt.date(2025, 1, 1), dt.date(2026, 6, 1)
    people = [
        # id, arm, age, treated, baseline ODI, 12-month ODI (None = not answered), startback
        ("A", "physical_therapy", 52, early, 40.0, 28.0, "medium"),
        ("B", "physical_therapy", 55, early, 50.0, 45.0, "medium"),
        ("C", "physical_therapy", 59, early, 60.0, 40.0, "medium"),
        ("D", "physical_therapy", 50, early, 30.0, None, "medium"),
        ("E", "physical_therapy", 51, late, 44.0, None, "medium"),
        ("F", "physical_therapy", 52, early, None, 20.0, "medium"),  # no baseline: left out
        ("G", "surgery", 52, early, 50.0, 30.0, "medium"),  # another arm
        ("H", "physical_therapy", 61, early, 50.0, 20.0, "medium"),  # another age band
    ]
    patients, rows = [], []
    for pid, arm, age, treated, base, month12, sb in people:
        patients.append(
            {
                "patient_id": pid,
                "clinic_id": "1",
                "arm": arm,
                "condition": DDD,
                "treatment_date": pd.Timestamp(treated),
                "age": float(age),
                "sex": "female",
                "startback_group": sb,
                "pain_duration_months": 12.0,
            }
        )
        for tp, months, score in (("baseline", 0, base), ("month_12", 12, month12)):
            due = pd.Timestamp(treated) + pd.DateOffset(months=months)
            rows.append(
                {
                    "patient_id": pid,
                    "timepoint": tp,
                    "months": float(months),
                    "due_date": due,
                    "completed": score is not None,
                    "odi": np.nan if score is None else score,
                    "nrs_back": np.nan,
                }
            )
    events = pd.DataFrame(
        {
            "patient_id": ["D", "E", "A"],
            "kind": ["subsequent_surgery", "subsequent_surgery", "subsequent_surgery"],
            # D: day 200 (counts); E: day 10 but E was treated < 12 months ago (not followed);
            # A: 30 days BEFORE treatment (history, not an outcome).
            "date": pd.to_datetime(["2025-07-20", "2026-06-11", "2024-12-02"]),
        }
    )
    return AnalysisTables.of(pd.DataFrame(patients), pd.DataFrame(rows), events)


def without_h() -> AnalysisTables:
    """The hand-made registry without H (the only 60-69 patient), so that A-E's group is not
    hidden to protect H (see test_complementary_suppression_hides_the_narrow_group)."""
    t = hand_tables()
    keep = t.patients["patient_id"] != "H"
    return AnalysisTables.of(
        t.patients.loc[keep],
        t.timepoints.loc[t.timepoints["patient_id"] != "H"],
        t.events,
    )


def test_hand_worked_example() -> None:
    """docs/algorithms/decision-aid.md, "Worked example", number by number.

    Like you (DDD, 50-59, physical therapy, baseline ODI known): A, B, C, D, E -> 5.
    12-month questionnaire due by 25 Nov 2026: A-D (E was treated in June 2026) -> 4.
    Answered: A, B, C -> 3 pairs; changes -12, -5, -20.
    Responders (>= 10 points or >= 30 %): A (12 points), C (20 points); B (5 points, 10 %) not.
    Surgery: followed 12 months A-D (4); D had surgery on day 200 -> 1 of 4.
    """
    cells = build_cell_table(without_h(), AS_OF, with_min(3))
    result = estimate(cells, Profile(DDD, 52), with_min(3))
    arm = next(a for a in result.arms if a.arm == "physical_therapy")
    assert arm.shown and arm.level == "like_you"
    assert (arm.n_similar, arm.n_expected, arm.n_completed, arm.n_pairs) == (5, 4, 3, 3)
    assert arm.completeness is not None and arm.responders_completers is not None
    assert arm.responders_all is not None and arm.mean_change is not None
    assert arm.surgery is not None
    assert (arm.completeness.numerator, arm.completeness.denominator) == (3, 4)
    assert (arm.responders_completers.numerator, arm.responders_completers.denominator) == (2, 3)
    assert (arm.responders_all.numerator, arm.responders_all.denominator) == (2, 4)
    # Wilson 95 %, by the formula: centre (x + z²/2)/(n + z²), half z·√(n p̂(1-p̂) + z²/4)/(n + z²).
    z = 1.959963984540054
    centre, half = (
        (2 + z * z / 2) / (3 + z * z),
        z * math.sqrt(3 * (2 / 3) * (1 / 3) + z * z / 4) / (3 + z * z),
    )
    assert arm.responders_completers.ci == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert arm.responders_completers.ci == pytest.approx((0.2077, 0.9385), abs=1e-4)
    for rate, (x, n) in (
        (arm.responders_completers, (2, 3)),
        (arm.responders_all, (2, 4)),
        (arm.completeness, (3, 4)),
        (arm.surgery, (1, 4)),
    ):
        assert rate.ci == pytest.approx(proportion_confint(x, n, method="wilson"), abs=1e-12)
    # Mean change -12.33, SD 7.51, t(0.975, 2) = 4.303 -> -30.98 to 6.31 (as in analytics.md).
    assert arm.mean_change.n == 3
    assert arm.mean_change.mean == pytest.approx(-37 / 3)
    assert arm.mean_change.sd == pytest.approx(7.5056, abs=1e-4)
    assert arm.mean_change.ci == pytest.approx((-30.98, 6.31), abs=0.01)
    assert (arm.surgery.numerator, arm.surgery.denominator) == (1, 4)
    # The surgery arm's one patient G stays hidden; nothing is ranked or reordered.
    assert [a.arm for a in result.arms] == [a.id for a in RULES.arms]
    assert not next(a for a in result.arms if a.arm == "surgery").shown


def test_too_few_shows_no_number_at_all() -> None:
    """With a minimum of 4, three patients with 12-month answers are too few: nothing shown."""
    result = estimate(
        build_cell_table(without_h(), AS_OF, with_min(4)), Profile(DDD, 52), with_min(4)
    )
    arm = next(a for a in result.arms if a.arm == "physical_therapy")
    assert not arm.shown and arm.reason == "too_few"
    numbers = {
        k: v for k, v in arm.to_dict().items() if k not in ("arm", "label", "shown", "reason")
    }
    assert numbers and all(v is None for v in numbers.values())


def test_a_narrower_group_is_hidden_when_the_difference_would_be_too_small() -> None:
    """Block (no ODI given): 3 pairs. ODI 41-60: B, C -> 2 pairs; ODI 0-40: A -> 1 pair.

    With a minimum of 2 the block and the 41-60 cell both reach it, but showing both would
    give the outcome of A alone (3 - 2 = 1 pair) by subtraction: the 41-60 cell is hidden.
    With a minimum of 1 every band is large enough and the cell is shown.
    """
    cells = build_cell_table(without_h(), AS_OF, with_min(2))
    block = estimate(cells, Profile(DDD, 52), with_min(2))
    narrow = estimate(cells, Profile(DDD, 52, odi=50.0), with_min(2))
    assert next(a for a in block.arms if a.arm == "physical_therapy").shown
    # the narrow group is hidden: the figure falls back to the block, and says so
    fallback = next(a for a in narrow.arms if a.arm == "physical_therapy")
    assert fallback.level == "like_you" and fallback.n_pairs == 3
    shown = estimate(cells, Profile(DDD, 52, odi=50.0), with_min(1))
    arm = next(a for a in shown.arms if a.arm == "physical_therapy")
    assert arm.shown and (arm.n_similar, arm.n_expected) == (3, 2) and arm.level == "profile"
    assert arm.responders_completers is not None and arm.responders_completers.numerator == 1
    assert shown.odi_band is not None and shown.odi_band.id == "41-60"


def test_complementary_suppression_hides_the_narrow_group() -> None:
    """docs/algorithms/decision-aid.md, "Widening": with H (the only 60-69 patient, 1 pair)
    and a minimum of 3, showing A-E (3 pairs) beside everyone with the condition (4 pairs)
    would give H's outcome by subtraction. So A-E's group is hidden and both a 52-year-old and
    a 61-year-old see the condition-level figure (6 patients, 5 due, 4 with both scores),
    named as such; the surgery arm (G alone) shows no one like you at any level."""
    cells = build_cell_table(hand_tables(), AS_OF, with_min(3))
    for age in (52, 61):
        result = estimate(cells, Profile(DDD, age), with_min(3))
        arm = next(a for a in result.arms if a.arm == "physical_therapy")
        assert arm.level == "condition"
        assert (arm.n_similar, arm.n_expected, arm.n_completed, arm.n_pairs) == (6, 5, 4, 4)
        assert arm.responders_completers is not None
        # responders: A (-12), C (-20), H (-30); B (-5) not
        assert (arm.responders_completers.numerator, arm.responders_completers.denominator) == (
            3,
            4,
        )
        surgery = next(a for a in result.arms if a.arm == "surgery")
        assert not surgery.shown and surgery.level is None
    # with a minimum of 1, every group is large enough: the narrowest is chosen
    narrow = estimate(cells, Profile(DDD, 52), with_min(1))
    assert next(a for a in narrow.arms if a.arm == "physical_therapy").level == "like_you"


def test_startback_unknown_is_its_own_group() -> None:
    tables = hand_tables()
    patients = tables.patients.assign(
        startback_group=np.where(tables.patients["patient_id"] == "B", None, "medium")
    )
    cells = build_cell_table(
        AnalysisTables.of(patients, tables.timepoints, tables.events), AS_OF, with_min(1)
    )
    groups = cells.leaves.loc[cells.leaves["arm"] == "physical_therapy", "startback"]
    assert set(groups) == {"medium", "unknown"}
    result = estimate(cells, Profile(DDD, 52, startback="medium"), with_min(1))
    assert next(a for a in result.arms if a.arm == "physical_therapy").n_similar == 4


def test_profile_errors_name_the_problem() -> None:
    cells = build_cell_table(hand_tables(), AS_OF, RULES)
    for profile, words in (
        (Profile("back_ache", 52), "condition"),
        (Profile(DDD, 15), "age"),
        (Profile(DDD, 130), "age"),
        (Profile(DDD, 52, odi=120.0), "odi"),
        (Profile(DDD, 52, odi=float("nan")), "odi"),
        (Profile(DDD, 52, startback="severe"), "startback"),
    ):
        with pytest.raises(ProfileError, match=words):
            estimate(cells, profile, RULES)


def test_cells_hold_sums_only() -> None:
    cells = build_cell_table(hand_tables(), AS_OF, RULES)
    assert list(cells.leaves.columns) == [*KEYS, *SUMS]
    assert "patient_id" not in cells.leaves.columns
    assert cells.n_treated == 8 and cells.n_in_scope == 7  # F has no baseline ODI


# ------------------------------------------------- agreement with the outcomes analytics


@pytest.fixture(scope="module")
def synth() -> AnalysisTables:
    c = generate_cohort(3000, 3, today=AS_OF)
    return AnalysisTables.of(c.patients, c.timepoints, c.events)


def similar_tables(tables: AnalysisTables, arm_id: str, age_band: Any) -> AnalysisTables:
    """The analysis tables cut to the patients "like" a DDD patient of ``age_band`` in one arm
    row (arm renamed to the row id), by plain pandas: an independent route to the same set."""
    p, tp = tables.patients, tables.timepoints
    base = tp[(tp["timepoint"] == "baseline") & tp["completed"].astype(bool)]
    has_base = set(base.loc[base["odi"].notna(), "patient_id"])
    registry_arms = RULES.arm(arm_id).registry_arms
    upper = np.inf if age_band.upper is None else age_band.upper
    keep = (
        (p["condition"] == DDD)
        & p["arm"].astype(str).isin(registry_arms)
        & p["age"].between(age_band.lower, upper)
        & p["patient_id"].isin(has_base)
    )
    pts = p.loc[keep].assign(arm=arm_id).reset_index(drop=True)
    return AnalysisTables.of(pts, tp[tp["patient_id"].isin(pts["patient_id"])], tables.events)


@pytest.mark.parametrize("arm_id", ["cell_therapy", "physical_therapy"])
def test_figures_equal_the_dashboards_arm_outcomes(synth: AnalysisTables, arm_id: str) -> None:
    rules = with_min(1)
    result = estimate(build_cell_table(synth, AS_OF, rules), Profile(DDD, 45), rules)
    arm = next(a for a in result.arms if a.arm == arm_id)
    same = similar_tables(synth, arm_id, result.age_band)
    outcome = arm_outcomes(build_panel(same, CohortFilter(), AS_OF))[arm_id]
    m12 = next(o for o in outcome if o.timepoint == "month_12")
    odi = m12.measures["odi"]
    assert arm.n_similar == len(same.patients)
    assert arm.completeness == m12.completeness
    assert arm.responders_completers == odi.responder_rate_completers
    assert arm.responders_all == odi.responder_rate_all
    assert odi.change is not None and arm.mean_change is not None
    assert arm.mean_change.n == odi.change.n
    assert arm.mean_change.mean == pytest.approx(odi.change.mean, rel=1e-9)
    assert arm.mean_change.ci == pytest.approx(odi.change.ci, rel=1e-9)
    # Surgery within 12 months = 1 - Kaplan-Meier S(12 months) among those followed 12 months.
    followed = same.patients[
        (pd.Timestamp(AS_OF) - same.patients["treatment_date"]).dt.days >= 365.25
    ]
    sub = AnalysisTables.of(followed, same.timepoints, same.events)
    km = surgery_free_survival(
        build_panel(sub, CohortFilter(), AS_OF), sub.events, AS_OF, landmarks=(12,)
    )
    s12 = km.curves[arm_id].landmarks[0].survival
    assert arm.surgery is not None and s12 is not None
    assert arm.surgery.denominator == len(followed)
    assert arm.surgery.rate == pytest.approx(1.0 - s12, abs=1e-12)


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested JSON value as {path: leaf}."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}[{i}]").items()
        }
    return {prefix: value}


def test_deidentified_tables_give_the_same_figures(synth: AnalysisTables) -> None:
    """The web shell reads the researchers' de-identified tables: same figures."""
    deid = deidentify(synth, as_of=AS_OF)
    assert deid.time_base == "days_from_treatment"
    for profile in (Profile(DDD, 45), Profile("herniated_disc", 33, odi=30.0)):
        a = flat(estimate(build_cell_table(synth, AS_OF, RULES), profile, RULES).to_dict())
        b = flat(estimate(build_cell_table(deid, AS_OF, RULES), profile, RULES).to_dict())
        assert a.pop(".time_base") == "calendar" and b.pop(".time_base") == "days_from_treatment"
        assert a.keys() == b.keys()
        for key, va in a.items():
            if isinstance(va, float):
                assert b[key] == pytest.approx(va, rel=1e-9, abs=1e-12), key
            else:
                assert b[key] == va, key


# --------------------------------------------------------------------------- properties

CONDITIONS = (DDD, "sciatica")
AGES = {"40-49": 45, "50-59": 55}


@st.composite
def registries(draw: Any) -> tuple[CellTable, int]:
    """Random per-patient rows (consistent: pair => completed => expected, surgery =>
    followed, responder => pair) summed into a cell table, and a minimum cell size."""
    n = draw(st.integers(0, 160))
    # Few distinct keys per registry, so that cells (and narrow cells) reach the minimum often.
    arms = [a.id for a in RULES.arms][: draw(st.integers(1, len(RULES.arms)))]
    odi_bands = [b.id for b in RULES.odi_bands][: draw(st.integers(1, len(RULES.odi_bands)))]
    groups = ["low", "medium", "high", "unknown"][: draw(st.integers(1, 4))]
    conditions = CONDITIONS[: draw(st.integers(1, 2))]
    ages = list(AGES)[: draw(st.integers(1, 2))]
    rows = []
    for _ in range(n):
        expected = draw(st.integers(0, 4)) > 0  # mostly due and answered, as in a registry
        completed = expected and draw(st.integers(0, 4)) > 0
        pair = completed and draw(st.integers(0, 9)) > 0
        change = draw(st.floats(-100, 100)) if pair else 0.0
        followed = draw(st.integers(0, 4)) > 0
        rows.append(
            {
                "arm": draw(st.sampled_from(arms)),
                "condition": draw(st.sampled_from(conditions)),
                "age_band": draw(st.sampled_from(ages)),
                "odi_band": draw(st.sampled_from(odi_bands)),
                "startback": draw(st.sampled_from(groups)),
                "n": 1,
                "n_expected": int(expected),
                "n_completed": int(completed),
                "n_pairs": int(pair),
                "n_responders": int(pair and change <= -10),
                "sum_change": change,
                "sumsq_change": change * change,
                "n_followed": int(followed),
                "n_surgery": int(followed and draw(st.booleans())),
            }
        )
    frame = pd.DataFrame(rows, columns=[*KEYS, *SUMS])
    leaves = leaf_sums(frame) if n else frame
    cells = CellTable(RULES.version, "calendar", leaves, n, n, True)
    return cells, draw(st.integers(1, 10))


profiles = st.builds(
    Profile,
    condition=st.sampled_from(CONDITIONS),
    age=st.sampled_from(list(AGES.values())),
    odi=st.one_of(st.none(), st.sampled_from([10.0, 50.0, 90.0])),
    startback=st.one_of(st.none(), st.sampled_from(["low", "medium"])),
)


@settings(max_examples=150, deadline=None)
@given(registries(), profiles)
def test_properties_of_every_estimate(registry: tuple[CellTable, int], profile: Profile) -> None:
    cells, minimum = registry
    rules = with_min(minimum)
    result = estimate(cells, profile, rules)
    block = estimate(cells, Profile(profile.condition, profile.age), rules)
    assert [a.arm for a in result.arms] == [a.id for a in rules.arms]  # fixed order, no ranking
    for arm, wide in zip(result.arms, block.arms, strict=True):
        if not arm.shown:
            numbers = [
                v for k, v in arm.to_dict().items() if k not in ("arm", "label", "shown", "reason")
            ]
            assert all(v is None for v in numbers)
            continue
        rates = [arm.completeness, arm.responders_completers, arm.responders_all, arm.surgery]
        denominators = [arm.n_similar, arm.n_expected, arm.mean_change.n if arm.mean_change else 0]
        denominators += [r.denominator for r in rates if r is not None]
        assert min(denominators) >= minimum  # never a figure for fewer than the minimum
        for r in rates:
            if r is not None:
                assert r.ci is not None and r.rate is not None
                assert r.ci[0] - 1e-12 <= r.rate <= r.ci[1] + 1e-12
        m = arm.mean_change
        assert m is not None and m.mean is not None
        if m.ci is not None:
            assert m.ci[0] - 1e-9 <= m.mean <= m.ci[1] + 1e-9
        # Subtracting this figure from the wider group's never isolates fewer than the minimum.
        if wide.shown and wide is not arm:
            assert wide.mean_change is not None and arm.mean_change is not None
            diff = wide.mean_change.n - arm.mean_change.n
            assert diff == 0 or diff >= minimum
            if wide.surgery is not None and arm.surgery is not None:
                gap = wide.surgery.denominator - arm.surgery.denominator
                assert gap == 0 or gap >= minimum


def test_an_empty_registry_shows_nothing() -> None:
    empty = hand_tables()
    tables = AnalysisTables.of(
        empty.patients.iloc[0:0], empty.timepoints.iloc[0:0], empty.events.iloc[0:0]
    )
    cells = build_cell_table(tables, AS_OF, RULES)
    assert cells.n_treated == 0 and cells.n_in_scope == 0 and cells.leaves.empty
    assert not estimate(cells, Profile(DDD, 52), RULES).any_shown


# ----------------------------------------------------------------------------- evidence


def test_evidence_cites_the_knowledge_base_and_keeps_the_negative_results() -> None:
    kb = load_knowledge_base()
    evidence = load_evidence(RULES, kb)
    assert list(evidence.rows) == [a.id for a in RULES.arms]
    assert all(evidence.rows[a.id] for a in RULES.arms)
    for rows in evidence.rows.values():
        for row in rows:
            assert row.source in kb.sources
            assert kb.sources[row.source].verified or row.status == "U"
            assert find_promising_language(f"{row.text} {row.number} {row.design}") == []
    cell = evidence.rows["cell_therapy"]
    negative = {(r.source, r.kind) for r in cell if r.finding == "no_difference"}
    assert ("dream2025", "sham_controlled") in negative and ("ijms2023review", "review") in negative
    kinds = [r.kind for r in cell]
    assert kinds.index("sham_controlled") < kinds.index("single_group")  # controlled first
    assert max(i for i, k in enumerate(kinds) if k != "single_group") < kinds.index("single_group")
    assert next(r for r in cell if r.source == "noriega2017").status == "U"
    mesoblast = next(r for r in cell if r.source == "mesoblast-p3")
    assert mesoblast.kind == "company_statement" and "company statement" in mesoblast.text
    surgery = {r.source for r in evidence.rows["surgery"] if r.finding == "no_difference"}
    assert "froholdt2012" in surgery


def test_evidence_refuses_unknown_sources_false_verification_and_promises() -> None:
    raw = copy.deepcopy(_packaged())
    rows = raw["arms"]["cell_therapy"]
    rows[0]["source"] = "nobody2099"
    rows[2]["status"] = "V"  # noriega2017 is unverified in sources.yaml
    rows[4]["text"] = "Cells for back pain (press release)"  # a company statement unlabelled
    rows[6]["number"] = "a miracle"
    rows[7]["kind"] = "anecdote"
    raw["arms"]["medication"] = []
    with pytest.raises(EvidenceError) as err:
        parse_evidence(raw, RULES, load_knowledge_base())
    message = str(err.value)
    for expected in (
        "nobody2099",
        "noriega2017",
        "company statement must say so",
        "miracle",
        "anecdote",
        "arms.medication: at least one",
    ):
        assert expected in message
