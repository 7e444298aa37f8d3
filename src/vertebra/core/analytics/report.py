"""`build_report`: every analysis of a filtered cohort in one typed, JSON-ready value."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.analytics.benchmark import ClinicBenchmark, clinic_benchmark
from vertebra.core.analytics.cohort import CohortFilter, Panel, build_panel, select_patients
from vertebra.core.analytics.cost import CostResult, cost_summary
from vertebra.core.analytics.descriptive import (
    AdverseEventSummary,
    BaselineSummary,
    adverse_events,
    baseline_table,
)
from vertebra.core.analytics.outcomes import TimepointOutcome, arm_outcomes
from vertebra.core.analytics.propensity import (
    OBSERVATIONAL_CAVEAT,
    PropensityComparison,
    compare_arms,
)
from vertebra.core.analytics.returns import (
    ReturnAnalysis,
    patient_rows,
    return_to_activity,
    return_to_work,
)
from vertebra.core.analytics.schema import AnalysisTables, Exclusion, TimeBase
from vertebra.core.analytics.stats import scipy_stats
from vertebra.core.analytics.survival import (
    Censoring,
    SurvivalResult,
    can_censor_at_cutoff,
    surgery_free_survival,
)
from vertebra.core.disclosure import (
    Withheld,
    is_small,
    suppress_report,
    suppressed,
    withhold_small_groups,
)
from vertebra.core.responders import responder_rules

__all__ = [
    "HONESTY_NOTES",
    "REPORT_VERSION",
    "PerTimepoint",
    "Report",
    "build_report",
    "cell_arms",
    "psfs_mcid",
    "report_from_panel",
]

REPORT_VERSION = "1"
HONESTY_NOTES: tuple[str, ...] = (
    "Every rate is shown with its numerator and denominator.",
    "Responder rates are shown two ways: among completers with a baseline score, and counting "
    "every patient who was due but has no follow-up as a non-responder (denominator = "
    "n_expected). The truth for the whole treated cohort is usually between the two.",
    # Says what cohort.due_by does: a time point still open for answers is not yet missing, so
    # counting it from its due date would understate completeness (issue 18).
    "A time point counts as 'expected' once its answer window has closed on or before the "
    "as-of date (for data without answer windows: once its due date has passed), or as soon "
    "as it is answered.",
    "Comparisons between arms are observational; see the caveat with each comparison.",
)


def cell_arms(patients: pd.DataFrame) -> list[str]:
    """Arms in which most patients have a recorded cell source (= cell-therapy arms)."""
    if "cell_source" not in patients.columns:
        return []
    src = patients["cell_source"]
    has = src.notna().to_numpy()
    if not isinstance(src.dtype, pd.CategoricalDtype):  # "" means no source in CSV exports
        has &= src.astype(str).ne("").to_numpy()
    arm = patients["arm"]
    arm = arm if isinstance(arm.dtype, pd.CategoricalDtype) else arm.astype("category")
    codes = arm.cat.codes.to_numpy()
    k = len(arm.cat.categories)
    n = np.bincount(codes[codes >= 0], minlength=k)
    yes = np.bincount(codes[(codes >= 0) & has], minlength=k)
    return sorted(
        str(a) for a, y, t in zip(arm.cat.categories, yes, n, strict=True) if t and y / t > 0.5
    )


@dataclass(frozen=True)
class Report:
    """The whole outcome report. `to_dict()` is the JSON contract (see docs/algorithms).

    On de-identified tables (`time_base` "days_from_treatment") `as_of` is the data cut-off
    the tables were made at; `to_dict()` then shows no calendar date (``"as_of": null``),
    because the cut-off would anchor the reported days after treatment to calendar dates.
    """

    as_of: date
    filter: CohortFilter
    n_patients: int
    arms: tuple[str, ...]
    baseline: dict[str, BaselineSummary]
    outcomes: dict[str, list[TimepointOutcome]]
    adverse_events: dict[str, AdverseEventSummary]
    survival: SurvivalResult
    comparisons: tuple[PropensityComparison, ...]
    comparison_errors: tuple[str, ...]
    benchmark: ClinicBenchmark | None
    responder_rules: dict[str, dict[str, Any]]
    time_base: TimeBase = "calendar"
    #: Stored rows the tables left out and why (see AnalysisTables.exclusions).
    exclusions: tuple[Exclusion, ...] = ()
    #: Minimum cell size (researchers' reports): set, `to_dict()` suppresses small cells
    #: (vertebra.core.disclosure); `withheld` says which arms (or the cohort) were left out.
    min_cell: int | None = None
    withheld: Withheld | None = None
    #: Cost per patient and per responder per arm (None: the tables carry no cost column).
    cost: CostResult | None = None
    #: Time to return to work / to usual activities (PSFS), KM per arm (analytics/returns.py).
    return_to_work: ReturnAnalysis | None = None
    return_to_activity: ReturnAnalysis | None = None

    @property
    def cohort_suppressed(self) -> bool:
        """True when the filtered cohort was smaller than `min_cell`: no figure is shown."""
        return self.withheld is not None and self.withheld.cohort

    @property
    def as_of_label(self) -> str:
        """The as-of date for people: ISO date, or the words for a de-identified report."""
        if self.time_base == "calendar":
            return self.as_of.isoformat()
        return "the data cut-off (calendar dates withheld: de-identified data)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; per arm: baseline, timepoints, surgery_free, adverse_events.

        With `min_cell`, small cells are suppressed (`vertebra.core.disclosure`) and a
        ``disclosure`` entry says how and why; a suppressed cohort gives no figure at all.
        """
        if self.min_cell is None:
            return self._figures()
        if self.cohort_suppressed:
            out = suppress_report(
                {
                    "report_version": REPORT_VERSION,
                    "as_of": None,
                    "time_base": self.time_base,
                    "filter": self.filter.to_dict(),
                    "honesty_notes": list(HONESTY_NOTES),
                    "arms": {},
                    "survival": {"curves": {}, "logrank": None},
                    "comparisons": [],
                    "comparison_errors": [],
                    "benchmark": None,
                    "return_to_work": None,
                    "return_to_activity": None,
                },
                self.min_cell,
            )
            out["n_patients"] = suppressed()
            out["suppressed"] = True
        else:
            out = suppress_report(self._figures(), self.min_cell)
        out["disclosure"]["withheld"] = self.withheld.to_dict() if self.withheld else None
        return out

    def _figures(self) -> dict[str, Any]:
        """Every figure, unsuppressed (the JSON contract without `min_cell`)."""
        arms: dict[str, Any] = {}
        for arm in self.arms:
            curve = self.survival.curves.get(arm)
            arms[arm] = {
                "n_patients": self.baseline[arm].n,
                "baseline": self.baseline[arm].to_dict(),
                "timepoints": [tp.to_dict() for tp in self.outcomes[arm]],
                "surgery_free": [p.to_dict() for p in curve.landmarks] if curve else [],
                "adverse_events": self.adverse_events[arm].to_dict(),
            }
            if self.cost is not None and arm in self.cost.arms:
                arms[arm]["cost"] = self.cost.arms[arm].to_dict()
        return {
            "report_version": REPORT_VERSION,
            "as_of": self.as_of.isoformat() if self.time_base == "calendar" else None,
            "time_base": self.time_base,
            "filter": self.filter.to_dict(),
            "n_patients": self.n_patients,
            "honesty_notes": list(HONESTY_NOTES),
            "exclusions": [e.to_dict() for e in self.exclusions],
            "responder_rules": self.responder_rules,
            "arms": arms,
            "survival": self.survival.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "comparison_errors": list(self.comparison_errors),
            "observational_caveat": OBSERVATIONAL_CAVEAT,
            "benchmark": self.benchmark.to_dict() if self.benchmark else None,
            "cost_method": self.cost.method() if self.cost is not None else None,
            "return_to_work": (
                self.return_to_work.to_dict(self.min_cell) if self.return_to_work else None
            ),
            "return_to_activity": (
                self.return_to_activity.to_dict(self.min_cell) if self.return_to_activity else None
            ),
        }


