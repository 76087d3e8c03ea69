#!/usr/bin/env bash
# services.sh: find or start the PostgreSQL and Redis that payrail runs against.
#
#   scripts/services.sh up [--fast] [--owner up|test]
#   scripts/services.sh down [--owner up|test]
#   scripts/services.sh env
#   scripts/services.sh status
#
# Configuration (environment):
#   PAYRAIL_DATABASE_URL  default postgres://payrail:payrail@127.0.0.1:55432/payrail?sslmode=disable
#   PAYRAIL_REDIS_URL     default redis://127.0.0.1:56379/0
#   PG_BINDIR             PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)
#
# `up` uses whatever already answers at the configured URL. Only when nothing answers does
# it start a private instance from the system's binaries (installing them with apt-get when
# missing) with its data under <repo>/.run/pg and <repo>/.run/redis. Every service this
# repository started is recorded in .run/started; `down` stops exactly those and never a
# server it merely found. --fast (used by `make test`) runs a newly started PostgreSQL
# without fsync and a newly started Redis without an append-only file; `make up` keeps both
# durable. --owner tags what this call starts so `make test` can stop what it started
# without stopping what `make up` is using.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATABASE_URL="${PAYRAIL_DATABASE_URL:-$DEFAULT_DATABASE_URL}"
REDIS_URL="${PAYRAIL_REDIS_URL:-$DEFAULT_REDIS_URL}"
STARTED="$RUN/started"
PG_DIR="$RUN/pg"
PG_DATA="$PG_DIR/data"
PG_LOG="$RUN/logs/postgres.log"
REDIS_DIR="$RUN/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$RUN/logs/redis.log"

# ---- URL parsing -------------------------------------------------------------------------

# parse_pg_url sets PG_USER, PG_PASS, PG_HOST, PG_PORT, PG_DB from DATABASE_URL.
parse_pg_url() {
  local re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
  [[ $DATABASE_URL =~ $re ]] || die "cannot parse PAYRAIL_DATABASE_URL: $DATABASE_URL"
  PG_USER="${BASH_REMATCH[3]:-postgres}"
  PG_PASS="${BASH_REMATCH[5]:-}"
  PG_HOST="${BASH_REMATCH[6]:-127.0.0.1}"
  PG_PORT="${BASH_REMATCH[8]:-5432}"
  PG_DB="${BASH_REMATCH[10]:-$PG_USER}"
}

# parse_redis_url sets REDIS_PASS, REDIS_HOST, REDIS_PORT from REDIS_URL.
parse_redis_url() {
  local re='^rediss?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([0-9]*))?(\?.*)?$'
  [[ $REDIS_URL =~ $re ]] || die "cannot parse PAYRAIL_REDIS_URL: $REDIS_URL"
  REDIS_PASS="${BASH_REMATCH[4]:-}"
  REDIS_HOST="${BASH_REMATCH[5]:-127.0.0.1}"
  REDIS_PORT="${BASH_REMATCH[7]:-6379}"
}

is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

# ---- .run/started bookkeeping --------------------------------------------------------------
# One line per service this repository started: "<service> <owner>".

started_owner() { [[ -f $STARTED ]] && awk -v s="$1" '$1==s {print $2; exit}' "$STARTED" || true; }
set_started() {
  mkdir -p "$RUN"
  { [[ -f $STARTED ]] && awk -v s="$1" '$1!=s' "$STARTED"; echo "$1 $2"; } >"$STARTED.tmp" || true
  mv "$STARTED.tmp" "$STARTED"
}
unset_started() {
  [[ -f $STARTED ]] || return 0
  awk -v s="$1" '$1!=s' "$STARTED" >"$STARTED.tmp" || true
  mv "$STARTED.tmp" "$STARTED"
  [[ -s $STARTED ]] || rm -f "$STARTED"
}

# record_ours notes that a service of ours is running. A new owner "up" claims it from
# "test" so a finishing `make test` leaves alone what `make up` now relies on.
record_ours() {
  local svc=$1 owner=$2 cur
  cur=$(started_owner "$svc")
  if [[ -z $cur || $owner == up ]]; then set_started "$svc" "$owner"; fi
}

# ---- PostgreSQL ---------------------------------------------------------------------------

find_pg_bindir() {
  if [[ -n ${PG_BINDIR:-} ]]; then echo "$PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n $d && -x $d/initdb ]]; then echo "$d"; return; fi
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir; return
  fi
  if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; fi
}

