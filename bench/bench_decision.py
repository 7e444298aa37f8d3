"""Benchmark: the public decision aid (/decide/, /api/v1/decision-aid), first and cached request.

Usage (a scratch database is created, migrated, loaded and dropped per size):

    python bench/bench_decision.py --sizes 500 100000 \
        --admin-url postgres://postgres:postgres@127.0.0.1:5432/postgres

    python bench/bench_decision.py --sizes 500 --sqlite     # the demo's embedded database

Each size runs in a fresh subprocess: generate a synthetic cohort (seed 7) and load it with
``load_cohort`` (timed, not the point), then through Django's test client (full middleware
stack, no network):

* first request: empty cache, so the page reads the de-identified registry
  (``system_tables(deidentified=True)``, audited), builds the cell table and renders;
* the same read split into its parts (registry read + de-identification, cell table);
* cached requests: the same page again, another profile, and the JSON endpoint (median of
  20 each), which read only the cached cell table;
* the worker's forced refresh of the analysis snapshot (ADR 0022), which builds the cell table
  the page reads (no request rebuilds anything).

Prints one JSON line per size and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scratch import migrate, scratch_databases

CHILD = r"""
import dataclasses, datetime as dt, json, os, resource, statistics, sys, time
import django
django.setup()
from django.test import Client
from django.utils import timezone
from vertebra.cohort.loader import load_cohort
from vertebra.core.decision import build_cell_table, decision_rules
from vertebra.core.synth import generate_cohort
from vertebra.outcomes.selectors import system_tables
from vertebra.outcomes import snapshot

n = int(sys.argv[1])
today = timezone.localdate()
t0 = time.perf_counter()
load_cohort(generate_cohort(n, 7, today=today), now=timezone.now())
load_s = time.perf_counter() - t0

client = Client()
page = "/decide/?condition=degenerative_disc_disease&age=45"
other = "/decide/?condition=sciatica&age=61&odi=44&startback=medium"
api = "/api/v1/decision-aid?condition=degenerative_disc_disease&age=45"

def timed(path):
    start = time.perf_counter()
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return time.perf_counter() - start

# The analysis snapshot (ADR 0022) holds the cell table: the worker's refresh builds it, and
# the page only reads it. Time a forced refresh (the worker's cost), then the page.
start = time.perf_counter()
snapshot.refresh(force=True)
rebuild = time.perf_counter() - start
first = timed(page)
cached = statistics.median(timed(page) for _ in range(20))
cached_other = statistics.median(timed(other) for _ in range(20))
cached_api = statistics.median(timed(api) for _ in range(20))
shown = sum(a["shown"] for a in client.get(api).json()["arms"])

start = time.perf_counter()
tables = system_tables(purpose="bench", deidentified=True, as_of=today)
read_s = time.perf_counter() - start
start = time.perf_counter()
cells = build_cell_table(tables, today, decision_rules())
cells_s = time.perf_counter() - start
print(json.dumps({
    "patients": n, "load_s": round(load_s, 1), "first_request_s": round(first, 3),
    "read_deidentify_s": round(read_s, 3), "cell_table_s": round(cells_s, 3),
    "cached_ms": round(cached * 1000, 1), "cached_other_ms": round(cached_other * 1000, 1),
    "cached_api_ms": round(cached_api * 1000, 1),
    "snapshot_refresh_s": round(rebuild, 2), "leaves": len(cells.leaves),
    "arms_shown_ddd_45": shown,
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}))
"""


def run_one(size: int, database_url: str, data_dir: str) -> dict[str, object]:
    """Migrate ``database_url``, then load and measure ``size`` patients in a fresh process."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
        "VERTEBRA_ENV": "development",
        "LOG_LEVEL": "WARNING",
    }
    migrate(database_url, env)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run each size on a scratch database, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 100_000])
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
                url = f"sqlite:///{Path(scratch) / f'decide-{size}.sqlite3'}"
                results.append(run_one(size, url, scratch))
                print(json.dumps(results[-1]), flush=True)
                continue
            with scratch_databases(args.admin_url) as (url,):
                results.append(run_one(size, url, scratch))
                print(json.dumps(results[-1]), flush=True)
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{'patients':>9} {'first s':>8} {'read+deid s':>11} {'cells s':>8} "
          f"{'cached ms':>9} {'other ms':>8} {'api ms':>7} {'refresh s':>9} "
          f"{'shown':>5}  ({engine})")  # fmt: skip
    for r in results:
        print(f"{r['patients']:>9} {r['first_request_s']:>8} {r['read_deidentify_s']:>11} "
              f"{r['cell_table_s']:>8} {r['cached_ms']:>9} {r['cached_other_ms']:>8} "
              f"{r['cached_api_ms']:>7} {r['snapshot_refresh_s']:>9} "
              f"{r['arms_shown_ddd_45']:>5}")  # fmt: skip


if __name__ == "__main__":
    main()
