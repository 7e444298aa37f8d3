"""Concurrent questionnaire submissions against a live Vertebra server on loopback.

Each client loops until the deadline: takes the next pre-issued patient link, opens it (token →
session), answers every page, fetches the send page (idempotency key) and POSTs the submission
(the timed request). One submission in ten is immediately sent again with the same key, as a
double click or retry would, and must get the same acknowledgement. Afterwards every
acknowledgement is checked against the database:

* each 303 acknowledgement (``ref=<reference>``) maps to exactly one stored submission, for the
  time point whose link the client used, with one response per instrument;
* no time point has two submissions, no 5xx was returned, no replay got a different answer.

Usage (PostgreSQL; starts ``vertebra serve`` itself on a free port)::

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/vertebra_bench \\
        python bench/bench_portal_concurrency.py --clients 20 --seconds 30

``--server-cpus 0 --client-cpus 1`` pins the server (``taskset``) and the load generator
(``sched_setaffinity``) to their own cores, so that the clients' Python does not queue the
server's requests behind it (PostgreSQL is not pinned).

``--write-results`` also writes bench/RESULTS-portal.md. ``run_benchmark`` is imported by
``tests/followup/test_bench_small.py``, which runs a small version against the test server.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')
_CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Link:
    """A pre-issued link: the raw token and the time point it opens."""

    token: str
    time_point_id: int
    instruments: list[str]


@dataclass
class Outcome:
    """What the clients saw."""

    acks: list[tuple[int, str]] = field(default_factory=list)  # (time point id, reference)
    latencies: list[float] = field(default_factory=list)  # seconds, timed submit POSTs
    replays: int = 0
    replay_mismatches: int = 0
    server_errors: int = 0
    other_failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _answers(instrument_id: str) -> dict[str, str]:
    """A valid answer to every question of ``instrument_id`` (the first option, or a number)."""
    from vertebra.core.instruments import get_definition

    if instrument_id == "psfs":  # the patient names one activity (baseline) and rates it
        return {"name_1": "Walking for 30 minutes", "activity_1": "4"}
    answers: dict[str, str] = {}
    for item in get_definition(instrument_id).items:
        if item.type == "number":
            continue  # the only number item (opioid dose) is asked only after a "yes"
        if item.optional:
            continue
        code = item.options[0].code
        answers[item.id] = str(code)
    return answers


def _client(base: str, links: deque[Link], deadline: float, out: Outcome, n: int) -> None:
    import requests

    from vertebra.followup.screens import plan

    while time.monotonic() < deadline:
        try:
            link = links.popleft()
        except IndexError:
            return  # seeded links used up
        session = requests.Session()
        try:
            opened = session.get(f"{base}/p/open/?t={link.token}", allow_redirects=False)
            if opened.status_code != 302:
                raise RuntimeError(f"open link: HTTP {opened.status_code}")
            first = session.get(f"{base}/p/q/1/")
            csrf_match = _CSRF_RE.search(first.text)
            if csrf_match is None:
                raise RuntimeError(f"no CSRF token on page 1: HTTP {first.status_code}")
            csrf = csrf_match.group(1)
            for screen in plan(link.instruments):
                # The portal's own screen plan: a long instrument (the ODI) is one question
                # per screen, so screens and instruments are not one to one.
                answers = _answers(screen.instrument_id)
                page = session.post(
                    f"{base}/p/q/{screen.number}/",
                    data={
                        "csrfmiddlewaretoken": csrf,
                        **{key: answers[key] for key in screen.item_ids if key in answers},
                    },
                    allow_redirects=False,
                )
                number = screen.number
                if page.status_code != 302:
                    raise RuntimeError(f"page {number}: HTTP {page.status_code}")
            review = session.get(f"{base}/p/q/review/")
            key_match = _KEY_RE.search(review.text)
            if key_match is None:
                raise RuntimeError("no idempotency key on the send page")
            form = {"csrfmiddlewaretoken": csrf, "idempotency_key": key_match.group(1)}
            started = time.perf_counter()
            sent = session.post(f"{base}/p/q/submit/", data=form, allow_redirects=False)
            latency = time.perf_counter() - started
            replay = None
            if n % 10 == 0:
                replay = session.post(f"{base}/p/q/submit/", data=form, allow_redirects=False)
        except Exception as exc:  # network errors are reported, never hidden
            with out.lock:
                out.other_failures.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        finally:
            n += 1
        with out.lock:
            out.latencies.append(latency)
            if sent.status_code >= 500:
                out.server_errors += 1
            elif sent.status_code == 303 and "ref=" in sent.headers.get("Location", ""):
                reference = sent.headers["Location"].split("ref=", 1)[1]
                out.acks.append((link.time_point_id, reference))
            else:
                out.other_failures.append(f"submit: HTTP {sent.status_code}")
            if replay is not None:
                out.replays += 1
                if replay.status_code >= 500:
                    out.server_errors += 1
                if replay.headers.get("Location") != sent.headers.get("Location"):
                    out.replay_mismatches += 1


def run_benchmark(base: str, links: list[Link], clients: int, seconds: float) -> Outcome:
    """Run ``clients`` concurrent clients for at most ``seconds`` against ``base``."""
    queue: deque[Link] = deque(links)
    out = Outcome()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(base, queue, deadline, out, i))
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    out.elapsed = time.perf_counter() - started
    return out


def verify(out: Outcome, links: list[Link]) -> dict[str, Any]:
    """Check every acknowledgement against the database; return the findings."""
    from django.db.models import Count

    from vertebra.followup.models import QuestionnaireResponse, Submission

    used = [link.time_point_id for link in links]
    stored = {
        s.reference: s
        for s in Submission.objects.filter(time_point_id__in=used).annotate(n=Count("responses"))
    }
    counts = dict(
        Submission.objects.filter(time_point_id__in=used)
        .values_list("time_point_id")
        .annotate(c=Count("id"))
        .values_list("time_point_id", "c")
    )
    by_point = {link.time_point_id: link for link in links}
    lost = [ref for _, ref in out.acks if ref not in stored]
    wrong_point = [ref for tp, ref in out.acks if ref in stored and stored[ref].time_point_id != tp]
    partial = [
        ref
        for tp, ref in out.acks
        if ref in stored and getattr(stored[ref], "n", 0) != len(by_point[tp].instruments)
    ]
    return {
        "acknowledged": len(out.acks),
        "distinct_acknowledged": len(set(out.acks)),
        "lost": len(lost),
        "wrong_time_point": len(wrong_point),
        "partial": len(partial),
        "duplicated_time_points": sum(1 for c in counts.values() if c > 1),
        "stored": len(stored),
        "responses": QuestionnaireResponse.objects.filter(time_point_id__in=used).count(),
    }


def figures(out: Outcome) -> dict[str, float]:
    """Throughput (acknowledged submissions per second) and latency percentiles (ms)."""
    lat = sorted(out.latencies)

    def pct(p: float) -> float:
        if not lat:
            return float("nan")
        return 1000 * lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

    return {
        "throughput": len(out.acks) / out.elapsed if out.elapsed else 0.0,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "mean": 1000 * statistics.fmean(lat) if lat else float("nan"),
    }


def seed_links(count: int) -> list[Link]:
    """``count`` patients treated today, each with a schedule and a link to their baseline."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from vertebra.followup.models import FollowUpTimePoint
    from vertebra.followup.services import create_schedule_for_episode, issue_link
    from vertebra.registry.models import Clinic, Membership, Patient, Role, TreatmentEpisode
    from vertebra.registry.permissions import Actor

    today = timezone.localdate()
    stamp = f"{time.time_ns()}"
    clinic = Clinic.objects.create(name=f"Bench clinic {stamp}")
    user = User.objects.create(username=f"bench-{stamp}")
    Membership.objects.create(user=user, clinic=clinic, role=Role.COORDINATOR)
    actor = Actor.for_user(user, Role.COORDINATOR)
    links = []
    for i in range(count):
        patient = Patient.objects.create(
            clinic=clinic,
            mrn=f"B{stamp[-8:]}{i:06d}",
            given_name="Bench",
            family_name=f"Patient {i}",
            date_of_birth=today.replace(year=today.year - 50),
            sex="unknown",
            email=f"bench{i}@example.org",
        )
        episode = TreatmentEpisode.objects.create(
            patient=patient, arm="cell_therapy", start_date=today
        )
        schedule = create_schedule_for_episode(episode, actor, today)
        point = FollowUpTimePoint.objects.get(schedule=schedule, key="baseline")
        links.append(Link(issue_link(point, timezone.now()), point.pk, list(point.instruments)))
    return links


