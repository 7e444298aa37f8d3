"""Benchmark: time from ``vertebra demo`` to the first served page, on a new data directory.

Usage:

    python bench/bench_demo.py                  # 500 patients (the default demo)
    python bench/bench_demo.py --patients 2000 --repeat 3

Each run starts the real command as a subprocess (embedded SQLite in a fresh temporary data
directory: migrate, load the synthetic cohort, create the demo accounts, serve) and polls
``/`` until it answers 200. Prints each run's seconds and the median.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_page_seconds(patients: int, timeout: float = 180.0) -> float:
    """Seconds from starting ``vertebra demo`` on an empty data directory to a 200 on ``/``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "VERTEBRA_ENV"}}  # fmt: skip
        env["VERTEBRA_DATA_DIR"] = data_dir
        started = time.perf_counter()
        process = subprocess.Popen(
            ["vertebra", "demo", "--no-browser", "--port", str(port), "--patients", str(patients)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while time.perf_counter() - started < timeout:
                if process.poll() is not None:
                    raise RuntimeError(f"vertebra demo exited with {process.returncode}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                        if page.status == 200:
                            return time.perf_counter() - started
                except OSError:
                    time.sleep(0.1)
            raise TimeoutError(f"no page within {timeout:.0f} s")
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    """Parse options, time the runs, print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [first_page_seconds(args.patients) for _ in range(args.repeat)]
    print(f"vertebra demo, {args.patients} patients, first page after: "
          + ", ".join(f"{r:.1f} s" for r in runs) + f" (median {statistics.median(runs):.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
