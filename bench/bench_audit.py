"""Benchmark: what one audit append costs, and what the keyed MAC (ADR 0008) adds to it.

Usage (small sizes; a scratch database is created and dropped):

    python bench/bench_audit.py --appends 2000                 # PostgreSQL
    python bench/bench_audit.py --appends 2000 --sqlite        # SQLite file

In a fresh subprocess on a freshly migrated database (migration not timed):

* **append**: ``record_audit`` in its own transaction, as a service does (hash, MAC, INSERT,
  COMMIT, then the sealer after the commit on PostgreSQL or the inline seal on SQLite), ``--appends`` times, alternating blocks with the MAC and with
  the MAC step replaced by a constant, so both see the same table size and machine noise;
* **MAC alone / hash alone**: HMAC-SHA256 of one row hash, and SHA-256 of one row's canonical
  JSON, in a loop (µs per row);
* **bulk**: the cohort loader's audit frames (``cohort.sink.AuditTrail.created``) for 20,000
  rows with and without MAC (building only; the COPY is measured by ``bench_load.py``);
* **verify**: ``check_audit_chain`` over the table (rows per second).
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

CHILD = r"""
import datetime as dt, json, statistics, sys, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import connection, transaction
from django.utils import timezone
from vertebra.registry import auditseal
from vertebra.registry.audit import check_audit_chain, compute_hash, record_audit, system_actor
from vertebra.registry.auditseal import keyring

appends = int(sys.argv[1])
actor = system_actor("bench")
ring = keyring()
real_mac = auditseal.Keyring.row_mac

def block(n, with_mac):
    auditseal.Keyring.row_mac = real_mac if with_mac else (lambda self, h, kid=None: "0" * 64)
    started = time.perf_counter()
    for i in range(n):
        with transaction.atomic():
            record_audit(actor=actor, action="read", object_type="patient", object_id=i,
                         patient_id=i, new_values={"fields": ["given_name", "date_of_birth"]})
    auditseal.Keyring.row_mac = real_mac
    return (time.perf_counter() - started) / n * 1000

block(50, True)  # warm up
size = max(1, appends // 10)
with_ms, without_ms = [], []
for _ in range(5):
    with_ms.append(block(size, True))
    without_ms.append(block(size, False))

# A row as written since ADR 0021: its content only (no seq, no prev_hash).
fields = {"occurred_at": timezone.now(), "actor_user_id": 1, "actor_username": "u",
          "role": "clinician", "clinic_id": 1, "patient_id": 1, "action": "update",
          "object_type": "patient", "object_id": "1", "old_values": {"given_name": "A"},
          "new_values": {"given_name": "B"}, "reason": "typo", "request_id": "r"}
loops = 20000
t = time.perf_counter()
for _ in range(loops):
    h = compute_hash(fields)
hash_us = (time.perf_counter() - t) / loops * 1e6
t = time.perf_counter()
for _ in range(loops):
    ring.row_mac(h)
mac_us = (time.perf_counter() - t) / loops * 1e6

from vertebra.cohort.sink import AuditTrail
def bulk(with_mac):
    auditseal.Keyring.row_mac = real_mac if with_mac else (lambda self, h, kid=None: "0" * 64)
    with transaction.atomic():
        trail = AuditTrail(1, timezone.now(), "bench")
        ids = list(range(1, 20001))
        values = ['{"a":1}'] * len(ids)
        t = time.perf_counter()
        trail.created("patient", ids, values, clinic_ids=[1] * len(ids), patient_ids=ids)
        took = time.perf_counter() - t
        transaction.set_rollback(True)
    auditseal.Keyring.row_mac = real_mac
    return took
bulk(True)
bulk_with = min(bulk(True) for _ in range(3))
bulk_without = min(bulk(False) for _ in range(3))

# The no-MAC blocks stored a dummy MAC; verification speed is what matters here.
t = time.perf_counter()
report = check_audit_chain()
verify_s = time.perf_counter() - t
print(json.dumps({
    "appends": 5 * size * 2 + 50,
    "append_ms_with_mac": round(statistics.median(with_ms), 3),
    "append_ms_without_mac": round(statistics.median(without_ms), 3),
    "hash_us": round(hash_us, 2), "mac_us": round(mac_us, 2),
    "bulk_20k_s_with_mac": round(bulk_with, 3), "bulk_20k_s_without_mac": round(bulk_without, 3),
    "verify_rows": report.rows, "verify_rows_per_s": round(report.rows / verify_s),
}))
"""


def run(database_url: str, data_dir: str, appends: int) -> dict[str, object]:
    """Run the child on ``database_url``; return its figures."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(appends)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run on a scratch database, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.sqlite:
            url = f"sqlite:///{Path(scratch) / 'audit.sqlite3'}"
            copy_migrated_sqlite(url)  # the smoke test's template, when it gives one
            result = run(url, scratch, args.appends)
        else:
            with scratch_databases(args.admin_url) as (url,):
                result = run(url, scratch, args.appends)
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    r = result
    print(f"audit append benchmark ({engine}, {r['appends']} appends)")
    print(f"  append, own transaction: {r['append_ms_with_mac']} ms with MAC, "
          f"{r['append_ms_without_mac']} ms without (median of 5 blocks each)")  # fmt: skip
    print(f"  per row: SHA-256 of canonical JSON {r['hash_us']} µs, HMAC {r['mac_us']} µs")
    print(f"  bulk audit frames, 20,000 rows: {r['bulk_20k_s_with_mac']} s with MAC, "
          f"{r['bulk_20k_s_without_mac']} s without")  # fmt: skip
    print(f"  verify: {r['verify_rows']} rows at {r['verify_rows_per_s']} rows/s")


if __name__ == "__main__":
    main()
