"""Benchmark: every staff page and API list endpoint against a loaded registry database.

Usage (the 1,000,000-patient figures in BENCHMARKS.md; load once, keep, measure, drop):

    python bench/bench_load.py --sizes 1000000 \
        --database-url postgres://postgres:postgres@127.0.0.1:5432/vertebra_million_1m
    python bench/bench_pages.py --repeat 20 \
        --database-url postgres://postgres:postgres@127.0.0.1:5432/vertebra_million_1m

    python bench/bench_pages.py --patients 2000 --repeat 3     # scratch PostgreSQL database
    python bench/bench_pages.py --patients 300 --sqlite        # scratch SQLite file

How: **in-process, through Django's test client** (the whole middleware stack: sessions, CSRF,
authentication, MFA, throttling switched off, audit in the same transaction; URL routing,
templates and JSON rendering), not against a running server over HTTP. Why: the figure asked
for is the server's time per page; a loopback HTTP client on the same 2 cores would add its
own CPU and the server's thread scheduling to every figure (about 1 ms per request with
gunicorn, reference/performance.md), and in-process the page's own SQL can be captured and
replayed for the floor. Sign-in is ``force_login`` (no password hashing per run); the API uses
a real bearer token issued to the same account.

Who: the demo's accounts (``ensure_demo_accounts``: clinic roles at the first clinic, registry
admin and researcher registry-wide), the loader's clinician and coordinator of the **biggest**
clinic, and a "network" account holding the clinician, coordinator and clinic-admin roles at
**every** clinic, so its patient list, worklists and API see all patients (the worst case for
counting, searching and deep paging). The accounts are created once in the database (audited
like the demo's) and reused on the next run.

Before the pages, the analysis snapshot is refreshed as ``vertebra worker`` does (the
dashboards, the trajectory's median and the public directory's figures read it; its time is
printed; ``--no-snapshot`` leaves it out, and those pages then say "being prepared"). The
public directory's pages are requested signed out, with the first and the biggest clinic
published (by the network account as clinic admin, audited).

Each page is requested once to warm up, then ``--repeat`` times; p50/p95/max are of those
wall times. Beside them, the **floor**: the page's own SELECT statements (captured on one more
request) replayed directly on the same connection, each the median of 3 runs, summed; and the
slowest single statement. The page's time minus the floor is what Django, Python and the
template cost. ``--explain`` prints EXPLAIN ANALYZE of each page's slowest statement
(PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Pages whose figure is one request only unless ``--all-repeat`` (they were full reads of
#: the scope before the analysis snapshot, issue 17).
SLOW = ("dashboard", "trajectory")
#: The user of a public page's target (no sign-in).
ANONYMOUS = "anonymous"


@dataclass
class Target:
    """One page to measure: who asks, as which role, for what."""

    name: str
    user: str
    role: str
    path: str
    api: bool = False  # send the user's bearer token (JSON API) instead of the session


@dataclass
class Figure:
    """Timings of one page (milliseconds)."""

    target: Target
    times: list[float] = field(default_factory=list)
    status: int = 0
    queries: int = 0
    floor_ms: float | None = None
    slowest_ms: float | None = None
    slowest_sql: str = ""

    def pct(self, q: float) -> float:
        """The ``q`` quantile of the timings (nearest rank)."""
        ordered = sorted(self.times)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def configure(database_url: str, data_dir: str) -> None:
    """Set up Django on ``database_url`` with the demo's profile (no MFA prompt, local hosts)
    and no API throttle (the figure is the page's cost, not the limiter's)."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "vertebra.settings",
            "DATABASE_URL": database_url,
            "VERTEBRA_ENV": "demo",
            "VERTEBRA_DATA_DIR": data_dir,
            "THROTTLE_ENABLED": "false",
            "DEBUG": "false",
        }
    )
    import django

    django.setup()


