"""Benchmark: load a synthetic cohort into the registry database (the demo's bulk path).

Usage (PostgreSQL, the production database; a scratch database is created and dropped):

    python bench/bench_load.py --sizes 10000 100000 \
        --admin-url postgres://postgres@127.0.0.1:5432/postgres

    python bench/bench_load.py --sizes 500 --sqlite     # the demo's embedded database

Each size runs in a fresh subprocess (fresh database, migrations applied first, not timed):
generate the cohort (vertebra.core.synth), then ``load_cohort`` in one transaction — COPY on
PostgreSQL, executemany on SQLite — including one hash-chained audit row per created object.
Prints generation time, load time, rows and audit rows per second, and peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

CHILD = r"""
import datetime as dt, json, os, resource, sys, time
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
n = int(sys.argv[1])
t0 = time.perf_counter()
cohort = generate_cohort(n, 1, today=dt.date(2026, 11, 25))
t1 = time.perf_counter()
summary = load_cohort(cohort, now=timezone.now())
t2 = time.perf_counter()
rows = sum(summary.counts.values())
print(json.dumps({
    "patients": n, "generate_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2),
    "rows": rows, "audit_rows": summary.audit_rows,
    "rows_per_s": round((rows + summary.audit_rows) / (t2 - t1)),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}))
"""


def run_one(size: int, database_url: str, data_dir: str) -> dict[str, object]:
    """Load ``size`` patients into ``database_url`` in a fresh process; return its figures."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run each size on a scratch database, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            if args.sqlite:
                url = f"sqlite:///{Path(scratch) / f'load-{size}.sqlite3'}"
                results.append(run_one(size, url, scratch))
                continue
            import psycopg

            name = f"vertebra_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            try:
                base = args.admin_url.rsplit("/", 1)[0]
                results.append(run_one(size, f"{base}/{name}", scratch))
            finally:
                with psycopg.connect(args.admin_url, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{'patients':>9} {'generate s':>10} {'load s':>7} {'rows':>9} {'audit':>9} "
          f"{'rows/s':>8} {'peak MB':>8}  ({engine})")  # fmt: skip
    for r in results:
        print(f"{r['patients']:>9} {r['generate_s']:>10} {r['load_s']:>7} {r['rows']:>9} "
              f"{r['audit_rows']:>9} {r['rows_per_s']:>8} {r['peak_rss_mb']:>8}")  # fmt: skip
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)")


if __name__ == "__main__":
    main()
