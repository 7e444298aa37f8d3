"""Benchmark: reading the analysis tables from the registry database, beside its floor.

Usage (a scratch database is created, migrated, loaded and dropped per size):

    python bench/bench_registry_reads.py                       # 10,000 patients, PostgreSQL
    python bench/bench_registry_reads.py --sizes 100000 --skip-orm
    python bench/bench_registry_reads.py --sizes 20000 --sqlite
    python bench/bench_registry_reads.py --database-url postgres://.../already_loaded

Each size: generate a synthetic cohort (seed 7) and load it with ``load_cohort`` (then
``ANALYZE`` on PostgreSQL, as autovacuum would), then every measurement runs in a FRESH
subprocess, so its peak memory is its own:

* ``floor``: the same SELECTs the columnar read runs (``columnar.registry_selects``), each
  received and thrown away: on PostgreSQL ``COPY (SELECT ...) TO STDOUT`` drained into bytes
  (nothing parsed), on SQLite the rows fetched as tuples. With ``psql`` on the PATH, also
  ``\\copy ... TO /dev/null`` by psql, a C client: the server's own floor.
* ``floor_adbc`` (PostgreSQL, with ``adbc-driver-postgresql``): the same SELECTs fetched by
  ADBC (binary ``COPY``) into Arrow tables and thrown away, one connection, nothing else;
* ``columnar``: ``system_tables()`` (identified) and ``system_tables(deidentified=True)``:
  what every page, report and export now calls (audited, like them); ``columnar_csv``
  (PostgreSQL): the identified read with ADBC switched off (CSV ``COPY`` and pyarrow.csv);
* ``orm``: the same through the ORM reference (``_system_tables_orm``), the path before.

Wall time, CPU time of the Python process (steadier on this shared 2-core machine) and peak
RSS (with its growth over the process after imports) are printed per path, with the ratio
to the floor; for the two floors, with the server on this machine, also the CPU time of the
server process that ran the SELECTs (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import migrate, scratch_databases

CHILD = r"""
import datetime as dt, json, os, resource, sys, time
import django
django.setup()
from django.db import connection, transaction
from django.utils import timezone
from vertebra.core.plausibility import analytics_window
from vertebra.outcomes import columnar
from vertebra.outcomes.selectors import FOLLOWUP_HORIZON, _system_tables_orm, system_tables

mode, size = sys.argv[1], int(sys.argv[2])

def backend_cpu(pid):  # CPU seconds of server process pid so far (None: server not local)
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

today = timezone.localdate()
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"mode": mode}
t0, c0 = time.perf_counter(), time.process_time()
if mode == "load":
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    load_cohort(generate_cohort(size, 7, today=today), now=timezone.now())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
elif mode == "floor":
    window = analytics_window(today)
    selects = columnar.registry_selects(
        connection.vendor, None, window, window[1] + FOLLOWUP_HORIZON)
    with transaction.atomic(), columnar._whole_table_plans():
        server0 = pid = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            server0 = backend_cpu(pid)
        out["received"] = {name: columnar.fetch_bytes(s) for name, s in selects.items()}
        if server0 is not None:
            out["server_cpu_s"] = backend_cpu(pid) - server0
    out["sql"] = {name: s.sql for name, s in selects.items()}