_Job = tuple[Any, Sequence[str], str]
_FORK_STATE: dict[str, Any] = {}


_BENCHMARK_JOB = "\x00clinic-benchmark"
_COST_JOB = "\x00cost"


def _one_comparison(comp: str) -> Any:
    """One propensity comparison on the panel set up by `_comparison_pool` (or its error).

    The jobs named `_BENCHMARK_JOB` and `_COST_JOB` compute the clinic benchmark and the cost
    per arm (vertebra.core.analytics.cost) instead, so that they too run beside the work of the
    parent process.
    """
    panel, treated, timepoint = _FORK_STATE["job"]
    if comp == _BENCHMARK_JOB:
        return clinic_benchmark(panel, timepoint=timepoint)
    if comp == _COST_JOB:  # the cost bootstrap, beside the parent's work (docs: cost.md)
        return cost_summary(panel, timepoint=timepoint)
    try:
        return compare_arms(panel, treated, [comp], timepoint=timepoint)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return f"{'+'.join(treated)} vs {comp}: {exc}"


@contextmanager
def _comparison_pool(
    panel: Any, treated: Sequence[str], timepoint: str, n_jobs: int, processes: int
) -> Iterator[Callable[[Sequence[str]], Callable[[], list[Any]]]]:
    """Run comparisons in forked processes when there are several and fork exists.

    Yields ``run(jobs)``, which starts them and returns a function that waits for the results
    in order. With ``processes`` <= 1, or no fork, they run in this process when waited for.
    """
    _FORK_STATE["job"] = (panel, treated, timepoint)
    use_fork = processes > 1 and n_jobs > 1 and "fork" in mp.get_all_start_methods()
    try:
        if not use_fork:
            yield lambda comps: lambda: [_one_comparison(c) for c in comps]
            return
        # As many workers as processes: the parent's own share (outcomes, returns, survival)
        # is about half the workers' (comparisons, benchmark, cost), so once it is done the
        # workers have every core (issue 17 profile: ~25 % less wall time at 10^6 on 2 cores).
        workers = min(n_jobs, processes)
        # Every job computes intervals with scipy.stats, and so does this process: importing
        # it once here, before the fork, spares each worker its own ~1.4 s import.
        scipy_stats()
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:

            def run(comps: Sequence[str]) -> Callable[[], list[Any]]:
                futures = [pool.submit(_one_comparison, c) for c in comps]
                return lambda: [f.result() for f in futures]

            yield run
    finally:
        _FORK_STATE.pop("job", None)