# pg_tool prints the path of a PostgreSQL client tool, or nothing.
pg_tool() {
  local b; b=$(find_pg_bindir)
  if [[ -n $b && -x $b/$1 ]]; then echo "$b/$1"; elif command -v "$1" >/dev/null; then command -v "$1"; fi
}

pg_answers() {
  local isready; isready=$(pg_tool pg_isready)
  if [[ -n $isready ]]; then
    "$isready" -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1
  else
    port_open "$PG_HOST" "$PG_PORT"
  fi
}

# as_pg runs a PostgreSQL server command as the postgres user (it refuses to run as root).
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

ensure_pg_binaries() {
  if [[ -z "$(find_pg_bindir)" ]]; then
    say "PostgreSQL server binaries not found"
    apt_install postgresql 9>&- # a daemon the package starts must not inherit our lock
    [[ -n "$(find_pg_bindir)" ]] || die "installed postgresql but still cannot find initdb (set PG_BINDIR)"
  fi
}

ensure_postgres_user() {
  [[ $EUID -eq 0 ]] || return 0
  if ! id postgres >/dev/null 2>&1; then
    say "creating system user postgres (PostgreSQL refuses to run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  if ! runuser -u postgres -- test -x "$RUN"; then
    die "user postgres cannot enter $RUN (a parent directory is private); move the clone somewhere world-traversable, e.g. under /work or /srv, or point PAYRAIL_DATABASE_URL at a running server"
  fi
}

our_pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  local b; b=$(find_pg_bindir); [[ -n $b ]] || return 1
  as_pg "$b/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_start() {
  local fast=$1 bindir sock opts
  is_local_host "$PG_HOST" || die "nothing answers at $PG_HOST:$PG_PORT and it is not this machine; start that PostgreSQL or change PAYRAIL_DATABASE_URL"
  ensure_pg_binaries
  bindir=$(find_pg_bindir)
  mkdir -p "$RUN/logs" "$PG_DIR"
  ensure_postgres_user
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "initialising a private PostgreSQL cluster in .run/pg/data ($("$bindir/postgres" --version))"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DIR" "$PG_DATA"
    chmod 700 "$PG_DATA"
    as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust >"$PG_DIR/initdb.log" 2>&1 \
      || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PG_DATA/postgresql.conf" <<'CONF'

