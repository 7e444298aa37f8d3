#!/usr/bin/env bash
# What the test suite needs besides Python packages, brought up by the README's test command
# (scripts/test.sh sources this file; .ci/run calls scripts/test.sh and nothing else):
#
#   ensure_system_packages   Debian's chromium (browser tests), fonts and pango (PDF reports),
#                            poppler-utils (PDF text checks), R (r-base-core: the researcher's
#                            read.csv check of the research export); installed with apt-get
#                            when root.
#   ensure_postgres URL      sets PG_URL to a PostgreSQL URL that answers, with its database
#                            created: URL itself if its server is up; else the machine's cluster
#                            started (root); else a throwaway server made with the installed
#                            binaries (initdb + pg_ctl) on URL's host and port, which
#                            stop_throwaway_postgres stops and removes.
#   ensure_fhir_validator    installs the independent FHIR R4 validator (@medplum/core, pinned in
#                            tools/fhir-validate/package-lock.json) with `npm ci`; needs node and
#                            npm (tests/fhirserver/test_medplum.py runs it).
#
# When something cannot be had, one line on stderr says what is missing and how to get it, and
# the function returns non-zero. Progress goes to stderr.

THROWAWAY_PG_DIR=""
PG_URL=""

_say() { printf '%s\n' "$*" >&2; }

_is_root() { [[ "$(id -u)" == "0" ]]; }