def _network_user(roles: tuple[str, ...]) -> Any:
    """The bench's account holding ``roles`` at every clinic (created once, audited)."""
    from django.contrib.auth.models import User
    from django.db import transaction

    from vertebra.registry.audit import record_audit
    from vertebra.registry.models import Clinic, Membership
    from vertebra.registry.permissions import Actor

    user, _ = User.objects.get_or_create(username="bench-network")
    clinic_ids = list(Clinic.objects.values_list("id", flat=True))
    with transaction.atomic():
        for role in roles:
            held = set(
                Membership.objects.filter(user=user, role=role).values_list("clinic_id", flat=True)
            )
            missing = [cid for cid in clinic_ids if cid not in held]
            if not missing:
                continue
            Membership.objects.bulk_create(
                [Membership(user=user, role=role, clinic_id=cid) for cid in missing]
            )
            system = User.objects.get_or_create(
                username="demo-setup", defaults={"is_active": False}
            )
            record_audit(
                actor=Actor(system[0], "system", frozenset(), request_id="bench-pages"),
                action="create",
                object_type="membership",
                new_values={"user": user.username, "role": role, "clinics": len(missing)},
                reason="bench_pages.py: a network account at every clinic",
            )
    return user


def prepare() -> tuple[dict[str, Any], list[Target]]:
    """Accounts and the pages to measure, with realistic search terms from the data."""
    from django.contrib.auth.models import User
    from django.db.models import Count

    from vertebra.directory.services import set_published
    from vertebra.registry.models import AdverseEvent, Clinic, Patient
    from vertebra.registry.permissions import Actor
    from vertebra.registry.services import issue_api_token
    from vertebra.registry.views import PAGE_SIZE
    from vertebra.web.services.demo import ensure_demo_accounts

    ensure_demo_accounts()
    network = _network_user(("coordinator", "clinician", "clinic_admin"))
    first = Clinic.objects.order_by("id").values_list("id", flat=True).first()
    big = (
        Patient.objects.values("clinic_id")
        .annotate(n=Count("id"))
        .order_by("-n", "clinic_id")
        .values_list("clinic_id", "n")
        .first()
    )
    assert first is not None and big is not None, "load a cohort first"
    total = Patient.objects.count()
    users = {u.username: u for u in User.objects.filter(username__in=[
        "clinician", "coordinator", "clinicadmin", "admin", "researcher",
        f"clinician-c{big[0]}", f"coordinator-c{big[0]}"])}  # fmt: skip
    users["network"] = network
    users["clinician@big"] = users.pop(f"clinician-c{big[0]}")
    users["coordinator@big"] = users.pop(f"coordinator-c{big[0]}")
    tokens = {
        f"{key}/{role}": issue_api_token(
            actor=Actor.for_user(users[key], role), name="bench_pages", days=1
        )[1]
        for key, role in (("network", "coordinator"), ("clinician@big", "clinician"))
    }
    # A patient of the first clinic with the most recorded events (a full record page), and
    # search terms drawn from the data: a common family name, an MRN and its prefix.
    sample = (
        Patient.objects.filter(clinic_id=first)
        .annotate(n=Count("adverse_events"))
        .order_by("-n", "id")
        .values_list("id", "family_name", "mrn")
        .first()
    )
    assert sample is not None
    pid, family, mrn = sample
    publish = Actor.for_user(network, "clinic_admin")
    for clinic_id in dict.fromkeys((first, big[0])):  # the directory's pages have clinics
        set_published(actor=publish, clinic_id=clinic_id, published=True)
    big_pid = (
        Patient.objects.filter(clinic_id=big[0]).order_by("id").values_list("id", flat=True).first()
    )
    ae = AdverseEvent.objects.filter(patient_id=pid).values_list("id", flat=True).first()
    last_page = max(1, math.ceil(total / PAGE_SIZE))
    deep_page = max(1, min(2000, last_page // 2))
    fragment = family[1:4].lower()  # part of a name: matches many names
    info = {"patients": total, "first_clinic": first, "big_clinic": big[0],
            "big_clinic_patients": big[1], "sample_patient": pid, "family": family,
            "mrn": mrn, "fragment": fragment, "tokens": tokens,
            "big_clinic_patient": big_pid}  # fmt: skip
    t = Target
    pages = [
        # patient list (HTML): one clinic, the biggest clinic, every clinic
        t("list first page (demo clinician)", "clinician", "clinician", "/clinic/"),
        t("list first page (big clinic)", "coordinator@big", "coordinator", "/clinic/"),
        t("list first page (network)", "network", "coordinator", "/clinic/"),
        t("list search family name (network)", "network", "coordinator", f"/clinic/?q={family}"),
        t("list search name part (network)", "network", "coordinator", f"/clinic/?q={fragment}"),
        t("list search MRN (network)", "network", "coordinator", f"/clinic/?q={mrn}"),
        t("list search MRN prefix (network)", "network", "coordinator", f"/clinic/?q={mrn[:-3]}"),
        t("list search no match (network)", "network", "coordinator", "/clinic/?q=zzqqxx"),
        t(f"list page {deep_page} (network)", "network", "coordinator",
          f"/clinic/?page={deep_page}"),
        t(f"list last page {last_page} (network)", "network", "coordinator",
          f"/clinic/?page={last_page}"),
        t("list filter arm (network)", "network", "coordinator", "/clinic/?arm=bmac"),
        # one patient
        t("patient record", "clinician", "clinician", f"/clinic/patients/{pid}/"),
        t("patient record (network)", "network", "clinician", f"/clinic/patients/{pid}/"),
        # worklists / homes
        t("home clinician (demo)", "clinician", "clinician", "/clinic/home/"),
        t("home clinician (big clinic)", "clinician@big", "clinician", "/clinic/home/"),
        t("home clinician (network)", "network", "clinician", "/clinic/home/"),
        t("home coordinator (demo)", "coordinator", "coordinator", "/clinic/home/"),
        t("home coordinator (network)", "network", "coordinator", "/clinic/home/"),
        t("home clinic admin (demo)", "clinicadmin", "clinic_admin", "/clinic/home/"),
        t("home clinic admin (network)", "network", "clinic_admin", "/clinic/home/"),
        t("home registry admin", "admin", "registry_admin", "/clinic/home/"),
        t("home researcher", "researcher", "researcher", "/clinic/home/"),
        t("adjudication queue (network)", "network", "clinician", "/clinic/adverse-events/"),
        # JSON API
        t("api patients first (network)", "network", "coordinator", "/api/v1/patients", True),
        t("api patients search (network)", "network", "coordinator",
          f"/api/v1/patients?search={family}", True),
        t("api patients offset 50000 (network)", "network", "coordinator",
          "/api/v1/patients?offset=50000", True),
        t("api patients last (network)", "network", "coordinator",
          f"/api/v1/patients?offset={max(0, total - 25)}", True),
        t("api patients sort -created (network)", "network", "coordinator",
          "/api/v1/patients?sort=-created", True),
        t("api patient (network)", "network", "coordinator", f"/api/v1/patients/{pid}", True),
        t("api patient episodes", "network", "coordinator",
          f"/api/v1/patients/{pid}/episodes", True),
        t("api adverse-events queue (big clinic)", "clinician@big", "clinician",
          "/api/v1/adverse-events", True),
        # FHIR search (session auth, as a signed-in clinician's app would)
        t("fhir Patient (network)", "network", "coordinator", "/fhir/Patient"),
        t("fhir Patient _offset 50000 (network)", "network", "coordinator",
          "/fhir/Patient?_offset=50000"),
        t("fhir Patient identifier (network)", "network", "coordinator",
          f"/fhir/Patient?identifier={mrn}"),
        t("fhir Patient _lastUpdated (network)", "network", "coordinator",
          "/fhir/Patient?_lastUpdated=ge2026-11-01"),
        t("fhir Observation patient=", "network", "coordinator",
          f"/fhir/Observation?patient=Patient/{pid}"),
        t("fhir Observation (network)", "network", "coordinator", "/fhir/Observation"),
        t("fhir QuestionnaireResponse (network)", "network", "coordinator",
          "/fhir/QuestionnaireResponse"),
        t("fhir Procedure (network)", "network", "coordinator", "/fhir/Procedure"),
        t("fhir Condition (network)", "network", "coordinator", "/fhir/Condition"),
        t("fhir AdverseEvent (network)", "network", "coordinator", "/fhir/AdverseEvent"),
        # dashboards: measured as they are (being moved to an analysis snapshot elsewhere)
        t("dashboard clinic (demo clinician)", "clinician", "clinician", "/clinic/outcomes/"),
        t("trajectory (demo clinician)", "clinician", "clinician",
          f"/clinic/outcomes/patient/{pid}/"),
        t("trajectory (big clinic)", "clinician@big", "clinician",
          f"/clinic/outcomes/patient/{big_pid}/"),
        t("trajectory (network)", "network", "clinician", f"/clinic/outcomes/patient/{pid}/"),
        t("dashboard researcher", "researcher", "researcher", "/clinic/outcomes/"),
        # the public clinic directory (figures from the snapshot; published clinics below)
        t("directory list (public)", ANONYMOUS, "", "/clinics/"),
        t("directory clinic (public)", ANONYMOUS, "", f"/clinics/{first}/"),
    ]  # fmt: skip
    if ae is not None:
        pages.append(t("api patient adverse-events", "network", "coordinator",
                       f"/api/v1/patients/{pid}/adverse-events", True))  # fmt: skip
    return {"users": users, **info}, pages


def _client(info: dict[str, Any], target: Target) -> tuple[Any, dict[str, str]]:
    """A test client signed in as ``target``'s user in ``target``'s role (or its API headers)."""
    from django.test import Client

    from vertebra.registry.views import SESSION_ROLE

    client = Client(HTTP_HOST="127.0.0.1")
    if target.user == ANONYMOUS:  # a public page: no sign-in
        return client, {}
    if target.api:
        token = info["tokens"][f"{target.user}/{target.role}"]
        return client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.force_login(info["users"][target.user])
    session = client.session
    session[SESSION_ROLE] = target.role
    session.save()
    return client, {}


def _replay(statements: list[str]) -> tuple[float, float, str]:
    """Replay the SELECTs (3 runs each, median) in a rolled-back transaction: (sum ms, slowest
    ms, slowest statement)."""
    from django.db import connection, transaction

    total, slowest, slowest_sql = 0.0, 0.0, ""
    with transaction.atomic():
        for sql in statements:
            runs = []
            for _ in range(3):
                with connection.cursor() as cursor:
                    started = time.perf_counter()
                    cursor.execute(sql)
                    cursor.fetchall()
                    runs.append((time.perf_counter() - started) * 1000)
            ms = statistics.median(runs)
            total += ms
            if ms > slowest:
                slowest, slowest_sql = ms, sql
        transaction.set_rollback(True)
    return total, slowest, slowest_sql


def _selects(captured: list[dict[str, str]]) -> list[str]:
    """The read statements of a captured request (no writes, locks or savepoints)."""
    keep = []
    for query in captured:
        sql = query["sql"]
        if not re.match(r"\s*SELECT\b", sql, re.I) or re.search(
            r"FOR UPDATE|pg_advisory|nextval", sql, re.I
        ):
            continue
        keep.append(sql)
    return keep


def measure(info: dict[str, Any], target: Target, repeat: int, explain: bool) -> Figure:
    """Time ``target`` ``repeat`` times after one warm-up; then capture and replay its SQL."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client, headers = _client(info, target)
    figure = Figure(target)
    response = client.get(target.path, **headers)  # warm-up (and status check)
    figure.status = response.status_code
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(target.path, **headers)
        figure.times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get(target.path, **headers)
    figure.queries = len(captured.captured_queries)
    try:
        floor, slowest, sql = _replay(_selects(captured.captured_queries))
        figure.floor_ms, figure.slowest_ms, figure.slowest_sql = floor, slowest, sql
    except Exception as exc:  # a statement Django logged but cannot be replayed verbatim
        figure.slowest_sql = f"(replay failed: {exc})"
    if explain and sql and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        print(f"--- {target.name}: slowest statement\n{sql[:2000]}\n{plan}\n", file=sys.stderr)
    return figure


def report(figures: list[Figure], info: dict[str, Any], engine: str, load: str) -> None:
    """Print the table: each page's p50/p95/max beside its SQL floor."""
    print(
        f"pages at {info['patients']:,} patients ({engine}; in-process test client; "
        f"biggest clinic {info['big_clinic_patients']:,} patients; {load})"
    )
    print(f"{'page':<42} {'status':>6} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'queries':>7} {'SQL floor':>9} {'slowest q':>9}")  # fmt: skip
    for f in figures:
        floor = "-" if f.floor_ms is None else f"{f.floor_ms:.1f}"
        slow = "-" if f.slowest_ms is None else f"{f.slowest_ms:.1f}"
        print(f"{f.target.name[:42]:<42} {f.status:>6} {len(f.times):>3} {f.pct(0.5):>8.1f} "
              f"{f.pct(0.95):>8.1f} {max(f.times):>8.1f} {f.queries:>7} {floor:>9} {slow:>9}")  # fmt: skip
    print("SQL floor: the page's own SELECTs replayed directly (median of 3 each), summed; "
          "slowest q: the slowest of them")  # fmt: skip


def run(args: argparse.Namespace, database_url: str, data_dir: str) -> None:
    """Measure every selected page on ``database_url`` and print the table (and JSON)."""
    configure(database_url, data_dir)
    from django.db import connection

    info, pages = prepare()
    if not args.no_snapshot:
        # what `vertebra worker` does before the pages are used: the analysis snapshot and
        # the default results of every scope (dashboards, median paths, directory figures)
        from vertebra.outcomes import snapshot

        started = time.perf_counter()
        outcome = snapshot.refresh().outcome
        took = time.perf_counter() - started
        print(f"  analysis snapshot ({outcome}, the worker's refresh): {took:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    only = re.compile(args.only) if args.only else None
    skip = re.compile(args.skip) if args.skip else None
    figures = []
    for target in pages:
        if (only and not only.search(target.name)) or (skip and skip.search(target.name)):
            continue
        repeat = 1 if any(s in target.name for s in SLOW) and not args.all_repeat else args.repeat
        figure = measure(info, target, repeat, args.explain)
        figures.append(figure)
        print(f"  {target.name}: p50 {figure.pct(0.5):.1f} ms", file=sys.stderr, flush=True)
    load = f"load {os.getloadavg()[0]:.1f}"
    report(figures, info, connection.vendor, load)
    bad = [f.target.name for f in figures if f.status != 200]
    if args.json:
        rows = [
            {"name": f.target.name, "path": f.target.path, "status": f.status, "n": len(f.times),
             "p50": round(f.pct(0.5), 1), "p95": round(f.pct(0.95), 1),
             "max": round(max(f.times), 1), "queries": f.queries, "floor": f.floor_ms,
             "slowest": f.slowest_ms}
            for f in figures
        ]  # fmt: skip
        Path(args.json).write_text(
            json.dumps({"patients": info["patients"], "load": load, "pages": rows}, indent=1)
        )
    if bad:
        print(f"NOT 200: {bad}")
        sys.exit(1)


def load_scratch(patients: int, database_url: str, data_dir: str) -> None:
    """Migrate and load ``patients`` into ``database_url`` (bench_load.py's child, ANALYZEd)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_load import migrate, run_one

    migrate(database_url, data_dir)
    run_one(patients, database_url, data_dir)
    if database_url.startswith("postgres"):
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")


def main() -> None:
    """Parse options; measure a kept database, or load a scratch one first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an already loaded database (kept)")
    parser.add_argument("--patients", type=int, default=300, help="scratch load size")
    parser.add_argument("--sqlite", action="store_true", help="scratch SQLite instead of PG")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE (scratch runs)",
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--all-repeat", action="store_true", help="repeat the slow pages too")
    parser.add_argument("--only", help="regex: measure only pages whose name matches")
    parser.add_argument("--skip", help="regex: skip pages whose name matches")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE (stderr)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="no worker refresh first: the snapshot's pages say their figures are being prepared",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        if args.database_url:
            run(args, args.database_url, data_dir)
            return
        if args.sqlite:
            url = f"sqlite:///{Path(data_dir) / 'pages.sqlite3'}"
            load_scratch(args.patients, url, data_dir)
            run_child(args, url, data_dir)
            return
        sys.path.insert(0, str(Path(__file__).parent))
        from scratch import scratch_databases

        with scratch_databases(args.admin_url, 1) as (url,):
            load_scratch(args.patients, url, data_dir)
            run_child(args, url, data_dir)


def run_child(args: argparse.Namespace, url: str, data_dir: str) -> None:
    """Measure in a child process (so the scratch database can be dropped once it exits)."""
    argv = [a for a in sys.argv[1:]]
    cmd = [sys.executable, __file__, *argv, "--database-url", url]
    subprocess.run(cmd, check=True, env={**os.environ, "VERTEBRA_DATA_DIR": data_dir})


if __name__ == "__main__":
    main()
