"""Target 4: database faults against the real server (``vertebra serve``).

* (a) full database (SQLite: SQLITE_FULL, see diskfull_server.py): the app answers 503 with a
  plain message, stores nothing it did not acknowledge, and serves again within 10 s of space
  being freed, without a restart;
* (b) database locked (SQLite write lock held by another connection; PostgreSQL audit-chain
  lock held), unreachable (PostgreSQL connections cut and refused) or silent (accepts, never
  answers): 503 within 5 s, workers free, recovery within 10 s of the database coming back.

Every 503 is checked for what it tells the patient: that the answers were NOT saved (and the
database confirms it), with no traceback or exception text; API paths get JSON.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.reliability.harness import (
    ServedDatabase,
    Server,
    acknowledged_reference,
    run_dbtool,
    submit,
    timed,
)
from tests.reliability.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow

#: Target 4: the answer during a fault, and the recovery after it, in seconds.
ANSWER_WITHIN = 5.0
RECOVER_WITHIN = 10.0
#: Words that would mean an exception leaked into a page.
LEAKS = ("Traceback", "OperationalError", "InterfaceError", "psycopg", "sqlite", 'File "')


def _seed(db: ServedDatabase, folder: Path, count: int) -> dict[str, Any]:
    plan_path = folder / "plan.json"
    run_dbtool(db, "seed", "--count", str(count), "--seed", "4", "--out", str(plan_path))
    return dict(json.loads(plan_path.read_text(encoding="utf-8")))


def _timed_submit(server: Server, item: dict[str, Any]) -> tuple[requests.Response, float]:
    """:func:`submit` and its wall time in seconds."""
    started = time.monotonic()
    response = submit(server.base, item, timeout=30)
    return response, time.monotonic() - started


def _stored(db: ServedDatabase, item: dict[str, Any]) -> int:
    """Submissions stored for the item's time point, read straight from the database."""
    return db.direct_count(
        "SELECT count(*) FROM followup_submission WHERE time_point_id = %s", [item["tp"]]
    )


def _assert_plain_503(response: requests.Response, write: str, seconds: float) -> None:
    """A 503 that answered in time, tells the truth about the write, and leaks nothing."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    print(f"503 for {response.request.method} {response.request.path_url} in {seconds:.2f} s")
    assert seconds < ANSWER_WITHIN, f"503 took {seconds:.1f} s"
    assert response.headers["Retry-After"] == "30"
    assert response.headers["X-Vertebra-Write"] == write
    for leak in LEAKS:
        assert leak not in response.text, leak
    if response.headers["Content-Type"].startswith("application/problem+json"):
        body = response.json()
        assert body["type"] == "urn:vertebra:problem:database-unavailable"
        assert body["status"] == 503 and body["code"] == "database_unavailable"
        assert body["saved"] is False
        assert "not available right now" in body["detail"]
    else:
        assert "The registry is not available right now" in response.text
        expected = (
            "so your answers were NOT saved. Please try again in a few minutes; answers you "
            "sent on earlier pages are kept."
            if write == "not_saved"
            else "Nothing was changed. Please try again in a few minutes."
        )
        assert expected in response.text


def _acknowledge_within(base: str, item: dict[str, Any], seconds: float) -> tuple[str, float]:
    """Send ``item`` again and again until acknowledged; return (reference, seconds taken)."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < seconds:
        try:
            response = submit(base, item, timeout=seconds)
            reference = acknowledged_reference(response)
            if reference is not None:
                print(f"acknowledged again {time.monotonic() - started:.2f} s after the fault")
                return reference, time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"not acknowledged within {seconds} s (last: {last})")


def _all_workers_answer(server: Server, request: Callable[[], requests.Response]) -> None:
    """Twice as many simultaneous requests as the server has threads all succeed in time:
    no worker or thread is stuck on the fault that just ended."""
    count = 2 * server.workers * server.threads
    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda _: request().status_code, range(count)))
    assert statuses == [200] * count
    assert time.monotonic() - started < RECOVER_WITHIN