def _cpus(text: str) -> set[int]:
    """CPU numbers from ``0``, ``0,1`` or ``0-1`` (taskset's list form)."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _serve(port: int, workers: int, threads: int, cpus: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "VERTEBRA_ENV": "demo", "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    # ``--server-cpus``: the server and its workers (which inherit it) run on these CPUs only.
    pin = ["taskset", "-c", cpus] if cpus else []
    args = [*pin, sys.executable, "-m", "vertebra", "serve", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import requests

    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return server
        except requests.RequestException:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


def _write_results(command: str, args: argparse.Namespace, fig: dict[str, float],
                   check: dict[str, Any], out: Outcome, db: str) -> None:  # fmt: skip
    path = REPO / "bench" / "RESULTS-portal.md"
    cpus = os.cpu_count()
    path.write_text(
        f"""# Portal concurrency benchmark

Command (from the repository root):

```
{command}
```

Setup: `vertebra serve` (gunicorn, {args.workers} workers × {args.threads} threads) on
127.0.0.1, {db}, {cpus} CPU cores; {args.clients} concurrent clients for {args.seconds:g} s (bounded).
Each client opens a fresh patient link, answers the {len(_INSTRUMENTS_NOTE)} baseline pages and
sends; the timed request is the final submit POST. One in ten submissions is sent a second time
with the same idempotency key (a double click / retry) and must get the same acknowledgement.

