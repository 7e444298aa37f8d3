"""Server time of one portal submission, in-process (no HTTP): median, p95, CPU, queries, lock hold.

Seeds ``--links`` patients with a baseline link (``bench_portal_concurrency.seed_links``),
then calls ``followup.services.submit_responses`` once per link, as the submit view does,
timing each call (wall clock, and the app process's CPU time, which a loaded machine
inflates less) and counting its SQL statements. ``lock hold`` is the time from the chain
lock (``registry.audit.lock_chain``) to the end of the call, i.e. how long this submission
keeps every other writer waiting (PostgreSQL; SQLite serialises writers anyway). With the
sealer (ADR 0021 step 2) the submit takes no chain lock: the figure printed instead is the
sealer that runs after its commit (``registry.audit.seal_pending``, its own short transaction
with a try-lock), which is part of the call's wall time and statements.

Usage (PostgreSQL or SQLite, the database of ``DATABASE_URL``; migrates it)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vertebra_bench \\
        nice -n 19 python bench/bench_submit.py --links 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from bench_portal_concurrency import _answers, seed_links
    from vertebra.followup import services
    from vertebra.registry import audit

    call_command("migrate", verbosity=0)
    links = seed_links(args.links)
    locked_at: list[float] = []
    # From the statement that takes the chain lock to the end of the call.
    if hasattr(audit, "_lock_and_read_head"):  # this branch: lock and head read in one trip
        original_head = audit._lock_and_read_head

        def timed_head() -> tuple[int, str]:
            locked_at.append(time.perf_counter())
            return original_head()

        audit._lock_and_read_head = timed_head
    else:  # main before ADR 0021
        original = audit.lock_chain

        def timed_lock() -> None:
            original()
            locked_at.append(time.perf_counter())

        audit.lock_chain = timed_lock  # type: ignore[assignment]
    sealer: list[tuple[float, float, int]] = []  # (start, end, statements) of each run
    if hasattr(audit, "seal_pending"):  # ADR 0021 step 2: the sealer after the commit
        original_seal = audit.seal_pending

        def timed_seal(**kwargs: object) -> int:
            before = len(connection.queries)
            started = time.perf_counter()
            try:
                return original_seal(**kwargs)  # type: ignore[arg-type]
            finally:
                sealer.append((started, time.perf_counter(), len(connection.queries) - before))

        audit.seal_pending = timed_seal  # type: ignore[assignment]
    seconds, holds, queries, cpu = [], [], [], []
    sealing, seal_queries = [], []
    for link in links:
        point = services.open_link(link.token, timezone.now())
        answers = {
            i: {k: int(v) for k, v in _answers(i).items() if not k.startswith("name_")}
            for i in link.instruments
        }
        locked_at.clear()
        sealer.clear()
        with CaptureQueriesContext(connection) as captured:
            started, cpu_started = time.perf_counter(), time.process_time()
            result = services.submit_responses(
                point,
                answers,
                uuid.uuid4().hex,
                timezone.now(),
                psfs_names=[_answers("psfs")["name_1"]],
            )
            ended = time.perf_counter()
            cpu.append(time.process_time() - cpu_started)
        assert result.created
        seconds.append(ended - started)
        holds.append(ended - locked_at[0] if locked_at else 0.0)
        queries.append(len(captured.captured_queries))
        sealing.append(sum(end - start for start, end, _ in sealer))
        seal_queries.append(sum(n for _, _, n in sealer))
    seconds_unsorted = list(seconds)
    seconds.sort()
    holds.sort()
    print(f"database: {settings.DATABASE_DESCRIPTION}; {len(seconds)} submissions")
    print(
        f"submit server time median {1000 * statistics.median(seconds):.2f} ms, "
        f"p95 {1000 * seconds[int(0.95 * (len(seconds) - 1))]:.2f} ms"
    )
    if hasattr(audit, "seal_pending"):
        until = sorted(total - seal for total, seal in zip(seconds_unsorted, sealing, strict=True))
        print(
            f"submit until its commit (the sealer after it excluded: in a web request it runs "
            f"once the response has gone out, ADR 0021 §7) median "
            f"{1000 * statistics.median(until):.2f} ms, p95 "
            f"{1000 * until[int(0.95 * (len(until) - 1))]:.2f} ms"
        )
        sealing.sort()
        print("chain lock held by the submit's transaction: none (ADR 0021 step 2)")
        print(
            f"sealer after the commit (included above) median "
            f"{1000 * statistics.median(sealing):.2f} ms, "
            f"p95 {1000 * sealing[int(0.95 * (len(sealing) - 1))]:.2f} ms, "
            f"statements median {statistics.median(seal_queries):.0f}"
        )
    else:
        print(
            f"chain lock held median {1000 * statistics.median(holds):.2f} ms, "
            f"p95 {1000 * holds[int(0.95 * (len(holds) - 1))]:.2f} ms"
        )
    print(f"app process CPU per submit median {1000 * statistics.median(cpu):.2f} ms")
    print(f"SQL statements per submit: median {statistics.median(queries):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
