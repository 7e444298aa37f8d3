"""Shared fixtures: subprocess helpers for the real CLI, and the browser harness."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = Path(os.environ.get("VERTEBRA_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM = os.environ.get("VERTEBRA_CHROMIUM", "/usr/bin/chromium")
# Flags for a root, offline, headless machine: no sandbox (root), no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _database_vendor() -> str:
    """'postgresql' or 'sqlite', from DATABASE_URL as the settings read it."""
    url = os.environ.get("DATABASE_URL", "")
    return "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) tests written for the other database.

    The suite runs twice, on SQLite and on PostgreSQL; a test marked ``postgresql`` or
    ``sqlite`` belongs to one pass only, so neither pass reports a skip.
    """
    vendor = _database_vendor()
    keep, drop = [], []
    for item in items:
        wanted = {m.name for m in item.iter_markers()} & {"postgresql", "sqlite"}
        (drop if wanted and vendor not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test fails the run: every test must run there (a test for one
    database is marked ``postgresql`` or ``sqlite`` and deselected in the other pass)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") and skipped and session.exitstatus == pytest.ExitCode.OK:
        names = ", ".join(sorted({report.nodeid for report in skipped})[:5])
        reporter.write_sep("!", f"CI: {len(skipped)} test(s) skipped ({names}); CI runs every test")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vertebra ARGS`` as a real subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vertebra", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input_text,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli() -> Any:
    """The ``run_cli`` helper as a fixture."""
    return run_cli


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for screenshots and other files a person may want to look at after a run."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright, shared by the session's tests.

    In CI a missing Chromium is a failure, not a skip: CI must run every browser test.
    """
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}; install Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; Django's ORM, used by the
    # live server and fixtures in the same process, must be told that is fine here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (desktop size) per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    yield new_page
    context.close()


@pytest.fixture
def phone_page(browser: Any) -> Iterator[Any]:
    """A fresh phone-sized page (390 × 844, touch) per test."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    new_page = context.new_page()
    yield new_page
    context.close()


# --------------------------------------------------------------------------------------------
# The append-only audit table and transactional tests on SQLite
# --------------------------------------------------------------------------------------------


def _truncate_guard_migration() -> Any:
    """The migration that installs the PostgreSQL TRUNCATE guard, found by the end of its name
    (so that it is still found after the migration is renumbered)."""
    import importlib
    import pkgutil

    from vertebra.registry import migrations

    name = next(
        module.name
        for module in pkgutil.iter_modules(migrations.__path__)
        if module.name.endswith("_audit_mac_and_truncate_guard")
    )
    return importlib.import_module(f"{migrations.__name__}.{name}")


def _sqlite_audit_triggers(vendor_sql_index: int, aliases: list[str]) -> None:
    """Create (index 0) or drop (index 1) the audit triggers on each alias in ``aliases``.

    SQLite: the SQL is the migration's own (``registry/migrations/0002_audit_append_only``), so
    the triggers recreated here are byte-for-byte the production ones. PostgreSQL: the flush
    TRUNCATEs, which migration 0008's trigger refuses; that one trigger is disabled (index 1)
    and enabled again (index 0), as the table owner the tests connect as.
    """
    import importlib

    from django.db import connections

    migration = importlib.import_module("vertebra.registry.migrations.0002_audit_append_only")
    # The seal table (ADR 0021) is append-only the same way: its SQLite triggers and its
    # PostgreSQL truncate guard step aside too.
    seals = importlib.import_module("vertebra.registry.migrations.0013_audit_seal")
    guards = [_truncate_guard_migration(), seals]
    for alias in aliases:
        connection = connections[alias]
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                for sql in migration.STATEMENTS["sqlite"][vendor_sql_index]:
                    cursor.execute(sql)
                for sql in seals.STATEMENTS["sqlite"][vendor_sql_index]:
                    cursor.execute(sql)
            elif connection.vendor == "postgresql":
                for guard in guards:
                    cursor.execute(
                        "SELECT 1 FROM pg_trigger WHERE tgname = %s", [guard.TRUNCATE_TRIGGER]
                    )
                    if cursor.fetchone() is not None:
                        verb = "ENABLE" if vendor_sql_index == 0 else "DISABLE"
                        cursor.execute(
                            f"ALTER TABLE {guard.TABLE} {verb} TRIGGER {guard.TRUNCATE_TRIGGER}"
                        )


@pytest.fixture(scope="session", autouse=True)
def _audit_triggers_step_aside_for_test_flush() -> Iterator[None]:
    """Let Django's test flush empty the audit table, and only that flush.

    ``TransactionTestCase`` (``transaction=True`` tests, ``live_server``) empties every table
    after each test with ``flush``; on SQLite that is ``DELETE FROM``, which the append-only
    trigger refuses, and on PostgreSQL ``TRUNCATE``, which the truncate guard refuses, so any
    transactional test failed at teardown. Production stays strict: the triggers step aside
    only inside the test flush and are back right after it (even if the flush fails), so the
    next test runs against the real triggers again. Nothing in the application changes.
    """
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        aliases = list(self._databases_names(include_mirrors=False))
        _sqlite_audit_triggers(1, aliases)
        try:
            original(self)
        finally:
            _sqlite_audit_triggers(0, aliases)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]
    try:
        yield
    finally:
        TransactionTestCase._fixture_teardown = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _audit_checkpoints_per_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own audit checkpoint file, and the worker's scheduled verification
    is off unless a test turns it on: every test starts with an empty database, so another
    test's checkpoints would rightly read as a truncated trail."""
    from django.conf import settings

    folder = tmp_path_factory.mktemp("audit-checkpoints")
    saved = {
        name: getattr(settings, name, None)
        for name in ("AUDIT_CHECKPOINT_FILE", "AUDIT_VERIFY_EVERY_HOURS")
    }
    settings.AUDIT_CHECKPOINT_FILE = str(folder / "audit-checkpoints.jsonl")
    settings.AUDIT_VERIFY_EVERY_HOURS = 0
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


# --------------------------------------------------------------------------------------------
# force_login stands for a completed sign-in, second factor included
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _force_login_includes_the_second_factor() -> Iterator[None]:
    """Make ``Client.force_login`` also mark the session as having passed MFA.

    ``force_login`` skips the password step; with MFA it must skip the code step too, or every
    test that signs in a registry admin or researcher that way would land on the MFA pages
    instead of the page it tests. Tests of the sign-in flow itself use ``client.login`` / the
    login page and ``tests.signin`` (which do not go through this).
    """
    from django.test import Client

    from tests.signin import mark_verified

    original = Client.force_login

    def force_login(self: Client, user: Any, backend: str | None = None) -> None:
        original(self, user, backend)
        mark_verified(self, user)

    Client.force_login = force_login  # type: ignore[method-assign]
    try:
        yield
    finally:
        Client.force_login = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _own_analysis_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own analysis-snapshot folder (ADR 0022): a snapshot built from one
    test's (rolled back) registry must never answer another test's pages."""
    from django.conf import settings

    try:
        before = settings.SNAPSHOT_DIR
    except Exception:  # settings not configured (a test that never starts Django)
        yield
        return
    settings.SNAPSHOT_DIR = str(tmp_path_factory.mktemp("snapshot"))
    yield
    settings.SNAPSHOT_DIR = before