_apt_install() {
  # Install Debian packages quietly; only as root on a machine with apt-get.
  _is_root && command -v apt-get >/dev/null || return 1
  _say "    installing with apt-get: $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

ensure_system_packages() {
  local missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v pdftotext >/dev/null || missing+=(poppler-utils)
  fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
  ldconfig -p 2>/dev/null | grep -q libpangoft2 || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
  command -v Rscript >/dev/null || missing+=(r-base-core)
  ((${#missing[@]} == 0)) && return 0
  if ! _apt_install "${missing[@]}"; then
    _say "missing: ${missing[*]} (Debian packages; run this script as root, or: sudo apt-get install ${missing[*]})"
    return 1
  fi
}

_pg_answers() {
  # True when the PostgreSQL server of URL accepts a connection. It connects to the server's
  # "postgres" maintenance database, not URL's own: on a new machine URL's database does not
  # exist yet (_ensure_database creates it), and a missing database is not a server that is down.
  python - "$1" <<'PY' 2>/dev/null
import sys, urllib.parse
import psycopg
u = urllib.parse.urlsplit(sys.argv[1])
psycopg.connect(urllib.parse.urlunsplit(u._replace(path="/postgres")), connect_timeout=3).close()
PY
}

_pg_bindir() {
  # The newest installed server binaries (Debian keeps them out of PATH).
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && printf '%s' "$dir" && return 0
  command -v initdb >/dev/null && dirname "$(command -v initdb)" && return 0
  return 1
}

_url_part() {
  # host, port, user, password or dbname of a postgres:// URL.
  python - "$1" "$2" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
part = sys.argv[2]
print({"host": u.hostname or "127.0.0.1", "port": u.port or 5432, "user": u.username or "postgres",
       "password": u.password or "", "dbname": u.path.lstrip("/") or "vertebra"}[part])
PY
}

_ensure_database() {
  # Create URL's database on its (running) server if it is not there yet.
  python - "$1" <<'PY' >&2
import sys, urllib.parse
import psycopg
u = urllib.parse.urlsplit(sys.argv[1])
name = u.path.lstrip("/") or "vertebra"
admin = urllib.parse.urlunsplit(u._replace(path="/postgres"))
with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
        conn.execute(f'CREATE DATABASE "{name}"')
PY
}

_start_machine_cluster() {
  # Root on a Debian machine with a cluster on URL's port: start it, as .ci/run used to.
  local port="$1" version
  _is_root && command -v pg_lsclusters >/dev/null || return 1
  version="$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p {print $1 " " $2; exit}')"
  [[ -n "$version" ]] || return 1
  _say "    starting the machine's PostgreSQL cluster ${version/ /\/} on port $port"
  # shellcheck disable=SC2086  # "VERSION NAME" splits into two arguments on purpose
  pg_ctlcluster --skip-systemctl-redirect $version start >&2 || return 1
  for _ in $(seq 1 30); do
    su postgres -c "psql -p $port -qAtc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
  done
  # A cluster Debian just installed asks for a password over TCP: set the one the URL names.
  su postgres -c "psql -p $port -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1
  return 0
}

_start_throwaway() {
  # A private server from the installed binaries, on URL's host and port, trust auth.
  local host="$1" port="$2" bindir run=()
  bindir="$(_pg_bindir)" || return 1
  THROWAWAY_PG_DIR="$(mktemp -d /tmp/vertebra-test-pg.XXXXXX)"
  if _is_root; then
    # initdb refuses to run as root: the throwaway server belongs to the postgres user.
    id postgres >/dev/null 2>&1 || return 1
    chown postgres "$THROWAWAY_PG_DIR"
    run=(runuser -u postgres --)
  fi
  _say "    starting a throwaway PostgreSQL ($bindir) on $host:$port in $THROWAWAY_PG_DIR"
  "${run[@]}" "$bindir/initdb" -D "$THROWAWAY_PG_DIR/data" -U postgres -A trust \
    --no-sync -E UTF8 >"$THROWAWAY_PG_DIR/initdb.log" 2>&1 || return 1
  "${run[@]}" "$bindir/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -l "$THROWAWAY_PG_DIR/server.log" -w \
    -o "-h $host -p $port -k $THROWAWAY_PG_DIR -c fsync=off" start >&2 || return 1
}

stop_throwaway_postgres() {
  # Stop and remove the server _start_throwaway made (no-op when there is none).
  [[ -n "$THROWAWAY_PG_DIR" && -d "$THROWAWAY_PG_DIR/data" ]] || return 0
  local bindir run=()
  bindir="$(_pg_bindir)" || return 0
  _is_root && run=(runuser -u postgres --)
  "${run[@]}" "$bindir/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$THROWAWAY_PG_DIR"
  THROWAWAY_PG_DIR=""
}

ensure_postgres() {
  local url="$1" host port
  if _pg_answers "$url"; then
    _ensure_database "$url" || return 1
    PG_URL="$url"
    return 0
  fi
  host="$(_url_part "$url" host)"
  port="$(_url_part "$url" port)"
  if [[ "$host" != "127.0.0.1" && "$host" != "localhost" && "$host" != "::1" ]]; then
    _say "missing: PostgreSQL at $host:$port does not answer (set VERTEBRA_TEST_DATABASE_URL to a server that does)"
    return 1
  fi
  _pg_bindir >/dev/null || _apt_install postgresql postgresql-client || true
  if ! _pg_bindir >/dev/null; then
    _say "missing: PostgreSQL server binaries (run as root to install them, or: sudo apt-get install postgresql; or set VERTEBRA_TEST_DATABASE_URL)"
    return 1
  fi
  if _start_machine_cluster "$port" && _pg_answers "$url"; then
    :
  elif _start_throwaway "$host" "$port"; then
    # The throwaway server trusts local connections: the URL's password is not needed.
    url="postgres://postgres@$host:$port/$(_url_part "$url" dbname)"
  else
    _say "missing: could not start PostgreSQL on $host:$port (see ${THROWAWAY_PG_DIR:-the server log}; is the port taken?)"
    return 1
  fi
  _ensure_database "$url" || return 1
  PG_URL="$url"
}

ensure_fhir_validator() {
  # The independent R4 validator the FHIR tests run (Medplum, pinned by the lock file).
  command -v npm >/dev/null || _apt_install nodejs npm || true
  if ! command -v npm >/dev/null; then
    _say "missing: node and npm (Node 20 or later) for tools/fhir-validate (sudo apt-get install nodejs npm)"
    return 1
  fi
  (cd tools/fhir-validate && npm ci --no-audit --no-fund --loglevel=error >&2)
}
