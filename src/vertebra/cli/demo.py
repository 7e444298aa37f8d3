"""``vertebra demo``: an embedded SQLite registry with demo accounts, served on localhost."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vertebra.cli.errors import CliError
from vertebra.cli.server import django_setup, ensure_port_free, run_gunicorn
from vertebra.config import default_data_dir

HOST = "127.0.0.1"


#: The file name of the embedded database in the data folder. The demo and every other command
#: (report, export, manage, ...) use the same file when DATABASE_URL is unset, so a command run
#: right after ``vertebra demo`` reads the demo's registry (see ``vertebra.settings``).
EMBEDDED_DATABASE = "vertebra.sqlite3"
#: Where demos before this version kept their database; moved to EMBEDDED_DATABASE on start.
_OLD_DEMO_DATABASE = "demo.sqlite3"


def prepare_environment(data_dir: Path, reset: bool) -> Path:
    """Point the settings at the embedded database in ``data_dir`` and return its path.

    The demo secret is random per data folder and kept beside the database so sessions
    survive a restart. ``reset`` deletes the database first. A database left by an older demo
    under its old name is moved to the shared name (unless one exists there already).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / EMBEDDED_DATABASE
    old = data_dir / _OLD_DEMO_DATABASE
    if old.exists() and not database.exists():
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{old}{suffix}").exists():
                Path(f"{old}{suffix}").rename(f"{database}{suffix}")
    if reset:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(data_dir / "static", ignore_errors=True)
        # Cached figures and the analysis snapshot describe the deleted database, whose
        # replacement has the same name and so the same key.
        shutil.rmtree(data_dir / "cache", ignore_errors=True)
        shutil.rmtree(data_dir / "snapshot", ignore_errors=True)
        # The audit checkpoints describe the deleted database; the MAC key stays.
        (data_dir / "audit-checkpoints.jsonl").unlink(missing_ok=True)
    secret_file = data_dir / "demo-secret.txt"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(50))
        secret_file.chmod(0o600)
    os.environ["VERTEBRA_ENV"] = "demo"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["SECRET_KEY"] = secret_file.read_text().strip()
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("VERTEBRA_DATA_DIR", str(data_dir))
    return database


def print_welcome(console: Console, url: str, logins: list[tuple[str, str, str, str]]) -> None:
    """Print where the demo runs and which accounts to use."""
    console.print(f"\n[bold green]Vertebra demo is running at {url}[/]")
    table = Table(title="Demo logins (local demo only)")
    table.add_column("Role")
    table.add_column("Username")
    table.add_column("Password")
    table.add_column("Sees")
    for role, username, password, clinic in logins:
        table.add_row(role, username, password, clinic)
    console.print(table)
    console.print("Press Ctrl+C to stop.\n")


def run_demo(*, port: int, patients: int, seed: int, open_browser: bool, reset: bool) -> None:
    """Prepare the demo database and accounts, then serve until interrupted."""
    console = Console(stderr=False)
    if patients < 0:
        raise CliError("--patients must be zero or more")
    ensure_port_free(HOST, port)
    data_dir = default_data_dir(os.environ)
    started = time.monotonic()
    database = prepare_environment(data_dir, reset)
    django_setup()
    from django.core.management import call_command
    from django.utils import timezone

    from vertebra.web.services.demo import (
        ensure_demo_accounts,
        load_demo_cohort,
        seal_audit_trail,
    )

    console.print(f"Using demo database {database}")
    call_command("migrate", interactive=False, verbosity=0)
    now = timezone.now()
    with console.status(f"Loading a synthetic cohort of {patients} patients…"):
        loaded = load_demo_cohort(patients=patients, seed=seed, today=now.date(), now=now)
    if loaded:
        console.print(f"Loaded {loaded} synthetic patients (seed {seed}).")
    logins = ensure_demo_accounts()
    # The analysis snapshot (dashboards, reports, the decision aid's figures), built now (about
    # 1 s at 500 patients; rebuilt only if the registry changed since the last demo), so no
    # first visitor waits; a separate process keeps it current while the demo runs.
    from vertebra.outcomes import snapshot

    built = snapshot.refresh()
    console.print(f"Analysis snapshot {built.outcome} in {built.seconds:.1f} s.")
    seal_audit_trail()
    url = f"http://{HOST}:{port}/"
    console.print(f"Ready in {time.monotonic() - started:.1f} s.")
    print_welcome(console, url, [(x.role, x.username, x.password, x.clinic) for x in logins])
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    refresher = start_snapshot_process()
    try:
        run_gunicorn(host=HOST, port=port, workers=2, threads=4, quiet=True)
    finally:
        refresher.terminate()
        try:
            refresher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            refresher.kill()


def start_snapshot_process() -> subprocess.Popen[bytes]:
    """``vertebra snapshot watch`` as a child process (same settings): the demo's figures are
    refreshed outside the web server's processes, as ``vertebra worker`` does in production."""
    return subprocess.Popen(
        [sys.executable, "-m", "vertebra", "snapshot", "watch"],
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the demo dies, even by SIGKILL (Linux only)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
