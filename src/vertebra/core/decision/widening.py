"""Borrowing strength honestly: the ladder of ever wider groups and which groups may be shown.

Contract
--------
The rule set (``widening`` in rules.yaml) names a ladder of :class:`Level` s from the
narrowest to the widest, e.g. condition + age band -> condition -> everyone who had the
treatment. Each level's keys are a subset of the previous level's, so every level partitions
the one above it and the groups of one arm form a tree (a *laminar* family).

:func:`publishable` decides, once per cell table and independently of any query, which groups
of this tree may be shown:

* a group needs at least ``minimum`` patients with both scores, and 0 or at least ``minimum``
  patients followed for 12 months (:func:`safe`);
* **complementary suppression**: the *residual* of a shown group (the group minus its largest
  shown sub-groups) must be empty or itself safe, or else subtracting the shown sub-groups
  from the shown group would give the figures of fewer than ``minimum`` people. When it is
  not, the smallest shown sub-group is hidden (its patients join the residual) until it is.

So every figure on the page is the sum of a whole group at one level, every shown group is
safe, and any difference of shown groups is empty or safe (property tests check all three).
A person's figure for an arm is the narrowest shown group on their own path up the ladder
(:func:`path_keys`). Pure: no Django, no database, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = ["Level", "Published", "path_keys", "publishable", "safe"]


@dataclass(frozen=True)
class Level:
    """One step of the ladder: the keys that must match, and how the page names the group.

    ``describe`` is a sentence fragment with the placeholders {condition} and {age_band}
    ("everyone with {condition}, any age").
    """

    id: str
    keys: tuple[str, ...]
    describe: str


#: The leaf sums the suppression rule looks at (a subset of cells.SUMS).
COUNTS: tuple[str, ...] = ("n", "n_pairs", "n_followed")

#: Per arm id: per level id: the key tuples (in the level's key order) of the shown groups.
Published = Mapping[str, Mapping[str, frozenset[tuple[str, ...]]]]


def safe(n_pairs: int, n_followed: int, minimum: int) -> bool:
    """A group may be shown: ``minimum`` pairs, and no or ``minimum`` followed patients."""
    return n_pairs >= minimum and (n_followed == 0 or n_followed >= minimum)


def _residual_ok(n: int, n_pairs: int, n_followed: int, minimum: int) -> bool:
    """What is left of a shown group beyond its shown sub-groups is empty or safe."""
    return n == 0 or safe(n_pairs, n_followed, minimum)


def path_keys(level: Level, values: Mapping[str, str]) -> tuple[str, ...]:
    """The key tuple of the group at ``level`` that a person with ``values`` belongs to."""
    return tuple(values[k] for k in level.keys)


def _counts(sums: pd.Series) -> tuple[int, int, int]:
    return int(sums["n"]), int(sums["n_pairs"]), int(sums["n_followed"])


def _arm_tree(
    rows: pd.DataFrame, levels: Sequence[Level], minimum: int
) -> dict[str, frozenset[tuple[str, ...]]]:
    """The shown groups of one arm's leaves at each level (bottom-up suppression)."""
    # node id: (level index, key tuple); sums as (n, pairs, followed)
    sums: dict[tuple[int, tuple[str, ...]], tuple[int, int, int]] = {}
    for i, level in enumerate(levels):
        if level.keys:
            grouped = rows.groupby(list(level.keys), observed=True)[list(COUNTS)].sum()
            for key, g in grouped.iterrows():
                k = key if isinstance(key, tuple) else (key,)
                sums[(i, tuple(str(x) for x in k))] = _counts(g)
        else:
            sums[(i, ())] = _counts(rows[list(COUNTS)].sum())
    shown: set[tuple[int, tuple[str, ...]]] = set()
    # maximal shown descendants of every node, filled bottom-up
    tops: dict[tuple[int, tuple[str, ...]], list[tuple[int, tuple[str, ...]]]] = {}
    for i, level in enumerate(levels):
        children: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}
        if i > 0:
            keep = [levels[i - 1].keys.index(k) for k in level.keys]
            for node in (n for n in sums if n[0] == i - 1):
                children.setdefault(tuple(node[1][j] for j in keep), []).append(node)
        for node in sorted(n for n in sums if n[0] == i):
            below: list[tuple[int, tuple[str, ...]]] = []
            for child in children.get(node[1], []):
                below.extend([child] if child in shown else tops.get(child, []))
            n, pairs, followed = sums[node]
            if safe(pairs, followed, minimum):
                residual = [
                    a - sum(sums[d][j] for d in below) for j, a in enumerate((n, pairs, followed))
                ]
                while not _residual_ok(residual[0], residual[1], residual[2], minimum) and below:
                    smallest = min(below, key=lambda d: (sums[d][1], sums[d][0], d))
                    shown.discard(smallest)  # hidden to protect the residual
                    below.remove(smallest)
                    inner = tops.get(smallest, [])
                    below.extend(inner)
                    for j in range(3):
                        residual[j] += sums[smallest][j] - sum(sums[d][j] for d in inner)
                shown.add(node)
            tops[node] = below
    return {
        level.id: frozenset(k for (i, k) in shown if i == idx) for idx, level in enumerate(levels)
    }


def publishable(leaves: pd.DataFrame, levels: Sequence[Level], minimum: int) -> Published:
    """Per arm and level, the groups that may be shown (see the module docstring).

    ``levels`` run from the narrowest to the widest, each level's keys a subset of the
    previous level's (the rule set checks this). ``leaves`` is a cell table's leaves.
    """
    out: dict[str, dict[str, frozenset[tuple[str, ...]]]] = {}
    if leaves.empty:
        return out
    for arm, rows in leaves.groupby("arm", observed=True, sort=True):
        out[str(arm)] = _arm_tree(rows, levels, minimum)
    return out