# payrail: a private local development / test server (scripts/services.sh).
max_connections = 300
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
CONF
  fi
  if our_pg_running; then
    die "the private PostgreSQL in .run/pg is running but does not answer at $PG_HOST:$PG_PORT (was PAYRAIL_DATABASE_URL changed?); run scripts/services.sh down first"
  fi
  # The unix socket lives inside .run unless the path is too long for a socket address.
  sock="$PG_DIR/sock"
  if (( ${#sock} > 90 )); then sock=""; else mkdir -p "$sock"; fi
  [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
  touch "$PG_LOG"; [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_LOG"
  local listen=$PG_HOST; [[ $listen == localhost ]] || listen="'$listen'"
  opts="-c listen_addresses=$listen -c port=$PG_PORT -c unix_socket_directories='$sock'"
  if [[ $fast == 1 ]]; then
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    say "starting PostgreSQL on $PG_HOST:$PG_PORT (test mode: fsync off)"
  else
    say "starting PostgreSQL on $PG_HOST:$PG_PORT (durable: fsync on)"
  fi
  if ! as_pg "$bindir/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -o "$opts" >/dev/null 9>&-; then
    if pg_answers; then
      note "another PostgreSQL took $PG_HOST:$PG_PORT meanwhile; using it"
      return 1
    fi
    tail -n 20 "$PG_LOG" >&2 || true
    die "PostgreSQL did not start; log: $PG_LOG"
  fi
  return 0
}

psql_run() { # psql_run <url-or-conninfo> args...
  local psql; psql=$(pg_tool psql)
  PGCONNECT_TIMEOUT=5 "$psql" "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"
}

# pg_check_login makes sure the URL's role can log into its database, creating both when
# the postgres superuser can (our own server, or any trust-configured one).
pg_check_login() {
  local psql; psql=$(pg_tool psql)
  if [[ -z $psql ]]; then note "psql not installed; not checking the login"; return; fi
  if psql_run "$DATABASE_URL" -Atc 'select 1' >/dev/null 2>&1; then return; fi
  note "cannot log in as $PG_USER to $PG_DB yet; creating them through the postgres superuser"
  pg_provision || die "PostgreSQL at $PG_HOST:$PG_PORT answers, but $PG_USER cannot log into $PG_DB and the postgres superuser cannot create them; fix PAYRAIL_DATABASE_URL"
  psql_run "$DATABASE_URL" -Atc 'select 1' >/dev/null || die "still cannot log in with PAYRAIL_DATABASE_URL"
}

# pg_provision creates the role and database of the URL through the postgres superuser
# (trust authentication on servers this repository starts).
pg_provision() {
  local psql; psql=$(pg_tool psql)
  PGCONNECT_TIMEOUT=5 "$psql" "host=$PG_HOST port=$PG_PORT user=postgres dbname=postgres" \
    -X -q -v ON_ERROR_STOP=1 -v u="$PG_USER" -v p="${PG_PASS:-$PG_USER}" -v d="$PG_DB" >/dev/null 2>&1 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'u', :'p')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'u')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'d') \gexec
SQL
}

pg_up() {
  local fast=$1 owner=$2
  parse_pg_url
  if pg_answers; then
    if our_pg_running; then
      note "PostgreSQL at $PG_HOST:$PG_PORT answers (this repo's .run/pg)"
      record_ours pg "$owner"
    else
      note "PostgreSQL at $PG_HOST:$PG_PORT answers (found running; not ours, will not stop it)"
    fi
  else
    ensure_pg_binaries
    if pg_start "$fast"; then record_ours pg "$owner"; fi
  fi
  pg_check_login
}

pg_down() {
  local bindir; bindir=$(find_pg_bindir)
  if [[ -n $bindir && -f $PG_DATA/PG_VERSION ]] && our_pg_running; then
    say "stopping PostgreSQL (.run/pg)"
    as_pg "$bindir/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
  else
    note "PostgreSQL from .run/pg is not running"
  fi
}

# ---- Redis --------------------------------------------------------------------------------

redis_answers() {
  if command -v redis-cli >/dev/null; then
    [[ "$(timeout 3 redis-cli -u "$REDIS_URL" --no-auth-warning ping 2>/dev/null)" == PONG ]]
  else
    port_open "$REDIS_HOST" "$REDIS_PORT"
  fi
}

pid_is_redis() { [[ -n ${1:-} && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q redis-server; }
our_redis_pid() {
  local pid
  [[ -f $REDIS_PID ]] || return 1
  pid=$(cat "$REDIS_PID" 2>/dev/null || true)
  pid_is_redis "$pid" && echo "$pid"
}

redis_start() {
  local fast=$1 args
  is_local_host "$REDIS_HOST" || die "nothing answers at $REDIS_HOST:$REDIS_PORT and it is not this machine; start that Redis or change PAYRAIL_REDIS_URL"
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    say "redis-server not found"
    apt_install redis-server 9>&- # a daemon the package starts must not inherit our lock
    # The package may start its own server on 6379; that one is the system's, not ours.
  fi
  if our_redis_pid >/dev/null; then
    die "this repo's Redis (.run/redis) is running but does not answer at $REDIS_HOST:$REDIS_PORT (was PAYRAIL_REDIS_URL changed?); run scripts/services.sh down first"
  fi
  mkdir -p "$REDIS_DIR" "$RUN/logs"
  args=(--bind "$REDIS_HOST" --port "$REDIS_PORT" --databases 4096
        --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR"
        --save '')
  [[ -n $REDIS_PASS ]] && args+=(--requirepass "$REDIS_PASS")
  if [[ $fast == 1 ]]; then
    args+=(--appendonly no)
    say "starting Redis on $REDIS_HOST:$REDIS_PORT (test mode: no persistence)"
  else
    args+=(--appendonly yes --appendfsync everysec)
    say "starting Redis on $REDIS_HOST:$REDIS_PORT (append-only file in .run/redis)"
  fi
  redis-server "${args[@]}" >/dev/null 9>&-
  local i
  for i in $(seq 1 50); do
    redis_answers && return 0
    sleep 0.2
  done
  tail -n 20 "$REDIS_LOG" >&2 || true
  die "Redis did not answer within 10 s; log: $REDIS_LOG"
}

redis_up() {
  local fast=$1 owner=$2
  parse_redis_url
  if redis_answers; then
    if our_redis_pid >/dev/null; then
      note "Redis at $REDIS_HOST:$REDIS_PORT answers (this repo's .run/redis)"
      record_ours redis "$owner"
    else
      note "Redis at $REDIS_HOST:$REDIS_PORT answers (found running; not ours, will not stop it)"
    fi
    return
  fi
  redis_start "$fast"
  record_ours redis "$owner"
}

redis_down() {
  local pid i
  if pid=$(our_redis_pid); then
    say "stopping Redis (.run/redis, pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 1 100); do
      pid_is_redis "$pid" || { rm -f "$REDIS_PID"; return 0; }
      sleep 0.1
    done
    warn "Redis pid $pid did not stop within 10 s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$REDIS_PID"
  else
    note "Redis from .run/redis is not running"
  fi
}

# ---- commands -----------------------------------------------------------------------------

# Clones on one machine share the default ports: serialise discovery and start-up so two
# of them never race to start a server on the same port.
lock() {
  local f=/tmp/payrail-services.lock
  exec 9>>"$f"
  chmod 666 "$f" 2>/dev/null || true
  flock -n 9 && return 0
  note "waiting for another payrail services.sh (lock $f)"
  flock -w 900 9 || die "waited 15 min for $f (another payrail services.sh is busy)"
}

# shell_kv prints KEY=value, quoting the value only when a shell would need it.
shell_kv() {
  if [[ $2 =~ ^[A-Za-z0-9_./:@?=,+%-]*$ ]]; then printf '%s=%s\n' "$1" "$2"
  else printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; fi
}

cmd_env() {
  shell_kv PAYRAIL_DATABASE_URL "$DATABASE_URL"
  shell_kv PAYRAIL_REDIS_URL "$REDIS_URL"
  # Tests create one database per test from a superuser URL (the role in our URL is a
  # superuser on servers we start) and pick their own Redis DB index.
  shell_kv PAYRAIL_TEST_DATABASE_URL "${PAYRAIL_TEST_DATABASE_URL:-$DATABASE_URL}"
  shell_kv PAYRAIL_TEST_REDIS_URL "${PAYRAIL_TEST_REDIS_URL:-$REDIS_URL}"
}

cmd_up() {
  local fast=0 owner=up start
  while (($#)); do
    case $1 in
      --fast) fast=1 ;;
      --owner) owner=${2:?--owner needs up or test}; shift ;;
      *) die "unknown option to up: $1" ;;
    esac
    shift
  done
  start=$(now_ns)
  lock
  say "services: PostgreSQL ${DATABASE_URL%%\?*}, Redis $REDIS_URL"
  pg_up "$fast" "$owner"
  redis_up "$fast" "$owner"
  say "services ready ($(elapsed "$start"))"
}

cmd_down() {
  local only="" svc owner
  while (($#)); do
    case $1 in
      --owner) only=${2:?--owner needs up or test}; shift ;;
      *) die "unknown option to down: $1" ;;
    esac
    shift
  done
  lock
  if [[ ! -s $STARTED ]]; then note "no services started by this repo are recorded in .run/started"; return 0; fi
  while read -r svc owner; do
    [[ -z $svc ]] && continue
    if [[ -n $only && $owner != "$only" ]]; then
      note "$svc was started by 'make $owner'; leaving it running"
      continue
    fi
    case $svc in
      pg) pg_down ;;
      redis) redis_down ;;
      *) warn "unknown entry in .run/started: $svc" ;;
    esac
    unset_started "$svc"
  done < <(cat "$STARTED")
}

cmd_status() {
  parse_pg_url; parse_redis_url
  if pg_answers; then echo "postgres  $PG_HOST:$PG_PORT  answers$(our_pg_running && echo ' (ours: .run/pg)')"
  else echo "postgres  $PG_HOST:$PG_PORT  not answering"; fi
  if redis_answers; then echo "redis     $REDIS_HOST:$REDIS_PORT  answers$(our_redis_pid >/dev/null && echo ' (ours: .run/redis)')"
  else echo "redis     $REDIS_HOST:$REDIS_PORT  not answering"; fi
  if [[ -s $STARTED ]]; then echo "recorded in .run/started:"; sed 's/^/  /' "$STARTED"; fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [--fast] [--owner up|test] | down [--owner up|test] | env | status" >&2; exit 2 ;;
esac
