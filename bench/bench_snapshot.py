"""Benchmark: the analysis snapshot (ADR 0022) — refresh time and a page's work from it, beside
the direct columnar read of the same registry (the floor every page paid before).

Usage (a scratch database ``vertebra_snapshot_bench_*`` is created, loaded and dropped):

    python bench/bench_snapshot.py                        # 10,000 patients, PostgreSQL
    python bench/bench_snapshot.py --sizes 10000 100000
    python bench/bench_snapshot.py --sizes 200 --sqlite   # the CI smoke size

Each size: generate a synthetic cohort (seed 7), load it with ``load_cohort`` (``ANALYZE`` on
PostgreSQL), then every measurement runs in a FRESH subprocess (its own peak memory):

* ``direct`` / ``direct_deid``: ``system_tables()`` identified / de-identified: the columnar
  read (ADR 0020) a page ran per request before the snapshot — the floor here;
* ``refresh``: ``snapshot.refresh(force=True)``: the worker's full rebuild (registry read,
  Parquet written, the decision aid's cell table, manifest, atomic swap);
* ``check``: ``snapshot.refresh()`` with nothing changed: the watermark check every worker
  pass pays;
* ``incremental``: ``--changed`` patients (default 100, spread over the registry, or over its
  first ``--changed-clinics`` clinics) get an audited change (sex flipped, one ``update``
  audit row each, as a correction writes), then ``snapshot.refresh()`` in a process that built
  the current snapshot (a worker: a warm-up pass changes one patient and refreshes first):
  only those patients are read again and spliced in (ADR 0022 §9), and the stored reports of
  clinics none of them belongs to are carried over, not built again (§10). ``read`` is the registry
  read of the refresh (the changed patients' rows, against ``direct`` for the whole read),
  the row's wall the whole refresh (Parquet written, cell table, default reports);
* ``page_*``: a page's read from the snapshot, without HTTP and templates — the researchers'
  dashboard (de-identified, every clinic) and one clinic's dashboard (identified, clinic 1):
  ``load`` (a fresh process reading the Parquet files; once per snapshot per process),
  ``tables`` (the scope's tables from the loaded frames: ``tables_from_frames``, which is
  what replaces the direct read in a served process: ``warm``, measured again), and
  ``report`` (``build_report``, the same with or without the snapshot, printed apart);
* ``page_cached_*``: the same two pages through ``reports.report_for`` (what the dashboard and
  the report downloads call, audit row included) in a process with the frames loaded:
  ``first`` view (tables + report built, then kept) and ``repeat`` (the mean of 5 identical
  views answered from the in-process report cache: the audit row and the status files only).
  (``SNAPSHOT_PREPARE_REPORTS`` is on, so since amendment 8 the first view finds the report
  the refresh stored: this measures the stored path in a process holding the frames.)
* ``served_*``: the same two default pages in a FRESH web process (nothing loaded): ``first``
  view answered from the report the worker's refresh stored beside the snapshot (signature
  checked, unpickled; ``frames loaded`` must say False), ``repeat`` from memory. The
  ``refresh`` row says how long building the default reports of every scope took.
  ``served_clinic_filter``: the clinic's page with a filter never built (arm bmac) in a fresh
  process: built in the request from that clinic's rows only (Parquet filters).

``--modes`` picks measurements; ``--snapshot-dir`` puts the snapshots elsewhere (several GB at
1,000,000 patients). With ``--database-url`` every child's writes (the bench user, the audit
rows of its reads and of the refresh) are rolled back: the database is only read.

Modules are imported before the clock starts (a server or worker has them loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from scratch import migrate

CHILD = r"""
import json, os, resource, sys, time
import django
django.setup()
from django.db import connection
from django.utils import timezone
# What a running server or worker process has imported already (not part of any figure).
from vertebra.core.analytics import CohortFilter, build_report
from vertebra.core.disclosure import policy
from vertebra.outcomes import snapshot
from vertebra.outcomes.columnar import tables_from_frames
from vertebra.outcomes.selectors import system_tables
from vertebra.registry.models import Clinic
from django.contrib.auth import get_user_model
from vertebra.outcomes.reports import report_for
from vertebra.registry.models import Membership, Role
from vertebra.registry.permissions import Actor

mode, size = sys.argv[1], int(sys.argv[2])
today = timezone.localdate()
out = {"mode": mode}
# On an already loaded database (--database-url) nothing this run writes is kept: the bench
# user, its membership and the audit rows of its reads are rolled back (the read-only rule).
from django.db import transaction
rollback = os.environ.get("BENCH_ROLLBACK") == "1"
atomic = transaction.atomic()
if rollback:
    atomic.__enter__()