def _api_get(server: Server, token: str) -> Callable[[], requests.Response]:
    return lambda: requests.get(
        f"{server.base}/api/v1/patients",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _verify(db: ServedDatabase, folder: Path, plan: dict[str, Any], acks: list[Any]) -> None:
    """Every acknowledgement stored intact with its audit row; nothing else stored."""
    (folder / "acks.json").write_text(json.dumps(acks), encoding="utf-8")
    found = run_dbtool(
        db, "verify", "--plan", str(folder / "plan.json"), "--acks", str(folder / "acks.json")
    )
    assert found["acknowledged"] == len(acks)
    assert found["lost"] == found["answers_differ"] == found["partial"] == []
    assert found["missing_audit"] == found["audit_differs"] == []
    assert found["unacknowledged_stored"] == 0
    assert found["audit_chain_problems"] == []


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers for a test and stop them all at its end, whatever happens."""
    servers: list[Server] = []

    def make(db: ServedDatabase, **kwargs: Any) -> Server:
        # One worker process with four threads: the first request (made before each fault)
        # warms it, so the timings below measure the fault, not the worker's first-request
        # imports (about 1.5 s; see docs/reliability.md).
        server = Server(db, tmp_path / f"server{len(servers)}.log", workers=1, threads=4, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.mark.sqlite
def test_full_database_gives_503_and_recovers_without_restart(
    served_db: ServedDatabase, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    plan = _seed(served_db, tmp_path, 10)
    items = plan["items"]
    flag = tmp_path / "disk-full"
    server = server_factory(
        served_db,
        entry="tests.reliability.diskfull_server",
        extra_env={"RELIABILITY_DISK_FULL_FLAG": str(flag)},
    )
    pid = server.pid
    acks = []
    ref = acknowledged_reference(submit(server.base, items[0]))
    assert ref is not None
    acks.append({"tp": items[0]["tp"], "ref": ref})

    flag.touch()  # the disk is full from now on
    refused = []
    for item in items[1:]:
        response, seconds = _timed_submit(server, item)
        reference = acknowledged_reference(response)
        if reference is not None:  # it still fitted in the pages the file had
            acks.append({"tp": item["tp"], "ref": reference})
            continue
        _assert_plain_503(response, "not_saved", seconds)
        assert _stored(served_db, item) == 0  # "NOT saved" is true
        refused.append(item)
        if len(refused) == 3:
            break
    assert len(refused) == 3, "the full database never refused a submission"
    assert "database or disk is full" in server.log_tail(20000)  # the operator sees why

    flag.unlink()  # space freed
    freed = time.monotonic()
    for item in refused:
        reference, _ = _acknowledge_within(server.base, item, RECOVER_WITHIN)
        acks.append({"tp": item["tp"], "ref": reference})
    assert time.monotonic() - freed < RECOVER_WITHIN
    assert server.pid == pid and server.starts == 1  # recovered without a restart
    _verify(served_db, tmp_path, plan, acks)


@pytest.mark.sqlite
def test_locked_sqlite_gives_503_within_5_s_and_recovers(
    served_db: ServedDatabase, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    import sqlite3

    plan = _seed(served_db, tmp_path, 3)
    items, token = plan["items"], plan["token"]
    server = server_factory(served_db)
    acks = []
    ref = acknowledged_reference(submit(server.base, items[0]))
    assert ref is not None
    acks.append({"tp": items[0]["tp"], "ref": ref})

    assert served_db.sqlite_path is not None
    holder = sqlite3.connect(served_db.sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        response, seconds = _timed_submit(server, items[1])
        _assert_plain_503(response, "not_saved", seconds)
        # A page view of a session saved less than a minute ago writes nothing (the session
        # engine, ADR 0021 §7): it answers at once, readers go on in WAL mode.
        page, seconds = timed(
            "GET",
            f"{server.base}/p/q/review/",
            cookies={"sessionid": items[2]["session"]},
            timeout=30,
        )
        assert page.status_code == 200 and seconds < 2, (page.status_code, seconds)
        # A page that changes the session (its draft) must save it: it waits for the lock,
        # and gets the 503 in time.
        draft, seconds = timed(
            "POST",
            f"{server.base}/p/q/1/",
            data={"csrfmiddlewaretoken": items[2]["csrf"]},
            cookies={"sessionid": items[2]["session"], "csrftoken": items[2]["csrf"]},
            timeout=30,
        )
        _assert_plain_503(draft, "not_saved", seconds)
        # The API records the token's last use: JSON 503.
        api, seconds = timed(
            "GET",
            f"{server.base}/api/v1/patients",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        _assert_plain_503(api, "none", seconds)
        # Readers are not blocked in WAL mode: the workers still answer at once.
        health, seconds = timed("GET", f"{server.base}/healthz", timeout=30)
        assert health.status_code == 200 and seconds < 2
        assert holder.execute(
            "SELECT count(*) FROM followup_submission WHERE time_point_id = ?", [items[1]["tp"]]
        ).fetchone() == (0,)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    reference, _ = _acknowledge_within(server.base, items[1], RECOVER_WITHIN)
    acks.append({"tp": items[1]["tp"], "ref": reference})
    _all_workers_answer(server, _api_get(server, token))
    _verify(served_db, tmp_path, plan, acks)


@pytest.mark.postgresql
def test_postgres_cut_silent_and_locked_give_503_within_5_s_and_recover(
    served_db: ServedDatabase, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    import psycopg

    from vertebra.registry.audit import _CHAIN_LOCK_KEY

    plan = _seed(served_db, tmp_path, 5)
    items, token = plan["items"], plan["token"]
    target = urllib.parse.urlsplit(served_db.url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy.start()
    try:
        server = server_factory(served_db.with_host("127.0.0.1", proxy.port))
        acks = []
        ref = acknowledged_reference(submit(server.base, items[0]))
        assert ref is not None
        acks.append({"tp": items[0]["tp"], "ref": ref})

        def fault_then_recover(item: dict[str, Any], end_fault: Callable[[], None]) -> None:
            """During the fault: the submission and an API read get a plain 503 in time, and
            nothing is stored. After it: the same submission is acknowledged in time."""
            response, seconds = _timed_submit(server, item)
            _assert_plain_503(response, "not_saved", seconds)
            api, seconds = timed(
                "GET",
                f"{server.base}/api/v1/patients",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            _assert_plain_503(api, "none", seconds)
            assert _stored(served_db, item) == 0  # read directly, not through the proxy
            end_fault()
            reference, _ = _acknowledge_within(server.base, item, RECOVER_WITHIN)
            acks.append({"tp": item["tp"], "ref": reference})
            _all_workers_answer(server, _api_get(server, token))

        # The database goes away: open connections die, new ones are refused.
        proxy.cut()
        health, seconds = timed("GET", f"{server.base}/healthz", timeout=30)
        assert health.status_code == 503 and seconds < ANSWER_WITHIN
        fault_then_recover(items[1], proxy.restore)

        # The database host accepts connections and never answers: the connect timeout ends it.
        proxy.blackhole()
        fault_then_recover(items[2], proxy.restore)

        # Another session holds a row lock the write needs (its time point): lock_timeout.
        with psycopg.connect(served_db.url) as holder:
            holder.execute(
                "SELECT id FROM followup_followuptimepoint WHERE id = %s FOR UPDATE",
                [items[3]["tp"]],
            )
            response, seconds = _timed_submit(server, items[3])
            _assert_plain_503(response, "not_saved", seconds)
            assert _stored(served_db, items[3]) == 0
            holder.rollback()
        reference, _ = _acknowledge_within(server.base, items[3], RECOVER_WITHIN)
        acks.append({"tp": items[3]["tp"], "ref": reference})

        # The audit sealer's lock held by another session no longer holds any write up
        # (ADR 0021): the submission is acknowledged at once; its row is sealed afterwards.
        with psycopg.connect(served_db.url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [_CHAIN_LOCK_KEY])
            response, seconds = _timed_submit(server, items[4])
            reference = acknowledged_reference(response)
            assert reference is not None and seconds < ANSWER_WITHIN, (
                response.status_code,
                seconds,
            )
            acks.append({"tp": items[4]["tp"], "ref": reference})
            holder.execute("SELECT pg_advisory_unlock(%s)", [_CHAIN_LOCK_KEY])
        assert server.starts == 1  # every recovery without a restart
    finally:
        proxy.close()
    _verify(served_db, tmp_path, plan, acks)
