#!/usr/bin/env bash
# Install the test dependencies, then run the whole suite: lint, types, the purity contract,
# Django checks, the tests on SQLite and on PostgreSQL, and the browser tests.
#
#   bash scripts/test.sh
#
# PostgreSQL: VERTEBRA_TEST_DATABASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/vertebra).
# Browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium).
# Set VERTEBRA_SKIP_POSTGRES=1 to run without PostgreSQL on a laptop; CI never sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install vertebra with its test dependencies"
python -m pip install --quiet --disable-pip-version-check -e '.[test]'

PG_URL="${VERTEBRA_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/vertebra}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
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

step "tests on SQLite"
DATABASE_URL="sqlite:///$WORK/test.sqlite3" python -m pytest -m "not browser" -p no:cacheprovider

if [[ "${VERTEBRA_SKIP_POSTGRES:-}" == "1" && -z "${CI:-}" ]]; then
  echo "!! VERTEBRA_SKIP_POSTGRES=1: PostgreSQL tests NOT run (never allowed in CI)" >&2
else
  step "tests on PostgreSQL ($(python - "$PG_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"{u.hostname}:{u.port or 5432}{u.path}")
PY
))"
  python - "$PG_URL" <<'PY'
import sys
import psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=5).close()
except Exception as exc:
    sys.exit(f"PostgreSQL is not reachable at VERTEBRA_TEST_DATABASE_URL: {exc}")
PY
  # tests/core is the pure domain (no database: an import-linter contract enforces it), so it
  # ran once above; everything that touches the database runs again on PostgreSQL.
  DATABASE_URL="$PG_URL" python -m pytest -m "not browser" -p no:cacheprovider --ignore=tests/core
fi

step "browser tests (Playwright + Debian chromium)"
DATABASE_URL="sqlite:///$WORK/browser.sqlite3" python -m pytest -m browser -p no:cacheprovider

step "all checks passed"
