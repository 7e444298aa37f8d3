"""Server time of every portal request of one patient's journey, in-process (no HTTP).

Seeds ``--links`` patients with a baseline link (``bench_portal_concurrency.seed_links``), then
walks each through the portal with Django's test client, as a browser does: open the link,
page 1 (GET, CSRF token), one POST per screen, the review page, the submit, the confirmation.
Per request kind it prints the median and p95 wall time, the app process's CPU time and the
SQL statements (session load and save included: the whole middleware stack runs). The audit
sealer, which runs once a response has gone out (ADR 0021 §7), is timed apart ("sealer
after"); before that change it ran inside the submit and is counted there. Settings
are the ``demo`` profile's (DEBUG off), as ``vertebra serve`` in the concurrency benchmark.

``--profile FILE`` also writes a cProfile of the timed requests (``python -m pstats FILE``);
``--only submit`` profiles only that request kind.

Usage (the database of ``DATABASE_URL``; migrates it)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vertebra_bench \\
        nice -n 19 python bench/bench_portal_requests.py --links 60
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=60)
    parser.add_argument("--profile", default="", help="write a cProfile of the timed requests")
    parser.add_argument("--only", default="", help="profile only this request kind")
    args = parser.parse_args()
    os.environ.setdefault("VERTEBRA_ENV", "demo")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
    import django

    django.setup()
    import re

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench_portal_concurrency import _CSRF_RE, _KEY_RE, _answers, seed_links
    from vertebra.followup.screens import plan
    from vertebra.registry import audit

    call_command("migrate", verbosity=0)
    links = seed_links(args.links)
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, list[int]] = defaultdict(list)
    profiler = cProfile.Profile() if args.profile else None

    # The audit sealer runs once the response has gone out (ADR 0021 §7); the test client
    # sends ``request_finished`` inside its call, so its time is measured and reported apart.
    sealer: list[tuple[float, float, int]] = []  # (wall, CPU, statements before it) per run
    seal_now = getattr(audit, "_seal_now", None)
    captured_now: list[CaptureQueriesContext] = []

    def timed_seal() -> None:
        before = len(captured_now[-1].captured_queries) if captured_now else 0
        started, cpu_started = time.perf_counter(), time.process_time()
        seal_now()  # type: ignore[misc]
        sealer.append((time.perf_counter() - started, time.process_time() - cpu_started, before))

    if seal_now is not None:
        audit._seal_now = timed_seal

    def timed(kind: str, call: object, *a: object, **kw: object) -> object:
        profile = profiler is not None and (not args.only or args.only == kind)
        sealer.clear()
        with CaptureQueriesContext(connection) as captured:
            captured_now.append(captured)
            started, cpu_started = time.perf_counter(), time.process_time()
            if profile:
                profiler.enable()  # type: ignore[union-attr]
            response = call(*a, **kw)  # type: ignore[operator]
            if profile:
                profiler.disable()  # type: ignore[union-attr]
            ended = time.perf_counter()
            cpu_used = time.process_time() - cpu_started
            captured_now.pop()
        total = len(captured.captured_queries)
        if sealer:  # after the response: not the client's wait
            seal_wall, seal_cpu, before = sealer[0]
            wall["sealer after"].append(seal_wall)
            cpu["sealer after"].append(seal_cpu)
            queries["sealer after"].append(total - before)
            ended -= seal_wall
            cpu_used -= seal_cpu
            total = before
        cpu[kind].append(cpu_used)
        wall[kind].append(ended - started)
        queries[kind].append(total)
        return response

    for link in links:
        client = Client(enforce_csrf_checks=True)
        opened = timed("open link", client.get, f"/p/open/?t={link.token}")
        assert opened.status_code == 302, opened.status_code
        first = timed("page GET", client.get, "/p/q/1/")
        match = _CSRF_RE.search(first.content.decode())
        assert match is not None, first.status_code
        csrf = match.group(1)
        for screen in plan(link.instruments):
            answers = _answers(screen.instrument_id)
            data = {"csrfmiddlewaretoken": csrf}
            data.update({k: answers[k] for k in screen.item_ids if k in answers})
            page = timed("page POST", client.post, f"/p/q/{screen.number}/", data)
            assert page.status_code == 302, (screen.number, page.status_code)
        review = timed("review GET", client.get, "/p/q/review/")
        key = _KEY_RE.search(review.content.decode())
        assert key is not None
        form = {"csrfmiddlewaretoken": csrf, "idempotency_key": key.group(1)}
        sent = timed("submit POST", client.post, "/p/q/submit/", form)
        assert sent.status_code == 303, sent.status_code
        ref = re.search(r"ref=(\w+)", sent["Location"])
        assert ref is not None
        replay = timed("submit replay", client.post, "/p/q/submit/", form)
        assert replay["Location"] == sent["Location"]
        done = timed("done GET", client.get, sent["Location"])
        assert done.status_code == 200

    print(
        f"database: {settings.DATABASE_DESCRIPTION}; {len(links)} journeys; DEBUG {settings.DEBUG}"
    )
    print(f"{'request':<15} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'CPU ms':>8} {'queries':>8}")
    journey = 0.0
    for kind, times in wall.items():
        times.sort()
        per_journey = len(times) / len(links)
        journey += per_journey * statistics.median(cpu[kind])
        print(
            f"{kind:<15} {len(times):>5} {1000 * statistics.median(times):>10.2f} "
            f"{1000 * times[int(0.95 * (len(times) - 1))]:>8.2f} "
            f"{1000 * statistics.median(cpu[kind]):>8.2f} "
            f"{statistics.median(queries[kind]):>8.0f}"
        )
    print(f"app CPU per journey (medians x requests): {1000 * journey:.1f} ms")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