elif mode == "floor_adbc":
    window = analytics_window(today)
    selects = columnar.registry_selects(
        connection.vendor, None, window, window[1] + FOLLOWUP_HORIZON)
    dbapi = columnar._adbc_dbapi()
    with dbapi.connect(columnar._conninfo(), autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for setting, value in columnar._PLANNER_SETTINGS:
            cursor.execute(f"SET LOCAL {setting} = {value}")
        server0 = backend_cpu(pid)
        out["received"] = {}
        for name, s in selects.items():
            cursor.execute(s.sql)
            out["received"][name] = cursor.fetch_arrow_table().nbytes
        if server0 is not None:
            out["server_cpu_s"] = backend_cpu(pid) - server0
        cursor.execute("COMMIT")
else:
    if mode.startswith("columnar_csv"):  # the read without ADBC (its fallback)
        columnar._adbc_dbapi = lambda: None
    read = system_tables if mode.startswith("columnar") else _system_tables_orm
    tables = read(purpose="bench", deidentified=mode.endswith("deid"), as_of=today)
    out["rows"] = [len(tables.patients), len(tables.timepoints), len(tables.events)]
out["wall_s"] = time.perf_counter() - t0
out["cpu_s"] = time.process_time() - c0
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["rss_growth_mb"] = out["peak_rss_mb"] - rss0
print(json.dumps(out))
"""

#: Settings the columnar read uses on PostgreSQL (columnar._PLANNER_SETTINGS), for psql.
PSQL_SETTINGS = ["SET enable_nestloop = off", "SET work_mem = '64MB'", "SET jit = off"]


def child(mode: str, size: int, env: dict[str, str]) -> dict[str, object]:
    """Run one measurement in a fresh process; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(size)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def adbc_available() -> bool:
    """Whether ADBC's PostgreSQL driver is installed (the read uses it when it is)."""
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def psql_floor(database_url: str, sqls: dict[str, str]) -> float:
    """Seconds for psql (C client) to ``\\copy`` every SELECT to /dev/null, one session."""
    commands = [arg for s in PSQL_SETTINGS for arg in ("-c", s)]
    for sql in sqls.values():
        commands += ["-c", f"\\copy ({sql}) TO '/dev/null' (FORMAT csv)"]
    start = time.perf_counter()
    subprocess.run(["psql", "-q", "-X", database_url, *commands], check=True)
    return time.perf_counter() - start


def measure(size: int, database_url: str, data_dir: str, args: argparse.Namespace) -> list[dict]:
    """Load ``size`` patients into ``database_url`` (unless given loaded), then each path."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
        "VERTEBRA_ENV": "development",
        "LOG_LEVEL": "WARNING",
    }
    if not args.database_url:
        migrate(database_url, env)
        load = child("load", size, env)
        print(f"# loaded {size:,} patients in {load['wall_s']:.1f} s", flush=True)
    modes = ["floor", "columnar", "columnar_deid"]
    if database_url.startswith("postgres"):
        modes.insert(2, "columnar_csv")
        if adbc_available():
            modes.insert(1, "floor_adbc")
    if not args.skip_orm:
        modes += ["orm", "orm_deid"]
    rows = []
    for mode in modes:
        runs = [child(mode, size, env) for _ in range(args.repeat)]
        best = dict(runs[0])
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "rss_growth_mb", "server_cpu_s"):
            if key in best:
                best[key] = statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]
        rows.append(best)
        print(json.dumps({k: v for k, v in best.items() if k != "sql"}), flush=True)
    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    if engine == "PostgreSQL" and shutil.which("psql"):
        sqls = rows[0]["sql"]
        runs_s = [psql_floor(database_url, sqls) for _ in range(args.repeat)]  # type: ignore[arg-type]
        rows.insert(1, {"mode": "floor_psql", "wall_s": statistics.median(runs_s)})
    for r in rows:
        r["patients"], r["engine"] = size, engine
    return rows


def main() -> None:
    """Parse options, measure each size, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file")
    parser.add_argument("--repeat", type=int, default=1, help="runs per path (median)")
    parser.add_argument("--skip-orm", action="store_true", help="leave out the ORM path")
    parser.add_argument("--database-url", help="an already loaded database (one size: label)")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            if args.database_url:
                rows += measure(size, args.database_url, scratch, args)
            elif args.sqlite:
                rows += measure(
                    size, f"sqlite:///{Path(scratch) / f'r{size}.sqlite3'}", scratch, args
                )
            else:
                with scratch_databases(args.admin_url) as (url,):
                    rows += measure(size, url, scratch, args)
    print(f"\nregistry reads ({rows[0]['engine'] if rows else '-'}; floor = the same SELECTs, "
          "rows received and dropped)")  # fmt: skip
    print(f"{'patients':>9} {'path':<14} {'wall s':>7} {'cpu s':>6} {'peak MB':>8} "
          f"{'growth MB':>9} {'x floor':>7} {'server cpu s':>12}")  # fmt: skip
    floor: dict[int, float] = {}
    for r in rows:
        if r["mode"] == "floor":
            floor[r["patients"]] = float(r["wall_s"])
        ratio = float(r["wall_s"]) / floor[r["patients"]] if r["patients"] in floor else 1.0
        print(f"{r['patients']:>9,} {r['mode']:<14} {float(r['wall_s']):>7.2f} "
              f"{float(r.get('cpu_s', 0)):>6.2f} {float(r.get('peak_rss_mb', 0)):>8.0f} "
              f"{float(r.get('rss_growth_mb', 0)):>9.0f} {ratio:>7.2f} "
              f"{'-' if 'server_cpu_s' not in r else format(r['server_cpu_s'], '.2f'):>12}")  # fmt: skip


if __name__ == "__main__":
    main()
