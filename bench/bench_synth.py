"""Benchmark of the synthetic cohort generator: wall time and peak memory per cohort size.

Each size runs in a fresh subprocess (so peak RSS is that size's own) and writes into a
temporary directory that is deleted afterwards; nothing is written into the repository.

    python bench/bench_synth.py                 # 10k and 100k patients, Parquet
    python bench/bench_synth.py --million       # also 1,000,000 patients
    python bench/bench_synth.py --format both   # Parquet and CSV
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = """
import json, resource, sys, time
from datetime import date
from vertebra.core.synth import iter_cohort, write_cohort
n, out, fmts = int(sys.argv[1]), sys.argv[2], tuple(sys.argv[3].split(","))
start = time.perf_counter()
written = write_cohort(iter_cohort(n, 20250601, today=date(2025, 6, 1)), out, fmts)
elapsed = time.perf_counter() - start
rows = json.load(open(written["metadata"][0]))["rows"]
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
print(json.dumps({"n": n, "seconds": elapsed, "peak_rss_mb": peak_mb, "rows": rows}))
"""
_FORMATS = {"parquet": "parquet", "csv": "csv", "both": "parquet,csv"}


def run_one(n: int, formats: str) -> dict[str, object]:
    """Generate and write `n` patients in a subprocess; return its measurements."""
    with tempfile.TemporaryDirectory(prefix="vertebra-bench-synth-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(n), tmp, formats],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse options, run the sizes, print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 patients")
    parser.add_argument("--format", choices=sorted(_FORMATS), default="parquet")
    parser.add_argument("--sizes", type=int, nargs="+", help="cohort sizes (default 10k, 100k)")
    args = parser.parse_args()
    sizes = args.sizes or [10_000, 100_000] + ([1_000_000] if args.million else [])
    print(f"vertebra synth benchmark ({args.format}, {os.cpu_count()} CPUs)")
    print(
        f"{'patients':>10} {'seconds':>9} {'peak RSS MB':>12} {'timepoint rows':>15} {'events':>9}"
    )
    for n in sizes:
        r = run_one(n, _FORMATS[args.format])
        rows = r["rows"]
        assert isinstance(rows, dict)
        print(
            f"{n:>10,} {r['seconds']:>9.1f} {r['peak_rss_mb']:>12.0f} "
            f"{rows['timepoints']:>15,} {rows['events']:>9,}"
        )


if __name__ == "__main__":
    main()