| Figure | Value |
|---|---|
| Acknowledged submissions | {check["acknowledged"]} |
| Throughput (acknowledged submissions / s) | {fig["throughput"]:.1f} |
| Submit latency p50 / p95 / p99 (ms) | {fig["p50"]:.0f} / {fig["p95"]:.0f} / {fig["p99"]:.0f} |
| Replays with the same key (same acknowledgement) | {out.replays} ({out.replay_mismatches} mismatches) |
| 5xx responses | {out.server_errors} |
| Other client failures | {len(out.other_failures)} |
| Acknowledged but not stored (lost) | {check["lost"]} |
| Time points with more than one submission | {check["duplicated_time_points"]} |
| Acknowledgements mapped to the wrong time point | {check["wrong_time_point"]} |
| Stored submissions with missing instruments | {check["partial"]} |

Targets (security-reliability.md target 1): 0 lost, 0 duplicated, 0 5xx; p95 < 300 ms,
p99 < 800 ms. Throughput is bounded by the clients too: each submission needs
{len(_INSTRUMENTS_NOTE) + 3} requests, so the server handled about
{fig["throughput"] * (len(_INSTRUMENTS_NOTE) + 3):.0f} requests/s in total.
""",
        encoding="utf-8",
    )


_INSTRUMENTS_NOTE: list[str] = []


def _audit_after_run() -> bool:
    """Print how many audit rows the sealers after each commit left unsealed (ADR 0021: their
    try-lock skips when another sealer holds the lock; the worker seals those), then seal
    them and verify the trail. True when it verifies."""
    from vertebra.registry import audit

    if not hasattr(audit, "seal_pending"):  # before the sealer: one chain, nothing to seal
        return audit.check_audit_chain().intact
    from vertebra.registry.models import AuditEvent, AuditSeal

    rows, sealed = AuditEvent.objects.count(), AuditSeal.objects.count()
    late = audit.seal_pending(wait=True, full=True)
    report = audit.check_audit_chain()
    print(
        f"audit: {rows} rows, {rows - sealed} not sealed by the sealers after the commits "
        f"(sealed now: {late}); trail {'intact' if report.intact else 'NOT intact'}"
    )
    return report.intact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--links", type=int, default=0, help="links to seed (default: enough)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument(
        "--server-cpus", default="", help="run the server on these CPUs (taskset -c list)"
    )
    parser.add_argument(
        "--client-cpus",
        default="",
        help="run the load generator (this process) on these CPUs, e.g. 1 with --server-cpus 0",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    db = settings.DATABASE_DESCRIPTION
    call_command("migrate", verbosity=0)
    count = args.links or int(args.clients * args.seconds * 8)
    print(f"seeding {count} patient links on {db} ...", flush=True)
    links = seed_links(count)
    _INSTRUMENTS_NOTE[:] = links[0].instruments
    from tests.conftest import free_port

    port = free_port()
    server = _serve(port, args.workers, args.threads, args.server_cpus)
    if args.client_cpus:
        os.sched_setaffinity(0, _cpus(args.client_cpus))
    print(
        f"server CPUs {args.server_cpus or 'any'}, clients' CPUs {args.client_cpus or 'any'}; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    try:
        print(f"{args.clients} clients for {args.seconds:g} s against 127.0.0.1:{port} ...")
        out = run_benchmark(f"http://127.0.0.1:{port}", links, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    used = [link for link in links if link.token not in {x.token for x in []}]
    check = verify(out, used)
    fig = figures(out)
    print(
        f"acknowledged {check['acknowledged']} in {out.elapsed:.1f} s: "
        f"{fig['throughput']:.1f}/s; submit p50 {fig['p50']:.0f} ms, p95 {fig['p95']:.0f} ms, "
        f"p99 {fig['p99']:.0f} ms; 5xx {out.server_errors}; lost {check['lost']}; "
        f"duplicated {check['duplicated_time_points']}; replays {out.replays} "
        f"(mismatches {out.replay_mismatches}); other failures {len(out.other_failures)}"
    )
    for failure in out.other_failures[:5]:
        print("  failure:", failure)
    audit_ok = _audit_after_run()
    ok = (
        out.server_errors == 0
        and check["lost"] == 0
        and check["duplicated_time_points"] == 0
        and check["wrong_time_point"] == 0
        and check["partial"] == 0
        and out.replay_mismatches == 0
        and check["stored"] == check["distinct_acknowledged"]
        and audit_ok
    )
    if args.write_results:
        command = "DATABASE_URL=... python bench/bench_portal_concurrency.py " + " ".join(
            sys.argv[1:]
        )
        _write_results(command, args, fig, check, out, db)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
