"""The out-of-core engine (DuckDB over Parquet) gives the in-memory engine's report.

Compared figure by figure on several synthetic cohorts (vertebra synth, several seeds and
filters) and on the analytics toy tables (another column layout). Tolerance: every count,
rate, Wilson/Poisson interval, survival and return-curve figure, propensity comparison, clinic
benchmark and cost figure must be equal; floats may differ only where the two engines sum in a
different order (DuckDB's AVG / STDDEV_SAMP / MEDIAN against numpy's shifted bincounts for the
outcome table's means, SDs, medians and their t intervals, and lifelines' KM fed collapsed
counts for the return curves): relative 1e-9 (observed: below 3e-12). SDs and the intervals
built on them also get an absolute 1e-6: the in-memory engine's one-pass SD
(sqrt((sum(x-c)^2 - n*mean^2)/(n-1)), vertebra.core.analytics.outcomes._group_mean_sd) leaves
round-off of ~1e-7 where every value of a cell is equal (e.g. MME 0 for all: 1.6e-07 instead
of DuckDB's exact 0).
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vertebra.analysis.duckdb_report import build_report_duckdb
from vertebra.cli.main import run
from vertebra.core.analytics import CohortFilter, build_report, read_tables
from vertebra.core.analytics.toy import toy_tables
from vertebra.core.synth import iter_cohort, write_cohort

AS_OF = date(2026, 11, 25)
REL = 1e-9
SD_ABS = 1e-6


def _diffs(a: Any, b: Any, path: str = "") -> list[str]:
    """Where `a` and `b` differ beyond the stated tolerance (empty: the same report)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _diffs(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diffs(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        spread = path.endswith("sd") or "/ci" in path or "_ci" in path
        if a == b or math.isclose(a, b, rel_tol=REL, abs_tol=SD_ABS if spread else 1e-12):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def _synth(base: Path, n: int, seed: int) -> Path:
    out = base / f"synth-{n}-{seed}"
    write_cohort(iter_cohort(n, seed, today=AS_OF), out, formats=("parquet",))
    return out


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("duckdb-engine")
    toy = base / "toy"
    toy.mkdir()
    t = toy_tables(1500, seed=11, today=AS_OF)
    for name in ("patients", "timepoints", "events"):
        getattr(t, name).to_parquet(toy / f"{name}.parquet")
    return {
        "synth-a": _synth(base, 3000, 1),
        "synth-b": _synth(base, 1200, 2),
        "synth-c": _synth(base, 400, 3),
        "toy": toy,
    }


FILTERS = {
    "all": CohortFilter(),
    "arms": CohortFilter.build(arms=["bmac", "physical_therapy", "surgery"]),
    "dates": CohortFilter.build(
        treated_from=date(2024, 1, 1), conditions=["degenerative_disc_disease", "herniated_disc"]
    ),
}


@pytest.mark.parametrize(
    ("cohort", "flt"),
    [
        ("synth-a", "all"),
        ("synth-a", "arms"),
        ("synth-b", "all"),
        ("synth-b", "dates"),
        ("synth-c", "all"),
        ("toy", "all"),
        ("toy", "arms"),
    ],
)
def test_duckdb_engine_gives_the_in_memory_report(
    cohorts: dict[str, Path], cohort: str, flt: str
) -> None:
    d = cohorts[cohort]
    memory = build_report(read_tables(d), FILTERS[flt], AS_OF).to_dict()
    duck = build_report_duckdb(d, FILTERS[flt], AS_OF, threads=2).to_dict()
    assert memory["n_patients"] > 0
    assert _diffs(memory, duck) == []


def test_forked_workers_give_the_same_report(cohorts: dict[str, Path]) -> None:
    d = cohorts["synth-b"]
    one = build_report_duckdb(d, CohortFilter(), AS_OF).to_dict()
    two = build_report_duckdb(d, CohortFilter(), AS_OF, processes=2).to_dict()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_cli_engine_option(cohorts: dict[str, Path], tmp_path: Path) -> None:
    d = cohorts["synth-c"]
    outs = {}
    for engine in ("memory", "duckdb"):
        outs[engine] = tmp_path / f"{engine}.json"
        args = ["report", "--from", str(d), "--out", str(outs[engine]), "--as-of", "2026-11-25"]
        run([*args, "--engine", engine])
    a, b = (json.loads(p.read_text()) for p in outs.values())
    assert _diffs(a, b) == []


def test_cli_duckdb_needs_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["report", "--engine", "duckdb", "--from", str(tmp_path), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert "--engine duckdb reads Parquet" in capsys.readouterr().err


def test_a_work_band_outside_the_list_counts_in_no_group(
    cohorts: dict[str, Path], tmp_path: Path
) -> None:
    """Both engines leave a baseline band they do not know (here "retired") out of every
    group, and neither counts it as a return to work."""
    import pandas as pd

    for name in ("patients", "events"):
        (tmp_path / f"{name}.parquet").write_bytes(
            (cohorts["synth-c"] / f"{name}.parquet").read_bytes()
        )
    tp = pd.read_parquet(cohorts["synth-c"] / "timepoints.parquet")
    band = tp["work_status_band"].astype("string")
    every_third = tp.index % 3 == 0
    tp["work_status_band"] = band.mask(every_third & band.notna(), "retired").astype("category")
    tp.to_parquet(tmp_path / "timepoints.parquet")
    memory = build_report(read_tables(tmp_path), CohortFilter(), AS_OF).to_dict()
    duck = build_report_duckdb(tmp_path, CohortFilter(), AS_OF, threads=2).to_dict()
    before = build_report_duckdb(cohorts["synth-c"], CohortFilter(), AS_OF).to_dict()

    def in_groups(report: dict[str, Any]) -> int:
        population = report["return_to_work"]["population"]
        return sum(
            c["n"] for arm in population.values() for g, c in arm.items() if g != "no_follow_up"
        )

    assert 0 < in_groups(duck) < in_groups(before) == before["n_patients"]
    assert _diffs(memory, duck) == []