def build_report(
    tables: AnalysisTables,
    flt: CohortFilter | None = None,
    as_of: date | None = None,
    *,
    treated_arms: Sequence[str] | None = None,
    comparator_arms: Sequence[str] | None = None,
    comparison_timepoint: str = "month_12",
    censoring: Censoring | None = None,
    processes: int = 1,
    min_cell: int | None = None,
) -> Report:
    """Run every analysis on the cohort selected by `flt` as of `as_of`.

    `as_of` is required in practice (time is a parameter of the pure core; the CLI passes
    today's date by default); None raises ValueError. Comparisons: `treated_arms` (default:
    the cell-therapy arms, see `cell_arms`) against each comparator arm separately (default:
    every other arm in the cohort), one propensity analysis per comparator. A comparison that
    cannot be made (e.g. no overlap) is reported in `comparison_errors`, not raised.

    `processes` > 1 runs the comparisons and the clinic benchmark in forked worker processes
    (at most `processes`) beside the other analyses: same results, less wall time on a
    large cohort. Use it from single-threaded programs (the CLI, benchmarks), not inside a
    threaded web server, where forking is unsafe.

    `censoring` of surgery-free survival: None (default) censors at `as_of` when the tables
    allow it and otherwise (a released de-identified table without ``followup_days``) at the
    last contact; the report states which. De-identified tables carry their own data cut-off
    (``expected``, ``followup_days``), so there `as_of` only names it.
    """
    if as_of is None:
        raise ValueError("as_of is required: the date up to which follow-up is due")
    flt = flt or CohortFilter()
    withheld = None
    if min_cell is not None:
        # Groups are counted among the patients this filter selects (what the report covers).
        picked = tables.patients.loc[select_patients(tables.patients, flt)]
        tables = tables.of(
            picked.reset_index(drop=True),
            tables.timepoints,
            tables.events,
            exclusions=tables.exclusions,  # what the reader left out still needs saying
        )
        tables, withheld = withhold_small_groups(tables, min_cell)
        if withheld.cohort:
            return _withheld_report(tables, flt, as_of, min_cell, withheld)
    if censoring is None:
        censoring = "as_of" if can_censor_at_cutoff(tables.patients) else "last_contact"
    panel = build_panel(tables, flt, as_of, with_contact=censoring == "last_contact")

    def per_timepoint(panel: Panel) -> PerTimepoint:
        """Outcomes and returns from the whole panel and the long time-point table."""
        rows = patient_rows(panel.patients, tables.timepoints)  # shared by both analyses
        rtw = return_to_work(panel.patients, tables.timepoints, panel.arms, rows)
        rta = return_to_activity(panel.patients, tables.timepoints, panel.arms, psfs_mcid(), rows)
        return arm_outcomes(panel), rtw, rta

    return report_from_panel(
        panel,
        tables.events,
        as_of,
        flt,
        per_timepoint,
        time_base=tables.time_base,
        exclusions=tables.exclusions,
        censoring=censoring,
        treated_arms=treated_arms,
        comparator_arms=comparator_arms,
        comparison_timepoint=comparison_timepoint,
        processes=processes,
        min_cell=min_cell,
        withheld=withheld,
    )


#: What an engine computes from every time point: outcomes per arm and time point, and the
#: return-to-work and return-to-activity analyses.
PerTimepoint = tuple[dict[str, list[TimepointOutcome]], ReturnAnalysis, ReturnAnalysis]


