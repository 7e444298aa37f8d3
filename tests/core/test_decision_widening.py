"""Widening ("borrowing strength honestly"): property tests of the ladder and of
complementary suppression (vertebra.core.decision.widening), on random registries."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings

from tests.core.test_decision import RULES, registries, with_min
from vertebra.core.decision import CellTable, Level, Profile, estimate, path_keys, publishable
from vertebra.core.decision.widening import safe

LEVELS = RULES.widening


def _sums(rows: pd.DataFrame, level: Level, key: tuple[str, ...]) -> pd.Series:
    """Sums of the leaves of one group (an independent filter, not the module's groupby)."""
    mask = pd.Series(True, index=rows.index)
    for col, value in zip(level.keys, key, strict=True):
        mask &= rows[col] == value
    return rows.loc[mask, ["n", "n_expected", "n_pairs", "n_followed"]].sum()


def _descends(outer: Level, inner: Level, outer_key: tuple[str, ...], key: tuple[str, ...]) -> bool:
    return all(key[inner.keys.index(k)] == v for k, v in zip(outer.keys, outer_key, strict=True))


@settings(max_examples=150, deadline=None)
@given(registries())
def test_every_shown_group_and_every_residual_is_empty_or_large_enough(
    registry: tuple[CellTable, int],
) -> None:
    """Shown groups are safe, and each shown group minus its largest shown sub-groups is
    empty or safe: no subtraction of shown figures isolates fewer than the minimum."""
    cells, minimum = registry
    published = publishable(cells.leaves, LEVELS, minimum)
    for arm, levels in published.items():
        rows = cells.leaves[cells.leaves["arm"] == arm]
        for i, level in enumerate(LEVELS):
            for key in levels[level.id]:
                s = _sums(rows, level, key)
                assert safe(int(s["n_pairs"]), int(s["n_followed"]), minimum)
                # maximal shown descendants: shown below, with no shown group in between
                below = [
                    (j, k)
                    for j in range(i)
                    for k in levels[LEVELS[j].id]
                    if _descends(level, LEVELS[j], key, k)
                    and not any(
                        _descends(LEVELS[m], LEVELS[j], km, k)
                        for m in range(j + 1, i)
                        for km in levels[LEVELS[m].id]
                    )
                ]
                residual = s.copy()
                for j, k in below:
                    residual -= _sums(rows, LEVELS[j], k)
                assert residual["n"] == 0 or safe(
                    int(residual["n_pairs"]), int(residual["n_followed"]), minimum
                )


@settings(max_examples=150, deadline=None)
@given(registries())
def test_the_narrowest_shown_level_is_chosen_and_its_numbers_are_its_counts(
    registry: tuple[CellTable, int],
) -> None:
    cells, minimum = registry
    rules = with_min(minimum)
    published = publishable(cells.leaves, LEVELS, minimum)
    for condition in ("degenerative_disc_disease", "sciatica"):
        for age, band in ((45, "40-49"), (55, "50-59")):
            result = estimate(cells, Profile(condition, age), rules)
            path = {"condition": condition, "age_band": band}
            for arm in result.arms:
                rows = cells.leaves[cells.leaves["arm"] == arm.arm]
                on_path = [
                    lv
                    for lv in LEVELS
                    if path_keys(lv, path) in published.get(arm.arm, {}).get(lv.id, ())
                ]
                if not on_path:  # "no one like you yet": no number at all
                    assert not arm.shown and arm.level is None and arm.n_similar is None
                    continue
                level = on_path[0]
                assert arm.shown and arm.level == level.id
                s = _sums(rows, level, path_keys(level, path))
                assert (arm.n_similar, arm.n_expected, arm.n_pairs) == (
                    int(s["n"]),
                    int(s["n_expected"]),
                    int(s["n_pairs"]),
                )
                assert arm.n_pairs is not None and arm.n_pairs >= minimum
                # every narrower level on the path is too small or hidden by suppression
                for lv in LEVELS[: LEVELS.index(level)]:
                    assert path_keys(lv, path) not in published.get(arm.arm, {}).get(lv.id, ())


def test_rules_refuse_a_ladder_whose_groups_do_not_nest() -> None:
    from tests.core.test_decision import raw_rules
    from vertebra.core.decision import DecisionRulesError, parse_rules

    raw: dict[str, Any] = raw_rules()
    raw["widening"][1]["keys"] = ["age_band", "condition"]  # drops nothing
    raw["widening"][2]["describe"] = "everyone with {diagnosis}"
    with pytest.raises(DecisionRulesError) as err:
        parse_rules(raw)
    assert "must drop a key" in str(err.value) and "describe" in str(err.value)
