"""Throttle counters in the database: exact under concurrency, per window, per identity.

Requirement ids: issue 14 "throttles stored where all workers share them"; ASVS 4.0.3 2.2.1.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from vertebra.perimeter import throttle
from vertebra.perimeter.models import ThrottleCounter

pytestmark = pytest.mark.django_db

T = timezone.make_aware(dt.datetime(2026, 3, 1, 12, 0, 5))


def test_rate_parsing() -> None:
    assert throttle.Rate.parse("20/m") == throttle.Rate(20, 60)
    assert throttle.Rate.parse("300/h") == throttle.Rate(300, 3600)
    assert throttle.Rate.parse("5/10m") == throttle.Rate(5, 600)
    for bad in ("", "20", "0/m", "x/m", "20/w", "-1/m"):
        with pytest.raises(ValueError, match=r"not a rate|at least 1"):
            throttle.Rate.parse(bad)


def test_hit_counts_per_identity_and_window_and_peek_only_reads() -> None:
    rate = throttle.Rate(3, 60)
    results = [throttle.hit("s", "a", rate, T).allowed for _ in range(4)]
    assert results == [True, True, True, False]
    assert throttle.peek("s", "a", rate, T) == throttle.Decision(False, 4, 55)
    assert throttle.peek("s", "b", rate, T).allowed  # another identity
    assert throttle.hit("other-scope", "a", rate, T).allowed  # another scope
    later = T + dt.timedelta(seconds=60)
    assert throttle.hit("s", "a", rate, later) == throttle.Decision(True, 1, 55)


def test_the_table_holds_no_identity_in_clear() -> None:
    throttle.hit("api_address", "198.51.100.77", throttle.Rate(5, 60), T)
    keys = list(ThrottleCounter.objects.values_list("key", flat=True))
    assert keys and all("198.51.100.77" not in k for k in keys)


def test_expired_windows_are_purged() -> None:
    throttle.hit("s", "a", throttle.Rate(3, 60), T)
    assert throttle.purge_expired(T + dt.timedelta(seconds=30)) == 0
    assert throttle.purge_expired(T + dt.timedelta(seconds=120)) == 1


def test_disabled_throttles_count_nothing(settings) -> None:
    settings.THROTTLE_ENABLED = False
    for _ in range(5):
        assert throttle.hit("s", "a", throttle.Rate(1, 60), T).allowed
    assert ThrottleCounter.objects.count() == 0


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_are_counted_exactly(flushable_audit) -> None:
    """8 threads × 25 hits on one key: the count is exactly 200 (no lost increment).

    PostgreSQL only: the SQLite test database is in memory with a shared cache, where threads
    lock whole tables; SQLite across processes is proven over HTTP in
    test_multiprocess_http.py (two servers on one database file)."""
    rate = throttle.Rate(1000, 3600)
    now = timezone.now()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                throttle.hit("race", "one", rate, now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert throttle.peek("race", "one", rate, now).count == 200


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_sqlite_durability_setting_is_restored_after_counting(flushable_audit) -> None:
    """Counters commit with synchronous=NORMAL; the connection goes back to its own FULL."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        before = cursor.fetchone()[0]
    assert throttle.hit("s", "durable", throttle.Rate(5, 60)).count == 1
    assert throttle.hit("s", "durable", throttle.Rate(5, 60)).count == 2
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == before == 2  # FULL, as config.py sets it


def test_a_new_window_sweeps_ended_windows_only(monkeypatch) -> None:
    monkeypatch.setattr(throttle, "_PURGE_ONE_IN", 1)  # sweep at every new window
    rate = throttle.Rate(5, 60)
    assert throttle.hit("s", "a", rate, T).count == 1
    assert throttle.hit("s", "b", rate, T).count == 1  # same window: both rows live
    assert ThrottleCounter.objects.count() == 2
    later = T + dt.timedelta(seconds=120)
    assert throttle.hit("s", "a", rate, later).count == 1
    assert list(ThrottleCounter.objects.values_list("window", flat=True)) == [
        int(later.timestamp()) // 60 * 60
    ]
