"""The outcome report out of core: DuckDB over the Parquet tables (ADR 0024).

The in-memory engine (`vertebra.core.analytics.build_report`) pivots every time point of every
patient into dense grids: at 10^7 patients that is 6 x 10^7 rows and ~15 GB of grids. This
engine keeps the long time-point table on disk:

* DuckDB aggregates it to per (arm, time point) counts, sums, SDs and medians (completeness,
  scores, change from baseline, responders, opioids: `vertebra.core.analytics.outcomes`
  assembles them, `MeasureCells`) and to per (arm, group) and per (arm, months, returned)
  counts for return to work / activity (`returns_from_counts`, KM from counts).
* What needs per-patient covariates (propensity comparisons, clinic benchmark, cost, baseline
  table, adverse events, surgery-free survival) runs in the pure core on a *narrow* panel: the
  patients table (read with the in-memory engine's own reader and filter, so rows, order and
  dtypes are the same) and only the baseline and comparison time points' scores, which DuckDB
  pivots. Events are read whole (a few per cent of the rows).

Same numbers as the in-memory engine: every count, rate and Wilson interval is identical; means,
SDs, medians and t intervals of the outcome table are summed in another order and agree to
~1e-12 relative (tests/analysis/test_duckdb_report.py states the tolerance). Scope: calendar-
dated tables (what ``vertebra synth`` and ``vertebra export`` write), no small-cell suppression
(`min_cell`: use the in-memory engine, which needs the rows anyway to withhold groups).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.analytics.cohort import CohortFilter, Panel, select_patients, str_categorical
from vertebra.core.analytics.outcomes import (
    MeasureCells,
    MeasureSummary,
    OpioidSummary,
    assemble_outcomes,
    measure_summaries,
    opioid_summaries,
)
from vertebra.core.analytics.report import PerTimepoint, Report, psfs_mcid, report_from_panel
from vertebra.core.analytics.returns import WORK_BANDS, ReturnAnalysis, returns_from_counts
from vertebra.core.analytics.schema import (
    ALIASES,
    EVENTS_REQUIRED,
    MEASURES,
    PATIENTS_REQUIRED,
    TIMEPOINTS_REQUIRED,
    SchemaError,
    read_parquet_table,
    time_base,
)
from vertebra.core.instruments import get_definition
from vertebra.core.responders import NoResponderRuleError, responder_rule

__all__ = ["DEFAULT_MEMORY_LIMIT", "build_report_duckdb"]

#: DuckDB's own memory limit (it spills to disk above it); the narrow panel and the forked
#: comparison workers come on top. 10^7 patients stay under 4 GB peak with it (BENCHMARKS.md).
DEFAULT_MEMORY_LIMIT = "1500MB"
_EPS = 1e-9  # as vertebra.core.analytics.outcomes._EPS


def _lit(x: float) -> str:
    """A float as an exact DuckDB DOUBLE literal (a bare 9.999999999 would be a DECIMAL)."""
    return f"'{float(x)!r}'::DOUBLE"


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dataclass(frozen=True)
class _Files:
    """The three Parquet files and the time-point columns they hold (contract names)."""

    patients: Path
    timepoints: Path
    events: Path | None
    tp_column: dict[str, str]  # contract name -> column name in timepoints.parquet


def _files(directory: Path) -> _Files:
    """Locate the Parquet files and map the time-point columns (aliases as `read_tables`)."""
    import pyarrow.parquet as papq  # type: ignore[import-untyped]

    pq = {n: directory / f"{n}.parquet" for n in ("patients", "timepoints", "events")}
    for name in ("patients", "timepoints"):
        if not pq[name].exists():
            raise SchemaError(f"{directory}: no {name}.parquet (the DuckDB engine reads Parquet)")
    names = set(papq.ParquetFile(pq["timepoints"]).schema_arrow.names)
    column = {n: n for n in names}
    for alias, contract in ALIASES["timepoints"].items():
        if alias in names and contract not in names:
            column[contract] = alias
    missing = [c for c in TIMEPOINTS_REQUIRED if c not in column and c != "completed"]
    if "completed" not in column and "status" not in column:
        missing.append("completed")
    if missing:
        raise SchemaError(f"timepoints: missing column(s) {', '.join(missing)}")
    return _Files(
        pq["patients"], pq["timepoints"], pq["events"] if pq["events"].exists() else None, column
    )


def _connect(threads: int | None, memory_limit: str, spill: str) -> Any:
    """A DuckDB in-memory database that spills to `spill` (not DuckDB's default ``.tmp`` in
    the working directory)."""
    import duckdb

    config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": spill}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    con.execute("SET enable_progress_bar = false")  # it would draw on stdout
    return con


def _row_view(con: Any, files: _Files, cohort: Any, tp_ids: list[str], as_of: date) -> None:
    """View ``x``: one row per time-point row of a cohort patient, in contract terms.

    a = arm code, r = patient row in the cohort, ti = time point index (months order), done =
    completed, exp = expected (answer window closed by as_of, else due date passed; or
    answered: as `vertebra.core.analytics.cohort.due_by`), scores NULL unless completed.
    """
    col = files.tp_column
    con.register("cohort", cohort)
    con.register(
        "tpi", pd.DataFrame({"timepoint": tp_ids, "ti": np.arange(len(tp_ids), dtype=np.int32)})
    )
    if "completed" in col:
        done = f'coalesce(t."{col["completed"]}", false)'
    else:
        done = f"coalesce(t.\"{col['status']}\"::VARCHAR = 'completed', false)"
    due_col = col.get("window_closes", col["due_date"])
    due = f"coalesce(t.\"{due_col}\" <= DATE '{as_of.isoformat()}', false)"
    values = [
        f'case when {done} then t."{col[c]}"::DOUBLE end as "{c}"'
        for c in (*MEASURES, "opioid_use", "mme", "psfs")
        if c in col
    ]
    if "work_status_band" in col:
        values.append(f'case when {done} then t."{col["work_status_band"]}"::VARCHAR end as band')
    elif "work_status" in col:
        groups = get_definition("work_status").scoring.params["groups"]
        whens = " ".join(
            f"when {float(code)!r} then '{band}'"
            for band, codes in groups.items()
            for code in codes
        )
        values.append(
            f'case when {done} then (case t."{col["work_status"]}"::DOUBLE {whens} end) end as band'
        )
    con.execute(
        f"""create or replace temp view x as
        select c.a, c.r, tpi.ti, t."{col["months"]}"::DOUBLE as months,
               t.file_row_number as fr, {done} as done, ({due} or {done}) as exp,
               {", ".join(values)}
        from read_parquet({_quote(files.timepoints)}, file_row_number = true) t
        join cohort c on c.patient_id = t.patient_id
        join tpi on tpi.timepoint = t."{col["timepoint"]}"::VARCHAR"""
    )


def _stage_rows(con: Any, spill: str) -> None:
    """Copy view ``x`` into a table of a database file in `spill` and point ``x`` at it.

    The outcomes and the two return analyses scan ``x`` about ten times; each scan of the
    view decodes the time-point file and joins it to the cohort again. Once staged, a scan
    reads DuckDB's own columns: at 10^7 patients a median took 1.0 s instead of 3.0 s, the
    changes from baseline 1.9 s instead of 5.9 s, for a copy of ~20 s (BENCHMARKS.md)."""
    con.execute(f"attach {_quote(Path(spill) / 'rows.duckdb')} as staged")
    con.execute("create table staged.x as select * from x")
    con.execute("create or replace temp view x as select * from staged.x")


def _responder_sql(measure: str, fu: str, base: str) -> tuple[str | None, str | None]:
    """SQL of `vertebra.core.analytics.outcomes.responder_flags` (same float operations, so
    the same patients): (mcid, substantial) conditions, None where the instrument has none."""
    inst = MEASURES[measure]
    try:
        rule = responder_rule(inst)
    except NoResponderRuleError:
        return None, None
    higher = get_definition(inst).direction == "higher_is_better"
    imp = f"({fu} - {base})" if higher else f"(-({fu} - {base}))"
    pct = f"(case when {base} <> 0 then {imp} / abs({base}) * {_lit(100.0)} end)"
    mcid = f"({imp} >= {_lit(rule.points - _EPS)}"
    if rule.percent is not None:
        mcid += f" or {pct} >= {_lit(rule.percent - _EPS)}"
    mcid += ")"
    subst = None
    if rule.substantial_percent is not None:
        subst = f"({pct} >= {_lit(rule.substantial_percent - _EPS)})"
    return mcid, subst


def _outcomes(
    con: Any, arms: list[str], tp_ids: list[str], tp_months: npt.NDArray[Any], cols: set[str]
) -> dict[str, list[Any]]:
    """Per (arm, time point) aggregates -> `arm_outcomes`' result."""
    measures = [m for m in MEASURES if m in cols]
    has_opioid, has_mme = "opioid_use" in cols, "mme" in cols and "opioid_use" in cols
    paired = [*measures, *(["mme"] if has_mme else [])]
    # One projection computes each change and responder flag once per row (the FILTER
    # clauses it replaces were evaluated per aggregate); the aggregates then only sum.
    proj = ["a", "ti", "exp::INT as e", "done::INT as c"]
    sel = ["a", "ti", "sum(e) as n_exp", "sum(c) as n_done"]
    for m in measures:
        proj += [f'"{m}"', f'case when ti > 0 then "{m}" - b."{m}0" end as "{m}_d"']
        sel += [
            f'count("{m}") as "{m}_n"',
            f'avg("{m}") as "{m}_mean"',
            f'stddev_samp("{m}") as "{m}_sd"',
            f'count("{m}_d") as "{m}_pn"',
            f'avg("{m}_d") as "{m}_pm"',
            f'stddev_samp("{m}_d") as "{m}_psd"',
        ]
        mcid, subst = _responder_sql(m, f'"{m}"', f'b."{m}0"')
        if mcid:
            proj.append(f'coalesce(ti > 0 and {mcid}, false)::INT as "{m}_r"')
            sel.append(f'sum("{m}_r") as "{m}_mcid"')
        if subst:
            proj.append(f'coalesce(ti > 0 and {subst}, false)::INT as "{m}_s"')
            sel.append(f'sum("{m}_s") as "{m}_subst"')
    if has_opioid:
        proj.append('"opioid_use"')
        sel += ['count("opioid_use") as op_n', 'sum("opioid_use") as op_sum']
    if has_mme:
        proj += ['"mme"', 'case when ti > 0 then "mme" - b."mme0" end as mme_d']
        sel += [
            'count("mme") as mme_n',
            'avg("mme") as mme_mean',
            'stddev_samp("mme") as mme_sd',
            "count(mme_d) as mme_pn",
            "avg(mme_d) as mme_pm",
            "stddev_samp(mme_d) as mme_psd",
        ]
    base_cols = ", ".join(f'"{m}" as "{m}0"' for m in paired) or "1 as none0"
    frame = con.execute(
        f"""with b as (select r, {base_cols} from x where ti = 0),
        y as (select {", ".join(proj)} from x left join b using (r))
        select {", ".join(sel)} from y group by a, ti"""
    ).fetch_df()
    # A median keeps every value of its group in memory (a holistic aggregate: DuckDB cannot
    # spill it), so all measures' medians in the query above held 10^7 patients' scores at
    # once and ran out of the memory limit. One measure at a time, from the rows alone.
    for m in measures:
        medians = con.execute(
            f'select a, ti, median("{m}") as "{m}_median" from x group by a, ti'
        ).fetch_df()
        frame = frame.merge(medians, on=["a", "ti"], how="left")
    t_count = len(tp_ids)
    gt = len(arms) * t_count
    j = frame["a"].to_numpy(dtype=np.int64) * t_count + frame["ti"].to_numpy(dtype=np.int64)

    def cells(name: str, fill: float = 0.0) -> npt.NDArray[np.float64]:
        out = np.full(gt, fill)
        out[j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    exp, comp = cells("n_exp"), cells("n_done")
    summaries: dict[str, list[MeasureSummary]] = {}
    for m in measures:
        mc = MeasureCells(
            n=cells(f"{m}_n"),
            mean=cells(f"{m}_mean", np.nan),
            sd=cells(f"{m}_sd", np.nan),
            median=cells(f"{m}_median", np.nan),
            pair_n=cells(f"{m}_pn"),
            pair_mean=cells(f"{m}_pm", np.nan),
            pair_sd=cells(f"{m}_psd", np.nan),
            mcid=cells(f"{m}_mcid") if f"{m}_mcid" in frame else None,
            substantial=cells(f"{m}_subst") if f"{m}_subst" in frame else None,
        )
        summaries[m] = measure_summaries(m, mc, exp, t_count)
    opioids: list[OpioidSummary] | None = None
    if has_opioid:
        mme = (cells("mme_n"), cells("mme_mean", np.nan), cells("mme_sd", np.nan))
        change = (cells("mme_pn"), cells("mme_pm", np.nan), cells("mme_psd", np.nan))
        opioids = opioid_summaries(
            cells("op_sum"),
            cells("op_n"),
            mme if has_mme else None,
            change if has_mme else None,
            t_count,
        )
    return assemble_outcomes(arms, tp_ids, tp_months, exp, comp, summaries, opioids)


def _spill_file(spill: str, name: str) -> str:
    """A quoted path for an intermediate Parquet file in the spill folder."""
    return _quote(Path(spill) / f"{name}.parquet")


def _returns(
    con: Any, analysis: str, arms: list[str], cols: set[str], mcid: float, spill: str
) -> ReturnAnalysis:
    """Return to work / activity from per-patient first returns, aggregated to counts
    (intermediate files in `spill`)."""
    work = analysis == "return_to_work"
    if (work and "band" not in cols) or (not work and "psfs" not in cols):
        return returns_from_counts(analysis, mcid, arms, {}, [], [], [], [], available=False)
    groups = (
        (*WORK_BANDS, "no_baseline_answer")
        if work
        else ("room_to_improve", "near_ceiling", "no_baseline_answer")
    )
    # Integer codes and the patient's row number `r`, never strings, in the per-patient
    # aggregates: DuckDB spills fixed-size aggregate states, but a VARCHAR state (the
    # baseline work band) kept 10^7 patients' strings in memory and ran out of the limit.
    if work:
        value = (
            "(case band "
            + " ".join(f"when '{b}' then {i}" for i, b in enumerate(WORK_BANDS))
            + f" else {len(groups)} end)"
        )
        real = ""
        hit = f"v = {WORK_BANDS.index('working')}"
        group = f"coalesce(b0, {groups.index('no_baseline_answer')})"
    else:
        value, real = '"psfs"', ' and not isnan("psfs")'
        hit = f"v >= b0 + {_lit(mcid)} - {_lit(1e-9)}"
        group = (
            f"case when b0 is null then {groups.index('no_baseline_answer')} "
            f"when b0 <= {_lit(10.0 - mcid + 1e-9)} then {groups.index('room_to_improve')} "
            f"else {groups.index('near_ceiling')} end"
        )
    eligible = groups.index("off_work_back_pain" if work else "room_to_improve")
    column = "band" if work else '"psfs"'
    # In steps, each written to a Parquet file in the spill folder, so that no step holds
    # more than one per-patient hash table: as one query (the answers joined to the cohort,
    # the baselines and the first returns at once) 10^7 patients ran out of the memory limit.
    # The baseline answer is the earliest by (months, row): arg_min keeps one value per
    # patient, where first(... order by ...) kept every row of each group until the end.
    ans, base, follow = (_spill_file(spill, f"{analysis}_{step}") for step in ("ans", "b", "f"))
    con.execute(
        f"""copy (select r, months, fr, {value} as v from x
                  where done and {column} is not null{real}) to {ans} (format parquet)"""
    )
    con.execute(
        f"""copy (select r, arg_min(v, {{'m': months, 'f': fr}}) as b0
                  from read_parquet({ans}) where months <= 0 group by r)
            to {base} (format parquet)"""
    )
    con.execute(
        f"""copy (select r, max(months) as last, min(months) filter (where {hit}) as hit
                  from read_parquet({ans}) a left join read_parquet({base}) b using (r)
                  where months > 0 and not isnan(months) group by r)
            to {follow} (format parquet)"""
    )
    # A table, not a view: the population and the curve counts read it twice.
    con.execute(
        f"""create or replace temp table pr as
        select c.a, {group} as grp, f.last, f.hit
        from cohort c left join read_parquet({base}) b using (r)
             left join read_parquet({follow}) f using (r)"""
    )
    pop = con.execute(
        f"""select a, grp, count(*) as n,
                   count(*) filter (where grp = {eligible} and last is null) as nofu
            from pr group by a, grp"""
    ).fetchall()
    population = {a: {g: 0 for g in groups} | {"no_follow_up": 0} for a in arms}
    for a, grp, n, nofu in pop:
        row = population[arms[int(a)]]
        if int(grp) < len(groups):  # a band outside WORK_BANDS counts in no group
            row[groups[int(grp)]] += int(n)
        row["no_follow_up"] += int(nofu)
    curve = con.execute(
        f"""select a, coalesce(hit, last) as m, hit is not null as ret, count(*) as w
            from pr where grp = {eligible} and last is not null
            group by all order by a, m, ret"""
    ).fetch_df()
    return returns_from_counts(
        analysis,
        mcid,
        arms,
        population,
        [arms[int(a)] for a in curve["a"]],
        curve["m"].to_numpy(dtype=np.float64),
        curve["ret"].to_numpy(dtype=bool),
        curve["w"].to_numpy(dtype=np.int64),
    )


def _timepoints(con: Any, files: _Files) -> tuple[list[str], npt.NDArray[np.float64]]:
    """Time points ordered by months (as `build_panel`: every row of the table counts)."""
    col = files.tp_column
    rows = con.execute(
        f"""select "{col["timepoint"]}"::VARCHAR as tp, min("{col["months"]}")::DOUBLE as m
        from read_parquet({_quote(files.timepoints)}) group by 1 order by 2, 1"""
    ).fetchall()
    tp_ids = [str(r[0]) for r in rows]
    months = np.array([float(r[1]) for r in rows], dtype=np.float64)
    if not tp_ids or months[0] != 0:
        raise SchemaError("timepoints: no baseline row (a time point with months = 0)")
    return tp_ids, months


def _narrow_panel(
    con: Any,
    pts: pd.DataFrame,
    arms: list[str],
    arm_codes: npt.NDArray[np.int64],
    tp_ids: list[str],
    tp_months: npt.NDArray[np.float64],
    keep_tps: list[int],
    cols: set[str],
) -> Panel:
    """The panel of `pts` with only the time points `keep_tps` (indices into tp_ids): what
    `vertebra.core.analytics.cohort.build_panel` gives for those columns, cell for cell."""
    n, k = len(pts), len(keep_tps)
    scores = [m for m in ("odi", "nrs_back", "nrs_leg") if m in cols]
    completed = np.zeros((n, k), dtype=bool)
    expected = np.zeros((n, k), dtype=bool)
    values: dict[str, npt.NDArray[np.float64]] = {m: np.full((n, k), np.nan) for m in scores}
    q = ", ".join(f'"{m}"' for m in scores)
    wanted = ", ".join(str(int(t)) for t in keep_tps)
    # One scan for all kept time points, fetched in record batches (a whole Arrow result
    # would be ~0.8 GB at 10^7 patients); rows land by (patient row, column).
    col_of = np.zeros(max(keep_tps) + 1, dtype=np.int64)
    col_of[keep_tps] = np.arange(k)
    reader = con.sql(f"select r, ti, done, exp, {q} from x where ti in ({wanted})").to_arrow_reader(
        1_000_000
    )
    for batch in reader:
        r = batch.column("r").to_numpy()
        c = col_of[batch.column("ti").to_numpy()]
        completed[r, c] = batch.column("done").to_numpy(zero_copy_only=False)
        expected[r, c] = batch.column("exp").to_numpy(zero_copy_only=False)
        for m in scores:
            values[m][r, c] = batch.column(m).to_numpy(zero_copy_only=False)
    for grid in values.values():
        grid.flags.writeable = False
    return Panel(
        patients=pts,
        arms=arms,
        arm_codes=arm_codes,
        tp_ids=[tp_ids[i] for i in keep_tps],
        tp_months=tp_months[keep_tps],
        expected=expected,
        completed=completed,
        values=values,
    )


def build_report_duckdb(
    directory: str | Path,
    flt: CohortFilter | None = None,
    as_of: date | None = None,
    *,
    treated_arms: Sequence[str] | None = None,
    comparator_arms: Sequence[str] | None = None,
    comparison_timepoint: str = "month_12",
    processes: int = 1,
    threads: int | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> Report:
    """`vertebra.core.analytics.build_report` over the Parquet tables in `directory`, out of
    core (module docstring): same arguments and same report, for cohorts too large to pivot
    in memory. `threads`/`memory_limit` are DuckDB's (None: one thread per core).
    Raises SchemaError for tables it cannot read (CSV, de-identified time base)."""
    if as_of is None:
        raise ValueError("as_of is required: the date up to which follow-up is due")
    import pyarrow as pa

    flt = flt or CohortFilter()
    files = _files(Path(directory))
    patients = read_parquet_table(files.patients, "patients")
    if time_base(patients) != "calendar":
        raise SchemaError(
            "the DuckDB engine reads calendar-dated tables; use the in-memory engine for "
            "de-identified (days_from_treatment) tables"
        )
    missing = [c for c in PATIENTS_REQUIRED if c not in patients.columns]
    if missing:
        raise SchemaError(f"patients: missing column(s) {', '.join(missing)}")
    if patients["patient_id"].duplicated().any():
        raise SchemaError("patients: a patient_id appears more than once")
    if files.events is not None:
        events = read_parquet_table(files.events, "events")
    else:
        events = pd.DataFrame({c: pd.Series(dtype="object") for c in EVENTS_REQUIRED})
    keep = select_patients(patients, flt)
    pts = patients if keep.all() else patients.loc[keep].reset_index(drop=True)
    del patients
    if len(pts) == 0:
        raise ValueError("no patients match the filter")
    arm_codes = np.asarray(str_categorical(pts["arm"]).codes, dtype=np.int64)
    cohort = pa.table(
        {
            "patient_id": pts["patient_id"].to_numpy(),
            "a": arm_codes.astype(np.int16),
            "r": np.arange(len(pts), dtype=np.int64),
        }
    )
    cols = {c for c in files.tp_column if c in (*MEASURES, "opioid_use", "mme", "psfs")}
    if "work_status_band" in files.tp_column or "work_status" in files.tp_column:
        cols.add("band")

    with tempfile.TemporaryDirectory(prefix="vertebra-duckdb-") as spill:
        return _report(
            files,
            pts,
            events,
            cohort,
            cols,
            flt,
            as_of,
            spill,
            threads,
            memory_limit,
            treated_arms,
            comparator_arms,
            comparison_timepoint,
            processes,
        )


def _report(
    files: _Files,
    pts: pd.DataFrame,
    events: pd.DataFrame,
    cohort: Any,
    cols: set[str],
    flt: CohortFilter,
    as_of: date,
    spill: str,
    threads: int | None,
    memory_limit: str,
    treated_arms: Sequence[str] | None,
    comparator_arms: Sequence[str] | None,
    comparison_timepoint: str,
    processes: int,
) -> Report:
    """`build_report_duckdb` once the patients are read (DuckDB spills into `spill`)."""
    arm_cat = str_categorical(pts["arm"])
    arms = [str(a) for a in arm_cat.categories]
    arm_codes = np.asarray(arm_cat.codes, dtype=np.int64)
    con = _connect(threads, memory_limit, spill)
    tp_ids, tp_months = _timepoints(con, files)
    _row_view(con, files, cohort, tp_ids, as_of)
    keep_tps = [0] + (
        [tp_ids.index(comparison_timepoint)] if comparison_timepoint in tp_ids[1:] else []
    )
    panel = _narrow_panel(con, pts, arms, arm_codes, tp_ids, tp_months, keep_tps, cols)
    con.close()  # no DuckDB threads alive while the comparison workers are forked

    def per_timepoint(_: Panel) -> PerTimepoint:
        con = _connect(threads, memory_limit, spill)
        try:
            _row_view(con, files, cohort, tp_ids, as_of)
            _stage_rows(con, spill)
            outcomes = _outcomes(con, arms, tp_ids, tp_months, cols)
            mcid = psfs_mcid()
            rtw = _returns(con, "return_to_work", arms, cols, mcid, spill)
            rta = _returns(con, "return_to_activity", arms, cols, mcid, spill)
        finally:
            con.close()
        return outcomes, rtw, rta

    return report_from_panel(
        panel,
        events,
        as_of,
        flt,
        per_timepoint,
        time_base="calendar",
        censoring="as_of",
        treated_arms=treated_arms,
        comparator_arms=comparator_arms,
        comparison_timepoint=comparison_timepoint,
        processes=processes,
    )
