"""Benchmark: the full analytics report (no PDF), in memory and out of core, beside DuckDB.

Usage:  python bench/bench_analytics.py [--sizes 100000 1000000] [--data-dir DIR] [--repeat 3]
        python bench/bench_analytics.py --sizes 1000000 --save-json OUT.json  (keep the report)
        python bench/bench_analytics.py --sizes 10000000 --data-dir /tmp/analytics-10m \
            --memory-max 2000000        (10^7: out of core only; write the cohort first with
            `vertebra synth -n 10000000 -s 42 --today 2026-11-25 -f parquet -o DIR/cohort-10000000`)

Two engines: "in memory" (`vertebra.core.analytics.build_report` on `read_tables`, skipped
above --memory-max patients: it needs ~1.5 GB per 10^6) and "out of core"
(`vertebra.analysis.duckdb_report.build_report_duckdb`, DuckDB over the Parquet files,
ADR 0024). The out-of-core report's 12-month ODI counts are checked against the floor's.

For each size it writes the cohort once as Parquet (vertebra.core.synth if importable, else
the analytics toy generator), then in a FRESH subprocess per run: read the Parquet tables
(`read_tables`), `build_report`, `to_dict` + JSON, and report wall time per stage and peak RSS
(ru_maxrss of that process, i.e. including imports and data). Each child runs under
`/usr/bin/time -v` (when present), which also gives its CPU time (user + sys): on this shared
machine CPU time is the steadier figure, wall time depends on what else is running. Side by side, DuckDB computes
the same per-arm 12-month ODI responder rates (completers and missing-as-non-response)
straight from the Parquet files: the reference floor.

BLAS is pinned to one thread (OPENBLAS_NUM_THREADS=1): on this shared 2-core machine
multithreaded OpenBLAS spin-waits and made a 500k x 17 X'WX product 10-60x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

TODAY = date(2026, 11, 25)

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from vertebra.core.analytics import CohortFilter, build_report, read_tables
import lifelines, statsmodels.api  # noqa: F401  (import cost counted separately)
t1 = time.perf_counter()
tables = read_tables(sys.argv[1])
t2 = time.perf_counter()
from datetime import date
rep = build_report(tables, CohortFilter(), date.fromisoformat(sys.argv[2]), processes=2)
t3 = time.perf_counter()
text = json.dumps(rep.to_dict(), allow_nan=False, sort_keys=True)
t4 = time.perf_counter()
if len(sys.argv) > 3:
    open(sys.argv[3], "w").write(text)
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "report": t3 - t2, "json": t4 - t3,
                  "total_excl_import": t4 - t1, "rss_mb": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024, "n": rep.n_patients,
                  "arms": len(rep.arms), "json_bytes": len(text)}))
"""

ENGINE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from vertebra.analysis.duckdb_report import build_report_duckdb
from vertebra.core.analytics import CohortFilter
import lifelines, statsmodels.api  # noqa: F401  (import cost counted separately)
t1 = time.perf_counter()
from datetime import date
rep = build_report_duckdb(sys.argv[1], CohortFilter(), date.fromisoformat(sys.argv[2]), processes=2)
t2 = time.perf_counter()
d = rep.to_dict()
text = json.dumps(d, allow_nan=False, sort_keys=True)
t3 = time.perf_counter()
rows = []
for arm, a in sorted(d["arms"].items()):
    tp = next(t for t in a["timepoints"] if t["timepoint"] == "month_12")
    rows.append([arm, tp["n_expected"], tp["odi"]["n_change"],
                 tp["odi"]["responder_rate_completers"]["numerator"]])
print(json.dumps({"import": t1 - t0, "report": t2 - t1, "json": t3 - t2,
                  "total_excl_import": t3 - t1, "rss_mb": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_rss_mb": resource.getrusage(
                      resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "n": rep.n_patients,
                  "rows": rows}))
