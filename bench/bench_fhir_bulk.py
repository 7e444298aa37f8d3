"""Benchmark: a Bulk Data $export job against the CLI exporter, and the token endpoint.

Usage (a scratch database is created and dropped):

    python bench/bench_fhir_bulk.py --patients 300            # PostgreSQL
    python bench/bench_fhir_bulk.py --patients 300 --sqlite   # SQLite file

In a fresh subprocess on a freshly migrated database holding ``--patients`` synthetic patients
(load not timed), for the first clinic:

* **cli**: ``export_fhir`` (what ``vertebra export fhir --clinic`` runs), seconds;
* **job**: kick-off + the worker's run (``run_pending``) of ``$export`` for the same clinic,
  which is the CLI export plus the job bookkeeping, and of ``_type=Patient`` and ``_since``;
* **token**: one token request (assertion decoded, RS384 signature verified, claims checked,
  jti and token stored, audited), milliseconds, median of 50.
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
import datetime as dt, json, statistics, sys, time, uuid
from pathlib import Path
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.utils import timezone
from joserfc import jwt
from joserfc.jwk import RSAKey
from vertebra.cohort.loader import load_cohort
from vertebra.core.fhir.smart import ASSERTION_TYPE, Grant, KickOff
from vertebra.core.fhir import RESOURCE_TYPES
from vertebra.core.synth import generate_cohort
from vertebra.fhirbulk.auth import Requester, authenticate, issue_token, register_client
from vertebra.fhirbulk.jobs import kick_off, run_pending
from vertebra.fhirbulk.models import ExportJob
from vertebra.interop.export import export_fhir
from vertebra.registry.models import Clinic

n = int(sys.argv[1])
out = Path(sys.argv[2])
settings.FHIR_BULK_DIR = str(out / "bulk")
load_cohort(generate_cohort(n, 7, today=dt.date.today()), now=timezone.now())
clinic = Clinic.objects.order_by("pk").first().pk
key = RSAKey.generate_key(2048, parameters={"kid": "b"})
register_client(client_id="bench", name="bench", jwks={"keys": [key.as_dict(private=False)]},
                clinic_id=clinic, now=timezone.now())
url = "https://bench.example/fhir/auth/token"

def token():
    now = int(time.time())
    signed = jwt.encode({"alg": "RS384", "kid": "b"}, {"iss": "bench", "sub": "bench",
        "aud": url, "exp": now + 120, "jti": uuid.uuid4().hex}, key, algorithms=["RS384"])
    t = time.perf_counter()
    issued = issue_token(grant_type="client_credentials", assertion_type=ASSERTION_TYPE,
                         assertion=signed, scope="system/*.read", token_url=url, now=timezone.now())
    return (time.perf_counter() - t) * 1000, issued.access_token

token()
token_ms = statistics.median(token()[0] for _ in range(50))
requester = authenticate("Bearer " + token()[1], now=timezone.now())

t = time.perf_counter()
summary = export_fhir(out / "cli", clinic_ids=[clinic], now=timezone.now())
cli_s = time.perf_counter() - t

def job(types, since=None):
    t = time.perf_counter()
    kick_off(requester, level="system", group=None, request=KickOff(types=types, since=since),
             request_url="https://bench.example/fhir/$export", now=timezone.now())
    run_pending(timezone.now())
    return time.perf_counter() - t

job_s = job(RESOURCE_TYPES)
patient_s = job(("Patient",))
since_s = job(RESOURCE_TYPES, timezone.now() - dt.timedelta(hours=1))
print(json.dumps({"patients": summary.n_patients, "resources": sum(summary.counts.values()),
    "cli_s": round(cli_s, 2), "job_s": round(job_s, 2), "type_patient_s": round(patient_s, 2),
    "since_s": round(since_s, 2), "token_ms": round(token_ms, 2)}))
"""


def run(database_url: str, data_dir: str, patients: int) -> dict[str, object]:
    """Run the child on ``database_url``; return its figures."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vertebra.settings",
        "DATABASE_URL": database_url,
        "VERTEBRA_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(patients), data_dir],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run on a scratch database, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--sqlite", action="store_true", help="use a scratch SQLite file")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres:postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.sqlite:
            url = f"sqlite:///{Path(scratch) / 'bulk.sqlite3'}"
            copy_migrated_sqlite(url)  # the smoke test's template, when it gives one
            result = run(url, scratch, args.patients)
        else:
            with scratch_databases(args.admin_url) as (url,):
                result = run(url, scratch, args.patients)
    r = result
    engine = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"FHIR Bulk Data benchmark ({engine}, {args.patients} patients registry-wide)")
    print(f"  first clinic: {r['patients']} patients, {r['resources']} resources")
    print(f"  CLI exporter: {r['cli_s']} s; $export job (kick-off + worker run): {r['job_s']} s")
    print(f"  _type=Patient: {r['type_patient_s']} s; _since (every patient changed): "
          f"{r['since_s']} s")  # fmt: skip
    print(f"  token request: {r['token_ms']} ms (median of 50)")


if __name__ == "__main__":
    main()