t0, c0 = time.perf_counter(), time.process_time()
started_epoch = time.time()
if mode == "load":
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    load_cohort(generate_cohort(size, 7, today=today), now=timezone.now())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
elif mode.startswith("direct"):
    tables = system_tables(purpose="bench", deidentified=mode.endswith("deid"), as_of=today)
    out["rows"] = [len(tables.patients), len(tables.timepoints), len(tables.events)]
elif mode == "incremental":
    from vertebra.outcomes.selectors import _SystemUser
    from vertebra.registry.audit import record_audit
    from vertebra.registry.models import Patient
    changed = int(os.environ.get("BENCH_CHANGED", "100"))
    in_clinics = int(os.environ.get("BENCH_CHANGED_CLINICS", "0"))
    ids = list(Patient.objects.order_by("pk").values_list("pk", "clinic_id", "sex"))
    if in_clinics:  # the changes fall in the first N clinics only
        first = sorted({clinic for _, clinic, _ in ids})[:in_clinics]
        ids = [row for row in ids if row[1] in first]
    who = Actor(user=_SystemUser("bench"), role="system", clinic_ids=frozenset())

    def change(rows):
        with transaction.atomic():
            for pk, clinic_id, sex in rows:
                other = "female" if sex == "male" else "male"
                Patient.objects.filter(pk=pk).update(sex=other)
                record_audit(actor=who, action="update", object_type="patient", object_id=pk,
                             clinic_id=clinic_id, patient_id=pk, old_values={"sex": sex},
                             new_values={"sex": other})

    # The worker's previous pass: one patient changed, refreshed by THIS process, which then
    # holds the snapshot it built (stored reports are carried only within one process).
    change(ids[-1:])
    warm = time.perf_counter()
    out["warmup_read"] = snapshot.refresh().manifest["read"]
    out["warmup_s"] = time.perf_counter() - warm
    step = max(1, (len(ids) - 1) // max(changed, 1))
    change(ids[:-1][::step][:changed])
    t0, c0 = time.perf_counter(), time.process_time()  # the refresh alone
    started_epoch = time.time()
    result = snapshot.refresh()
    out["outcome"] = result.outcome
    out["read"] = result.manifest["read"]
    out["rows"] = result.manifest["rows"]
    out["prepared_s"] = result.manifest.get("prepared_seconds", 0.0)
    out["carried"] = result.manifest.get("reports_carried", 0)
    out["cell_clinics"] = result.manifest.get("cell_clinics")
    out["steps"] = result.manifest.get("seconds", {})
    out["scopes"] = len(result.manifest.get("clinic_patients", {})) + 2
    out["published_s"] = os.path.getmtime(snapshot._root() / "CURRENT") - started_epoch
elif mode in ("refresh", "check"):
    result = snapshot.refresh(force=mode == "refresh")
    out["outcome"] = result.outcome
    out["rows"] = result.manifest["rows"]
    # the default-filter reports of every scope, built and stored by the refresh (amendment 8)
    out["prepared_s"] = result.manifest.get("prepared_seconds", 0.0)
    out["scopes"] = len(result.manifest.get("clinic_patients", {})) + 2
    out["steps"] = result.manifest.get("seconds", {})
    if result.outcome == "built":  # when pages began to see it (small clinics come after)
        out["published_s"] = os.path.getmtime(snapshot._root() / "CURRENT") - started_epoch
elif mode.startswith("served"):
    # A FRESH web process's first view of a default dashboard: the worker's stored report
    # (no frames loaded, no build), then 5 repeats from memory. ``served_clinic_filter``: a
    # filter nobody asked before (arm bmac), built in the request from the clinic's rows only.
    deid = mode.endswith("research")
    flt = CohortFilter(arms=("bmac",)) if mode.endswith("filter") else CohortFilter()
    role = Role.RESEARCHER if deid else Role.CLINICIAN
    clinic = None if deid else Clinic.objects.order_by("pk").first()
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{role}")
    Membership.objects.get_or_create(user=user, clinic=clinic, role=role)
    actor = Actor.for_user(user, role, request_id="bench")
    t1, c1 = time.perf_counter(), time.process_time()
    report, _status = report_for(actor, flt, today)
    out["first_s"], out["first_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
    out["frames_loaded"] = bool(snapshot._loaded)  # must stay False: no 1 M frames read
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(5):
        again, _status = report_for(actor, flt, today)
    out["repeat_s"] = (time.perf_counter() - t1) / 5
    out["repeat_cpu_s"] = (time.process_time() - c1) / 5
    out["patients"] = report.n_patients if report else 0
elif mode == "filter_wait":
    # A researcher's filter nobody asked for, in a web process as in production (a wide scope
    # is never built in a request): the page asks the worker (`vertebra snapshot watch`, run
    # here as its own process), then asks whether the figures are ready, as the page's
    # ready.json does, and shows them. First a warm-up filter ("cold": the worker loads the
    # snapshot's frames for it), then the measured one ("warm").
    import subprocess
    from vertebra.outcomes.reports import report_ready
    role = Role.RESEARCHER
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{role}")
    Membership.objects.get_or_create(user=user, clinic=None, role=role)
    actor = Actor.for_user(user, role, request_id="bench")
    snapshot.refresh()  # the worker's snapshot (built here when this data folder has none)
    watch = subprocess.Popen([sys.executable, "-m", "vertebra", "snapshot", "watch"],
                             stdin=subprocess.DEVNULL)
    try:
        for name, flt in (("cold", CohortFilter(arms=("adipose",))),
                          ("warm", CohortFilter(arms=("bmac",)))):
            t1 = time.perf_counter()
            report, status = report_for(actor, flt, today)
            out[name + "_asked"] = "pending" if report is None and status and status.pending else "answered"
            while not report_ready(actor, flt, today):
                if time.perf_counter() - t1 > 1800:
                    raise SystemExit("the worker did not build the filter within 30 min")
                time.sleep(0.05)
            out[name + "_ready_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            report, status = report_for(actor, flt, today)
            out[name + "_shown_s"] = time.perf_counter() - t1
            out[name + "_patients"] = report.n_patients if report else 0
    finally:
        watch.terminate()
        watch.wait(timeout=60)
elif mode.startswith("page_cached"):
    deid = mode.endswith("research")
    role = Role.RESEARCHER if deid else Role.CLINICIAN
    clinic = None if deid else Clinic.objects.order_by("pk").first()
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{role}")
    Membership.objects.get_or_create(user=user, clinic=clinic, role=role)
    actor = Actor.for_user(user, role, request_id="bench")
    snapshot.current()  # a served process: frames already loaded
    t1, c1 = time.perf_counter(), time.process_time()
    report, _status = report_for(actor, CohortFilter(), today)
    out["first_s"], out["first_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(5):
        again, _status = report_for(actor, CohortFilter(), today)
        assert again is report  # answered from memory
    out["repeat_s"] = (time.perf_counter() - t1) / 5
    out["repeat_cpu_s"] = (time.process_time() - c1) / 5
    out["patients"] = report.n_patients
else:
    deid = mode.endswith("research")
    clinic = Clinic.objects.order_by("pk").values_list("pk", flat=True).first()
    scope = None if deid else frozenset({clinic})
    snap = snapshot.current()  # cold: this process reads the Parquet files
    out["load_s"], out["load_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    def tables():
        return tables_from_frames(snap.frames, scope, deid, CohortFilter(), as_of=today)
    t1, c1 = time.perf_counter(), time.process_time()
    built = tables()
    out["tables_s"], out["tables_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
    t1, c1 = time.perf_counter(), time.process_time()
    build_report(built, CohortFilter(), today, min_cell=policy().min_cell if deid else None)
    out["report_s"], out["report_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
    out["patients"] = len(built.patients)
    t1, c1 = time.perf_counter(), time.process_time()
    tables()
    # a served process: frames already loaded
    out["warm_s"], out["warm_cpu_s"] = time.perf_counter() - t1, time.process_time() - c1
out["wall_s"] = time.perf_counter() - t0
out["cpu_s"] = time.process_time() - c0
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if rollback:
    transaction.set_rollback(True)
    atomic.__exit__(None, None, None)
print(json.dumps(out))
"""


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database named ``vertebra_snapshot_bench_*``, dropped afterwards."""
    import psycopg

    name = f"vertebra_snapshot_bench_{uuid.uuid4().hex[:8]}"
    base = admin_url.rsplit("/", 1)[0]
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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


MODES = (
    "direct", "direct_deid", "refresh", "check", "incremental", "page_research", "page_clinic",
    "page_cached_research", "page_cached_clinic", "served_research", "served_clinic",
    "served_clinic_filter", "filter_wait",
)  # fmt: skip


def measure(
    size: int,
    database_url: str,
    data_dir: str,
    *,
    loaded: bool = False,
    modes: tuple[str, ...] = MODES,
    snapshot_dir: str = "",
    changed: int = 100,
) -> list[dict[str, object]]:
    """Load ``size`` patients into ``database_url`` (unless ``loaded``), then time each path
    (``modes``; on a ``loaded`` database every child's writes are rolled back)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
        "VERTEBRA_ENV": "development",
        "SNAPSHOT_BUILD_INLINE": "false",
        "LOG_LEVEL": "WARNING",
        "SNAPSHOT_DIR": snapshot_dir or str(Path(data_dir) / "snapshot"),
        "BENCH_ROLLBACK": "1" if loaded else "0",
        # as in production: a wide scope's report is never built in a web process
        "SNAPSHOT_PREPARE_REPORTS": "true",
        "BENCH_CHANGED": str(changed),
    }
    if not loaded:
        migrate(database_url, env)
        load = child("load", size, env)
        print(f"# loaded {size:,} patients in {float(load['wall_s']):.1f} s", flush=True)  # type: ignore[arg-type]
    rows = []
    for mode in modes:
        # filter_wait: every scope wider than a page may build, as at a large registry
        row = child(mode, size, {**env, "SNAPSHOT_INLINE_MAX_PATIENTS": "0"} if mode ==
                    "filter_wait" else env)  # fmt: skip
        row["size"] = size
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    """Parse options, measure each size, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    parser.add_argument("--database-url", help="an already loaded database (one size: label)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--snapshot-dir", default="", help="where snapshots go (default: the scratch data dir)"
    )
    parser.add_argument(
        "--changed", type=int, default=100, help="patients changed before the incremental refresh"
    )
    parser.add_argument(
        "--changed-clinics", type=int, default=0,
        help="the changed patients come from this many clinics only (default: every clinic)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ["BENCH_CHANGED_CLINICS"] = str(args.changed_clinics)  # the children inherit it
    rows: list[dict[str, object]] = []
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            if args.database_url:
                rows += measure(
                    size, args.database_url, scratch, loaded=True, modes=tuple(args.modes),
                    snapshot_dir=args.snapshot_dir, changed=args.changed,
                )  # fmt: skip
            elif args.sqlite:
                rows += measure(
                    size, f"sqlite:///{Path(scratch) / 'r.sqlite3'}", scratch,
                    modes=tuple(args.modes), changed=args.changed,
                )  # fmt: skip
            else:
                with scratch_database(args.admin_url) as url:
                    rows += measure(
                        size, url, scratch, modes=tuple(args.modes), changed=args.changed
                    )
    print(f"\nanalysis snapshot ({engine}; floor = the direct columnar read a page ran before)")
    print(f"{'patients':>9} {'path':<20} {'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'x floor':>7}"
          "  detail")  # fmt: skip
    floor: dict[object, float] = {}
    for r in rows:
        if r["mode"] == "direct_deid":
            floor[r["size"]] = float(r["wall_s"])  # type: ignore[arg-type]
    for r in rows:
        wall = float(r["wall_s"])  # type: ignore[arg-type]
        ratio = wall / floor[r["size"]] if floor.get(r["size"]) else 1.0
        detail = ""
        steps = ("load", "tables", "warm", "report")
        if str(r["mode"]).startswith(("page_cached", "served")):
            steps = ("first", "repeat")
        if str(r["mode"]).startswith(("page", "served")):
            detail = ", ".join(
                f"{step} {float(r[step + '_s']):.2f} s ({float(r[step + '_cpu_s']):.2f} CPU)"  # type: ignore[arg-type]
                for step in steps
            )
        if r["mode"] == "refresh":
            detail = f"default reports before publishing {float(r['prepared_s']):.2f} s"  # type: ignore[arg-type]
            if "published_s" in r:
                detail += f", published after {float(r['published_s']):.2f} s"  # type: ignore[arg-type]
            detail += f" ({r['scopes']} scopes in all); steps {r.get('steps', {})}"
        if str(r["mode"]).startswith("served"):
            detail += f", frames loaded: {r['frames_loaded']}"
        if r["mode"] == "filter_wait":
            detail = (
                "; ".join(
                    f"{name}: {r[name + '_asked']}, ready after {float(r[name + '_ready_s']):.2f} s, "  # type: ignore[arg-type]
                    f"then shown in {float(r[name + '_shown_s']):.3f} s ({r[name + '_patients']} patients)"  # type: ignore[arg-type]
                    for name in ("cold", "warm")
                )
                + " (a researcher's new filter: asked of the worker, polled, shown)"
            )
        if r["mode"] == "incremental":
            read: dict[str, object] = r["read"]  # type: ignore[assignment]
            detail = (
                f"{read['kind']} read of {read['patients_reread']} patients {read['seconds']} s; "
                f"default reports before publishing {float(r['prepared_s']):.2f} s, "  # type: ignore[arg-type]
                f"published after {float(r['published_s']):.2f} s; "  # type: ignore[arg-type]
                f"{r['carried']} of {r['scopes']} scopes' reports carried over; "
                f"decision-aid sums of {r.get('cell_clinics')} clinics computed; "
                f"steps {r['steps']}"
            )
        print(f"{r['size']:>9,} {r['mode']:<20} {wall:>7.2f} {float(r['cpu_s']):>6.2f} "  # type: ignore[arg-type]
              f"{float(r['peak_rss_mb']):>8.0f} {ratio:>7.2f}  {detail}")  # type: ignore[arg-type]  # fmt: skip


if __name__ == "__main__":
    main()
