#!/usr/bin/env bash
# Bring up what the tests need, install the test dependencies, then run the whole suite: lint,
# types, the purity contract, Django checks, the tests on SQLite and on PostgreSQL, and the
# browser tests.
#
#   bash scripts/test.sh
#
# What it brings up itself (scripts/test-services.sh): Debian's chromium, fonts, pango and
# poppler-utils (apt-get, when run as root); PostgreSQL at VERTEBRA_TEST_DATABASE_URL (default
# postgres://postgres:postgres@127.0.0.1:5432/vertebra): used if it answers, else the machine's
# cluster is started (root), else a throwaway server is made from the installed PostgreSQL
# binaries on that host and port and removed at the end. When something cannot be had, one line
# says what is missing. Set VERTEBRA_SKIP_POSTGRES=1 to run without PostgreSQL on a laptop; CI
# never sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it starts (seconds since the script began), so a slow CI run shows where
# its time went (the whole run should stay under 30 minutes on a 2-core machine).
step() { printf '\n==> %s  [%ss]\n' "$*" "$SECONDS"; }
# shellcheck source=scripts/test-services.sh
source scripts/test-services.sh

WORK="$(mktemp -d)"
trap 'stop_throwaway_postgres; rm -rf "$WORK"' EXIT

step "system packages (chromium, fonts, pango, poppler-utils)"
ensure_system_packages

step "independent FHIR validator (npm ci in tools/fhir-validate)"
ensure_fhir_validator

step "install vertebra with its test dependencies"
python -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [[ "${VERTEBRA_SKIP_POSTGRES:-}" != "1" || -n "${CI:-}" ]]; then
  step "PostgreSQL"
  ensure_postgres "${VERTEBRA_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/vertebra}"
fi
export DJANGO_SETTINGS_MODULE=vertebra.settings
export VERTEBRA_ENV=test
export VERTEBRA_DATA_DIR="$WORK/data"
export AXES_ENABLED=true

step "ruff (lint and format)"
ruff check src tests bench
ruff format --check src tests bench

step "mypy"
mypy

step "import-linter (vertebra.core stays pure)"
lint-imports

step "manage.py check"
DATABASE_URL="sqlite:///$WORK/check.sqlite3" python -m vertebra manage check --fail-level WARNING

step "makemigrations --check"
DATABASE_URL="sqlite:///$WORK/check.sqlite3" python -m vertebra manage makemigrations --check --dry-run

# Three passes on two cores: SQLite in the foreground (the longest: it also runs tests/core)
# then part of the browser tests and, alongside, PostgreSQL then the other browser tests (each
# pytest process is mostly one busy Python thread, so the second core stays busy instead of the
# browser tests waiting for both database passes). SQLite streams to the console; the other
# side writes logs that are printed at the end. Each pass has its own data folder and
# database, because the decision aid's cache and the audit key live there and must not be
# shared.
run_sqlite_pass() {
  VERTEBRA_DATA_DIR="$WORK/data-sqlite" DATABASE_URL="sqlite:///$WORK/test.sqlite3" \
    python -m pytest -m "not browser" -p no:cacheprovider --durations=25
}
run_postgres_pass() {
  # tests/core is the pure domain (no database: an import-linter contract enforces it), so it
  # runs once, in the SQLite pass; everything that touches the database runs again here.
  VERTEBRA_DATA_DIR="$WORK/data-postgres" DATABASE_URL="$PG_URL" \
    python -m pytest -m "not browser" -p no:cacheprovider --ignore=tests/core --durations=25
}
# The browser tests in two parts, so that each database pass is followed by one and neither
# side waits for the other: the crawl, the whole-day journey and the public pages' checks
# (~190 s) after the SQLite pass, the rest (~220 s) after the PostgreSQL pass, which ends
# ~2 minutes earlier (CI on a 2-core machine, session 15; BENCHMARKS.md "CI time"). Each part
# has its own data folder and database.
BROWSER_FIRST=(
  tests/browser/test_crawl.py tests/browser/test_journey_cell_therapy_day.py
  tests/browser/test_public_phone.py tests/browser/test_decide_browser.py
  tests/browser/test_accessibility.py
)
run_browser_pass() {
  # $1: "first" (the files above), "rest" (every other browser test) or "all"
  local part="$1" args=()
  case "$part" in
    first) args=("${BROWSER_FIRST[@]}") ;;
    rest) for file in "${BROWSER_FIRST[@]}"; do args+=("--ignore=$file"); done ;;
  esac
  VERTEBRA_DATA_DIR="$WORK/data-browser-$part" DATABASE_URL="sqlite:///$WORK/browser-$part.sqlite3" \
    python -m pytest -m browser -p no:cacheprovider --durations=15 "${args[@]}"
}
pg_where() {
  python - "$PG_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"{u.hostname}:{u.port or 5432}{u.path}")
PY
}

if [[ "${VERTEBRA_SKIP_POSTGRES:-}" == "1" && -z "${CI:-}" ]]; then
  step "tests on SQLite"
  run_sqlite_pass
  echo "!! VERTEBRA_SKIP_POSTGRES=1: PostgreSQL tests NOT run (never allowed in CI)" >&2
  step "browser tests (Playwright + Debian chromium)"
  run_browser_pass all
else
  step "tests on SQLite then browser tests (Playwright + Debian chromium); alongside, on PostgreSQL ($(pg_where)) then the other browser tests; their logs follow"
  (
    pg_rc=0
    run_postgres_pass >"$WORK/postgres-pass.log" 2>&1 || pg_rc=$?
    echo "$pg_rc" >"$WORK/postgres-pass.rc"
    printf '(PostgreSQL pass ended at %ss, exit %s; browser tests start)\n' "$SECONDS" "$pg_rc" \
      >"$WORK/browser-pass.log"
    run_browser_pass rest >>"$WORK/browser-pass.log" 2>&1
  ) &
  side_pid=$!
  sqlite_rc=0
  run_sqlite_pass || sqlite_rc=$?
  step "SQLite pass ended (exit $sqlite_rc); browser tests (crawl, day journey, public pages), then waiting for the PostgreSQL pass and the other browser tests"
  browser_rc=0
  run_browser_pass first || browser_rc=$?
  wait "$side_pid" || browser_rc=$?
  pg_rc="$(cat "$WORK/postgres-pass.rc" 2>/dev/null || echo missing)"
  step "tests on PostgreSQL ($(pg_where)): log"
  cat "$WORK/postgres-pass.log"
  step "the other browser tests: log"
  cat "$WORK/browser-pass.log"
  if [[ "$sqlite_rc" != 0 || "$pg_rc" != 0 || "$browser_rc" != 0 ]]; then
    echo "!! tests failed: SQLite exit $sqlite_rc, PostgreSQL exit $pg_rc, browser exit $browser_rc" >&2
    exit 1
  fi
fi

step "all checks passed"
