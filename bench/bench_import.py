"""Benchmark: ``vertebra import fhir`` of a Vertebra FHIR export into an empty registry.

Usage:

    python bench/bench_import.py --sizes 1000 10000 \
        --admin-url postgres://postgres@127.0.0.1:5432/postgres     # PostgreSQL scratch DBs
    python bench/bench_import.py --sizes 100 --sqlite               # scratch SQLite files
    python bench/bench_import.py --sizes 1000 --sqlite --paths bulk careful   # both paths

Each size, in fresh subprocesses (not timed: migrations, the synthetic cohort's bulk load and
its export): a source registry is loaded with ``load_cohort`` and exported with
``export_fhir``; a second, empty registry gets one clinic and a clinician ("importer", also a
registry admin for the lots). Timed: ``import_fhir_folder`` of the whole export into it, as
the CLI runs it (every line validated against the R4 models unless ``--no-validate``, every
patient through the audited services). Prints patients, resources, seconds, patients/s,
resources/s, ms per patient, the refusals, peak memory and the importing process's CPU time
(less sensitive than wall time to a shared machine), plus the time to read and validate the
files alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scratch import copy_migrated_sqlite, scratch_databases

EXPORT = r"""
import datetime as dt, sys
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from pathlib import Path
from vertebra.cohort.loader import load_cohort
from vertebra.core.synth import generate_cohort
from vertebra.interop.export import export_fhir
today = dt.date(2026, 11, 25)
load_cohort(generate_cohort(int(sys.argv[1]), 1, today=today), now=timezone.now())
export_fhir(Path(sys.argv[2]), now=timezone.now())
"""

IMPORT = r"""
import datetime as dt, json, os, resource, sys, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from pathlib import Path
from django.contrib.auth import get_user_model
from django.utils import timezone
from vertebra.registry.models import Clinic, Membership
from vertebra.interop.importer import import_fhir_folder, read_folder
folder, validate, careful = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "careful"
clinic = Clinic.objects.create(name="Receiving clinic")
user = get_user_model().objects.create(username="importer")
Membership.objects.create(user=user, clinic=clinic, role="clinician")
Membership.objects.create(user=user, clinic=None, role="registry_admin")
from django.db import connection
def server_cpu():  # the PostgreSQL backend's CPU seconds (/proc; same machine), else 0
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def workers_cpu():  # CPU of finished child processes (the validation workers)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
phase = {}
def read_done(n):  # import_fhir_folder's on_start: the files are read and validated
    phase.update(wall=time.perf_counter(), cpu=time.process_time(), workers=workers_cpu(),
                 server=server_cpu())
t0 = time.perf_counter()
if sys.argv[4] == "1":  # the floor: reading and validating alone
    read_folder(folder, validate=validate)
t1 = time.perf_counter()
cpu0 = cpu = time.process_time()
workers0, server0 = workers_cpu(), server_cpu()
report = import_fhir_folder(folder, clinic_id=clinic.pk, username="importer",
                            today=timezone.localdate(), validate=validate, careful=careful,
                            on_start=read_done)
t2 = time.perf_counter()
cpu_end, server_end = time.process_time(), server_cpu()
cpu = cpu_end - cpu
rows = report.rows()
print(json.dumps({
    "patients": report.patients_imported, "resources": sum(t.read for _, t in rows),
    "refused": report.n_refused, "read_s": round(t1 - t0, 2) if sys.argv[4] == "1" else None, "import_s": round(t2 - t1, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "cpu_s": round(cpu, 2), "path": sys.argv[3], "careful": report.patients_careful,
    "reasons": sorted({f"{kind}: {reason} ({n}, e.g. {rid})" for kind, t in rows
                       for reason, (n, rid) in t.refused.items()})[:8],
    "phases": {  # reading (+ R4 validation) until on_start, then writing
        "read_wall_s": round(phase["wall"] - t1, 2),
        "write_wall_s": round(t2 - phase["wall"], 2),
        "read_cpu_s": round(phase["cpu"] - cpu0, 2),
        "write_cpu_s": round(cpu_end - phase["cpu"], 2),
        "workers_cpu_s": round(phase["workers"] - workers0, 2),
        "server_read_cpu_s": round(phase["server"] - server0, 2),
        "server_write_cpu_s": round(server_end - phase["server"], 2),
    },
}))
"""


def child(code: str, args: list[str], database_url: str, data_dir: str) -> str:
    """Run ``code`` with ``args`` in a fresh process on ``database_url``; its stdout."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "vertebra.settings",
           "DATABASE_URL": database_url, "VERTEBRA_DATA_DIR": data_dir}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout


