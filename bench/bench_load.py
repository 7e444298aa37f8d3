"""Benchmark: load a synthetic cohort into the registry database (the demo's bulk path).

Usage (PostgreSQL, the production database; a scratch database is created and dropped):

    python bench/bench_load.py --sizes 10000 100000 \
        --admin-url postgres://postgres@127.0.0.1:5432/postgres

    python bench/bench_load.py --sizes 500 --sqlite     # the demo's embedded database

Each size runs in a fresh subprocess (fresh database, migrations applied first, not timed):
generate the cohort (vertebra.core.synth), then ``load_cohort`` in one transaction — COPY on
PostgreSQL, executemany on SQLite — including one hash-chained audit row per created object.
Prints generation time, load time, rows and audit rows per second, and peak RSS of the process.

Reference, in the same run (PostgreSQL): the loaded rows are exported, then replayed into a
second freshly migrated database with nothing but ``COPY`` per table in one transaction, with
the same foreign-key handling as the loader (row-by-row checks, IMMEDIATE, except the three
follow-up tables checked in bulk at the end). That is the server's floor for the same rows:
the loader's time minus it is what building the rows, scoring and hashing cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from scratch import copy_migrated_sqlite, scratch_databases
from scratch import migrate as migrate_database

CHILD = r"""
import datetime as dt, json, os, resource, sys, time
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
# Fail loudly if the reference ever drifts from the loader's foreign-key handling.
from vertebra.cohort.followups import ROW_HEAVY_MODELS
assert [m._meta.db_table for m in ROW_HEAVY_MODELS] == [
    "followup_followuptimepoint", "followup_submission", "followup_questionnaireresponse"]
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

#: Tables the loader writes, parents first (the replay's order).
TABLES = [
    "auth_user", "registry_clinic", "registry_membership", "registry_allogeneiclot",
    "registry_patient", "registry_consent", "registry_diagnosis", "registry_priortreatment",
    "registry_treatmentepisode", "registry_harvest", "registry_processing", "registry_injection",
    "registry_adverseevent", "registry_clinicalevent", "followup_followupschedule",
    "followup_followuptimepoint", "followup_submission", "followup_questionnaireresponse",
    "registry_auditevent",
]  # fmt: skip
BULK_FK_TABLES = TABLES[15:18]  # the loader's ROW_HEAVY_MODELS (the child asserts it)


def replay_reference(source_url: str, target_url: str, data_dir: str) -> float:
    """Seconds to COPY the rows of ``source_url``'s loaded tables into ``target_url`` (migrated,
    empty), in one transaction, foreign keys handled as the loader does."""
    import time

    import psycopg

    dumps = {}
    with psycopg.connect(source_url) as source:
        for table in TABLES:
            chunks = []
            with source.cursor().copy(f"COPY {table} TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    chunks.append(bytes(data))
            dumps[table] = b"".join(chunks)
    migrate(target_url, data_dir)
    with psycopg.connect(target_url) as target:
        target.execute("DELETE FROM auth_user")  # nothing else references users yet
        started = time.perf_counter()
        with target.transaction():
            target.execute("SET CONSTRAINTS ALL IMMEDIATE")
            fks = target.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
                [BULK_FK_TABLES],
            ).fetchall()
            for table, name, _ in fks:
                target.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for table in TABLES:
                with target.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
                    copy.write(dumps[table])
            for table, name, definition in fks:
                target.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        return time.perf_counter() - started


def migrate(database_url: str, data_dir: str) -> None:
    """Apply the migrations to ``database_url`` in a subprocess."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "vertebra.settings",
           "VERTEBRA_DATA_DIR": data_dir}  # fmt: skip
    migrate_database(database_url, env)


def database_figures(database_url: str) -> dict[str, object]:
    """ANALYZE ``database_url`` (timed) and report its size on disk and its biggest relations."""
    import time

    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("ANALYZE")
        analyze_s = round(time.perf_counter() - started, 2)
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        size = row[0] if row else 0
        biggest = conn.execute(
            "SELECT c.relname, c.relkind, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind IN ('r', 'i') ORDER BY pg_relation_size(c.oid) DESC LIMIT 12"
        ).fetchall()
    print(f"database size: {size / 2**30:.2f} GiB; ANALYZE {analyze_s} s", file=sys.stderr)
    for name, kind, total in biggest:
        print(f"  {kind} {name:<60} {total / 2**20:9.0f} MiB", file=sys.stderr)
    return {"analyze_s": analyze_s, "database_gib": round(size / 2**30, 2)}


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
        "--database-url",
        help="load into this (empty) PostgreSQL database and KEEP it, e.g. for bench_pages.py; "
        "migrates it first, runs ANALYZE after, skips the plain-COPY reference",
    )
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            if args.database_url:
                migrate(args.database_url, scratch)
                results.append(run_one(size, args.database_url, scratch))
                results[-1].update(database_figures(args.database_url))
                continue
            if args.sqlite:
                url = f"sqlite:///{Path(scratch) / f'load-{size}.sqlite3'}"
                copy_migrated_sqlite(url)  # the smoke test's template, if it gives one
                results.append(run_one(size, url, scratch))
                continue
            with scratch_databases(args.admin_url, 2) as (loaded, replayed):
                result = run_one(size, loaded, scratch)
                result["reference_s"] = round(replay_reference(loaded, replayed, scratch), 2)
                results.append(result)
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{'patients':>9} {'generate s':>10} {'load s':>7} {'rows':>9} {'audit':>9} "
          f"{'rows/s':>8} {'peak MB':>8} {'plain COPY s':>12}  ({engine})")  # fmt: skip
    for r in results:
        print(f"{r['patients']:>9} {r['generate_s']:>10} {r['load_s']:>7} {r['rows']:>9} "
              f"{r['audit_rows']:>9} {r['rows_per_s']:>8} {r['peak_rss_mb']:>8} "
              f"{r.get('reference_s', '-'):>12}")  # fmt: skip
    if not args.sqlite:
        print("plain COPY s: the same rows replayed with COPY alone (the server's floor)")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)")


if __name__ == "__main__":
    main()