"""

DUCK = r"""
import json, resource, sys, time
import duckdb
t0 = time.perf_counter()
con = duckdb.connect()
con.execute('SET enable_progress_bar = false')  # it draws on stdout under load
d = sys.argv[1]
sql = f'''
with tp as (select * from read_parquet('{d}/timepoints.parquet')),
b as (select patient_id, odi as b from tp where timepoint = 'baseline'),
f as (select patient_id, odi as f, completed,
             coalesce(window_closes, due_date) <= DATE '{sys.argv[2]}' or completed as due
      from tp where timepoint = 'month_12')
select p.arm,
  count(*) filter (where f.due) as n_expected,
  count(*) filter (where f.f is not null and b.b is not null) as n_pairs,
  count(*) filter (where f.f is not null and b.b is not null
                   and (b.b - f.f >= 10 - 1e-9 or (b.b > 0 and (b.b - f.f) / b.b * 100 >= 30 - 1e-9))
                  ) as responders
from read_parquet('{d}/patients.parquet') p join f using (patient_id) left join b using (patient_id)
group by p.arm order by p.arm
'''
rows = con.execute(sql).fetchall()
t1 = time.perf_counter()
print(json.dumps({"query": t1 - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": [[str(r[0]), int(r[1]), int(r[2]), int(r[3])] for r in rows]}))
"""


def make_data(n: int, base: Path) -> Path:
    """Write (once) an n-patient cohort as Parquet; returns its directory."""
    out = base / f"cohort-{n}"
    if (out / "timepoints.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    try:
        from vertebra.core.synth import iter_cohort, write_cohort

        write_cohort(iter_cohort(n, 42, today=TODAY), out, formats=("parquet",))
        src = "vertebra.core.synth"
    except ImportError:
        from vertebra.core.analytics.toy import toy_tables

        tb = toy_tables(n, seed=42, today=TODAY)
        for name in ("patients", "timepoints", "events"):
            getattr(tb, name).to_parquet(out / f"{name}.parquet")
        src = "vertebra.core.analytics.toy"
    print(f"generated {n:,} patients with {src} in {time.perf_counter() - t:.1f} s", flush=True)
    return out


TIME = Path("/usr/bin/time")


def _time_v(stderr: str) -> dict[str, float]:
    """User+sys CPU seconds, elapsed wall seconds and max RSS (MB) from `/usr/bin/time -v`."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        key, _, val = line.strip().rpartition(": ")
        if key in ("User time (seconds)", "System time (seconds)"):
            out["cpu"] = out.get("cpu", 0.0) + float(val)
        elif key.startswith("Elapsed (wall clock) time"):
            parts = [float(p) for p in val.split(":")]
            out["wall"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
        elif key == "Maximum resident set size (kbytes)":
            out["maxrss_mb"] = float(val) / 1024
    return out


def _tree(root: int) -> list[int]:
    """`root` and every process below it (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name may hold spaces and parentheses: ppid follows the last ")"
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _tree_pss_mb(root: int) -> float:
    """Proportional set size of `root`'s process tree in MB: pages a forked worker shares
    with its parent count once in all, where each process's RSS counts them again."""
    total_kb = 0
    for pid in _tree(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def _run_sampled(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `cmd` to the end, sampling its process tree's PSS four times a second: (result,
    the largest sum seen in MB; 0 where /proc has no smaps_rollup)."""
    peak = 0.0
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.25):
                peak = max(peak, _tree_pss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        done.set()
        sampler.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak


def run_child(code: str, *args: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter (under /usr/bin/time -v) and return its JSON line,
    with the process tree's peak PSS (`tree_pss_mb`)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", code, *args]
    if TIME.exists():
        cmd = [str(TIME), "-v", *cmd]
    res, pss = _run_sampled(cmd, env)
    if res.returncode != 0:  # say why (the 10^7 run of 2026-12-06 ended without a reason)
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"benchmark child failed with exit status {res.returncode}")
    result: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    result.update({f"proc_{k}": v for k, v in _time_v(res.stderr).items()})
    result["tree_pss_mb"] = pss
    return result


def _med(key: str, rs: list[dict[str, object]]) -> float:
    return statistics.median(float(str(r[key])) for r in rs)


def _max(key: str, rs: list[dict[str, object]]) -> float:
    return max(float(str(r[key])) for r in rs)


def _process(rs: list[dict[str, object]]) -> str:
    """The whole-process figures of /usr/bin/time -v (empty without it)."""
    if "proc_cpu" not in rs[0]:
        return ""
    runs = ", ".join(
        f"{float(str(r['proc_wall'])):.2f}/{float(str(r['proc_cpu'])):.2f}" for r in rs
    )
    return (
        f"; whole process wall {_med('proc_wall', rs):.2f} s, CPU user+sys "
        f"{_med('proc_cpu', rs):.2f} s [runs wall/CPU: {runs}], max RSS "
        f"{_max('proc_maxrss_mb', rs):.0f} MB, peak PSS of the process tree "
        + (f"{pss:.0f} MB" if (pss := _max("tree_pss_mb", rs)) else "not sampled (too short)")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/vertebra-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--memory-max",
        type=int,
        default=2_000_000,
        help="largest cohort run by the in-memory engine (default 2,000,000)",
    )
    ap.add_argument(
        "--save-json", type=Path, help="write the first size's report JSON here (sorted keys)"
    )
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    for i, n in enumerate(args.sizes):
        d = make_data(n, args.data_dir)
        duck = [run_child(DUCK, str(d), TODAY.isoformat()) for _ in range(args.repeat)]
        floor = (
            f"DuckDB floor (same 12-month responder rates) query {_med('query', duck):.3f} s, "
            f"RSS {_max('rss_mb', duck):.0f} MB" + _process(duck)
        )
        print(f"n={n:,}: {floor}", flush=True)
        if n <= args.memory_max:
            extra = [str(args.save_json)] if args.save_json and i == 0 else []
            runs = [run_child(CHILD, str(d), TODAY.isoformat(), *extra) for _ in range(args.repeat)]
            print(
                f"  in memory: read {_med('read', runs):.2f} s, build_report "
                f"{_med('report', runs):.2f} s, json {_med('json', runs):.2f} s, total (excl. "
                f"imports) {_med('total_excl_import', runs):.2f} s [runs: "
                + ", ".join(f"{float(str(r['total_excl_import'])):.2f}" for r in runs)
                + f"], imports {_med('import', runs):.2f} s, peak RSS "
                f"{_max('rss_mb', runs):.0f} MB"
                + _process(runs)
                + f"; {_med('total_excl_import', runs) / _med('query', duck):.1f}x the floor",
                flush=True,
            )
        ooc = [run_child(ENGINE, str(d), TODAY.isoformat()) for _ in range(args.repeat)]
        same = all(r["rows"] == duck[0]["rows"] for r in ooc)
        print(
            f"  out of core (DuckDB engine): report {_med('report', ooc):.2f} s, json "
            f"{_med('json', ooc):.2f} s, total (excl. imports) "
            f"{_med('total_excl_import', ooc):.2f} s [runs: "
            + ", ".join(f"{float(str(r['total_excl_import'])):.2f}" for r in ooc)
            + f"], peak RSS {_max('rss_mb', ooc):.0f} MB (largest forked worker "
            f"{_max('children_rss_mb', ooc):.0f} MB)"
            + _process(ooc)
            + f"; {_med('total_excl_import', ooc) / _med('query', duck):.1f}x the floor; "
            f"12-month ODI counts equal to the floor's: {'yes' if same else 'NO'}",
            flush=True,
        )
        print("  duckdb rows (arm, n_expected, n_pairs, responders):", duck[0]["rows"], flush=True)


if __name__ == "__main__":
    main()