def export_once(size: int, source_url: str, scratch: str) -> Path:
    """Load ``size`` synthetic patients into ``source_url`` and export them (not timed)."""
    folder = Path(scratch) / f"export-{size}"
    if not folder.exists():
        child(EXPORT, [str(size), str(folder)], source_url, scratch)
    return folder


def run_one(
    folder: Path, target_url: str, scratch: str, validate: bool, path: str, floor: bool = True
) -> dict:
    """Time the import of ``folder`` into the empty registry ``target_url`` by ``path``
    (and, with ``floor``, reading and validating it alone first)."""
    flags = ["1" if validate else "0", path, "1" if floor else "0"]
    out = child(IMPORT, [str(folder), *flags], target_url, scratch)
    result: dict = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run each size on scratch databases, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--sqlite", action="store_true", help="use scratch SQLite files")
    parser.add_argument("--no-validate", action="store_true", help="skip R4 model validation")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=("bulk", "careful"),
        default=["bulk"],
        help="import paths to time (the default bulk path; --careful: the per-patient services)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip timing the read-and-validate floor"
    )
    parser.add_argument(
        "--export-dir",
        help="keep the exports here (export-<size>) and reuse them on the next run "
        "(default: a temporary directory, deleted at the end)",
    )
    parser.add_argument(
        "--db-prefix", default="vertebra_bench", help="name prefix of the scratch databases"
    )
    args = parser.parse_args()
    validate = not args.no_validate
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"import fhir benchmark ({engine}, R4 validation {'on' if validate else 'off'})")
    print(f"{'patients':>9} {'resources':>10} {'read s':>7} {'import s':>9} {'patients/s':>11} "
          f"{'res/s':>7} {'ms/patient':>10} {'refused':>8} {'peak MB':>8} {'cpu s':>7} "
          f"{'path':>8} {'careful':>8} {'floor ms/pt':>11}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.export_dir or tmp
        Path(scratch).mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            for path in args.paths:  # each row printed when done: a long run shows progress
                if args.sqlite:
                    source = f"sqlite:///{Path(scratch) / f'source-{size}.sqlite3'}"
                    target = f"sqlite:///{Path(scratch) / f'target-{size}-{path}.sqlite3'}"
                    for url in (source, target):  # the smoke test's template, if it gives one
                        copy_migrated_sqlite(url)
                    folder = export_once(size, source, scratch)
                    print_row(run_one(folder, target, scratch, validate, path, not args.no_floor))
                    continue
                with scratch_databases(args.admin_url, 2, args.db_prefix) as (source, target):
                    folder = export_once(size, source, scratch)
                    print_row(run_one(folder, target, scratch, validate, path, not args.no_floor))
    print(
        "import s includes reading the files again (read s is reading alone: the floor, "
        "floor ms/pt); cpu s is the importing process's CPU time (the database server's and "
        "the validation workers' are not in it); careful: patients the careful path decided"
    )


def print_row(r: dict) -> None:
    """One result as a row of the table (and as JSON on stderr)."""
    print(json.dumps(r), file=sys.stderr, flush=True)
    seconds = max(r["import_s"], 0.01)
    floor = "—" if r["read_s"] is None else f"{1000 * r['read_s'] / max(r['patients'], 1):.1f}"
    print(f"{r['patients']:>9} {r['resources']:>10} {r['read_s'] or '—':>7} {r['import_s']:>9} "
          f"{r['patients'] / seconds:>11.1f} {r['resources'] / seconds:>7.0f} "
          f"{1000 * seconds / max(r['patients'], 1):>10.1f} {r['refused']:>8} "
          f"{r['peak_rss_mb']:>8} {r['cpu_s']:>7} {r['path']:>8} {r['careful']:>8} "
          f"{floor:>11}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