def report_from_panel(
    panel: Panel,
    events: pd.DataFrame,
    as_of: date,
    flt: CohortFilter,
    per_timepoint: Callable[[Panel], PerTimepoint],
    *,
    time_base: TimeBase,
    exclusions: tuple[Exclusion, ...] = (),
    censoring: Censoring = "as_of",
    treated_arms: Sequence[str] | None = None,
    comparator_arms: Sequence[str] | None = None,
    comparison_timepoint: str = "month_12",
    processes: int = 1,
    min_cell: int | None = None,
    withheld: Withheld | None = None,
) -> Report:
    """The report from a built panel: the part of `build_report` both engines share.

    `panel` needs at least the baseline and `comparison_timepoint` columns (the comparisons,
    the clinic benchmark, cost, baseline table, adverse events and survival use no other);
    `per_timepoint(panel)` computes what needs every time point (see `PerTimepoint`): the
    in-memory engine from the full panel, the out-of-core engine (vertebra.analysis) with
    DuckDB over the Parquet files. It runs in this process while forked workers (with
    `processes` > 1) run the comparisons, the clinic benchmark and cost.
    """
    present = set(panel.arms)
    treated = [a for a in (treated_arms or cell_arms(panel.patients)) if a in present]
    comparators = [
        a for a in (comparator_arms or [a for a in panel.arms if a not in treated]) if a in present
    ]
    errors: list[str] = []
    if not treated:
        errors.append("no cell-therapy arm in the cohort: no adjusted comparison")
    compare = bool(treated) and comparison_timepoint in panel.tp_ids

    # The comparisons dominate the run time and hold the GIL much of the time, so they run in
    # forked worker processes (which inherit the panel without copying it); the other analyses
    # run meanwhile in this process. Every analysis is deterministic and independent, so the
    # results are the same as in sequence (tests/core/test_analytics_report.py checks it).
    jobs = list(comparators) if compare else []
    if comparison_timepoint in panel.tp_ids and panel.n > 0:
        jobs.append(_BENCHMARK_JOB)
    if "cost_price" in panel.patients.columns:
        jobs.append(_COST_JOB)
    bench: ClinicBenchmark | None = None
    comparisons: list[PropensityComparison] = []
    with _comparison_pool(panel, treated, comparison_timepoint, len(jobs), processes) as run:
        pending = run(jobs)
        outcomes, rtw, rta = per_timepoint(panel)
        survival = surgery_free_survival(panel, events, as_of, censoring=censoring)
        baseline = baseline_table(panel)
        aes = adverse_events(panel, events, as_of)
        cost: CostResult | None = None
        for result in pending():
            if isinstance(result, ClinicBenchmark):
                bench = result
            elif isinstance(result, CostResult):
                cost = result
            elif isinstance(result, str):
                errors.append(result)
            else:
                comparisons.append(result)

    rules = {
        k: {
            "points": r.points,
            "percent": r.percent,
            "substantial_percent": r.substantial_percent,
            "source": r.source,
            "verified": r.verified,
        }
        for k, r in responder_rules().items()
    }
    if min_cell is not None:  # a curve's steps would show a handful of surgeries one by one
        curves = {a: c for a, c in survival.curves.items() if not is_small(c.events, min_cell)}
        survival = replace(survival, curves=curves)
        rtw, rta = (_drop_small_curves(r, min_cell) for r in (rtw, rta))
    return Report(
        min_cell=min_cell,
        withheld=withheld,
        as_of=as_of,
        filter=flt,
        n_patients=panel.n,
        arms=tuple(panel.arms),
        baseline=baseline,
        outcomes=outcomes,
        adverse_events=aes,
        survival=survival,
        comparisons=tuple(comparisons),
        comparison_errors=tuple(errors),
        benchmark=bench,
        responder_rules=rules,
        time_base=time_base,
        exclusions=exclusions,
        cost=cost,
        return_to_work=rtw,
        return_to_activity=rta,
    )


def psfs_mcid() -> float:
    """The PSFS MCID (points of the mean score) from the instrument definition (data)."""
    from vertebra.core.instruments import get_definition

    return float(get_definition("psfs").scoring.params["mcid_points"])


def _drop_small_curves(analysis: ReturnAnalysis, min_cell: int) -> ReturnAnalysis:
    """`analysis` without the curves whose returns are too few to show (small cells)."""
    curves = {a: c for a, c in analysis.curves.items() if not is_small(c.events, min_cell)}
    return replace(analysis, curves=curves)


def _withheld_report(
    tables: AnalysisTables, flt: CohortFilter, as_of: date, min_cell: int, withheld: Withheld
) -> Report:
    """The report of a cohort smaller than `min_cell`: no figure, only the fact."""
    return Report(
        as_of=as_of,
        filter=flt,
        n_patients=0,
        arms=(),
        baseline={},
        outcomes={},
        adverse_events={},
        survival=SurvivalResult(censoring="as_of", curves={}, logrank=None),
        comparisons=(),
        comparison_errors=(),
        benchmark=None,
        responder_rules={},
        time_base=tables.time_base,
        exclusions=tables.exclusions,
        min_cell=min_cell,
        withheld=withheld,
    )
