"""Micro-benchmark: score 1,000,000 ODI response sets.

Vectorised (`score_odi_matrix`) on all rows; scalar (`score("odi", row)`) on a subset, then
extrapolated, for comparison. Prints wall time, throughput and peak RSS.

    PYTHONPATH=src python bench/bench_scoring.py               # 1,000,000 rows, 100,000 scalar
    PYTHONPATH=src python bench/bench_scoring.py --rows 10000 --scalar-rows 1000

Responses are synthetic: seeded uniform section scores 0-5 with 5% of entries missing (so
about 9% of rows have two or more missing sections and are not scored).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from vertebra.core.instruments import score, score_odi_matrix


def make_responses(rows: int, missing_rate: float, seed: int) -> npt.NDArray[np.float64]:
    """rows x 10 float array of section scores 0-5 with NaN for missing (seeded)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 6, size=(rows, 10)).astype(np.float64)
    data[rng.random((rows, 10)) < missing_rate] = np.nan
    return data


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(repeats: int, fn: Any, *args: Any) -> tuple[float, Any]:
    """Best wall time of `repeats` runs (and the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def run(rows: int, scalar_rows: int, missing_rate: float, seed: int) -> dict[str, Any]:
    """Run both benchmarks and check that they agree on the scalar subset."""
    data = make_responses(rows, missing_rate, seed)
    rss_after_data = peak_rss_mib()
    score_odi_matrix(data[:10])  # warm-up: loads and validates the definitions once
    vec_time, vec_scores = best_of(3, score_odi_matrix, data)
    rss_after_vec = peak_rss_mib()

    subset = [[None if np.isnan(v) else int(v) for v in row] for row in data[:scalar_rows]]
    start = time.perf_counter()
    scalar_scores = [score("odi", row).score for row in subset]
    scalar_time = time.perf_counter() - start

    expected = np.array([np.nan if s is None else s for s in scalar_scores])
    agree = bool(np.array_equal(expected, vec_scores[:scalar_rows], equal_nan=True))
    scored = int(np.count_nonzero(~np.isnan(vec_scores)))
    return {
        "rows": rows,
        "missing_rate": missing_rate,
        "rows_scored": scored,
        "vectorised_seconds": round(vec_time, 4),
        "vectorised_rows_per_second": round(rows / vec_time),
        "scalar_rows": scalar_rows,
        "scalar_seconds": round(scalar_time, 3),
        "scalar_rows_per_second": round(scalar_rows / scalar_time),
        "scalar_extrapolated_seconds_for_all_rows": round(scalar_time * rows / scalar_rows, 1),
        "speed_up": round((scalar_time / scalar_rows) / (vec_time / rows), 1),
        "scalar_equals_vectorised_on_subset": agree,
        "peak_rss_mib_after_data": round(rss_after_data, 1),
        "peak_rss_mib_after_vectorised": round(rss_after_vec, 1),
        "peak_rss_mib_end": round(peak_rss_mib(), 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="response sets (vectorised)")
    parser.add_argument(
        "--scalar-rows", type=int, default=100_000, help="subset for the scalar run"
    )
    parser.add_argument("--missing-rate", type=float, default=0.05, help="share of missing entries")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    result = run(args.rows, min(args.scalar_rows, args.rows), args.missing_rate, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:42s} {value}")
    return 0 if result["scalar_equals_vectorised_on_subset"] else 1


if __name__ == "__main__":
    sys.exit(main())
