#!/usr/bin/env bash
# services.sh: find or start the PostgreSQL and Redis that payrail runs against.
#
#   scripts/services.sh up [--fast] [--owner up|test]
#   scripts/services.sh down [--owner up|test]
#   scripts/services.sh env        the URLs (with passwords) as shell KEY=value lines
#   scripts/services.sh status
#   scripts/services.sh psql [ARGS] / redis-cli [ARGS]   clients on those URLs
#
# Configuration (environment):
#   PAYRAIL_DATABASE_URL  unset: this repo's private PostgreSQL,
#                         postgres://payrail:<generated>@127.0.0.1:55432/payrail?sslmode=disable
#   PAYRAIL_REDIS_URL     unset: this repo's private Redis, redis://:<generated>@127.0.0.1:56379/0
#   PAYRAIL_POSTGRES_PORT, PAYRAIL_REDIS_PORT  the ports of those private servers (55432, 56379)
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
#
# Private servers have no trust anywhere. Their passwords are generated once into
# .run/secrets (0600) and kept: PostgreSQL takes SCRAM passwords over TCP (the application
# role `payrail` owns the database `payrail` and is not a superuser; the tests' URL is the
# superuser `postgres`, which may create a database per test) and its unix socket, in a
# private directory, admits only the server's OS user as postgres; Redis has requirepass.
# A .run/ made before this (trust, a superuser payrail, no Redis password) is upgraded in
# place by the next `up`. Passwords reach psql and redis-cli through PGPASSWORD and
# REDISCLI_AUTH, never their command lines. Everything under .run/ is created 0600/0700.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

umask 077
ensure_run_dir
STARTED="$RUN/started"
SECRETS="$RUN/secrets"
PG_DIR="$RUN/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/sock"
PG_LOG="$RUN/logs/postgres.log"
REDIS_DIR="$RUN/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_LOG="$RUN/logs/redis.log"
OUR_PG_PORT=${PAYRAIL_POSTGRES_PORT:-55432}
OUR_REDIS_PORT=${PAYRAIL_REDIS_PORT:-56379}
HBA_MARK='# payrail: scripts/services.sh (no trust)'

# ---- secrets ------------------------------------------------------------------------------
# .run/secrets: KEY=value lines, generated once under the lock and kept across runs.

secret() { [[ -f $SECRETS ]] && sed -n "s/^$1=//p" "$SECRETS" | tail -n1; return 0; }
secrets_complete() {
  [[ -n $(secret POSTGRES_ADMIN_PASSWORD) && -n $(secret POSTGRES_APP_PASSWORD) && -n $(secret REDIS_PASSWORD) ]]
}
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
load_secrets() {
  if ! secrets_complete; then
    lock
    if ! secrets_complete; then
      local k v
      {
        echo "# Written by scripts/services.sh: passwords of this repo's private PostgreSQL and Redis, kept across runs."
        for k in POSTGRES_ADMIN_PASSWORD POSTGRES_APP_PASSWORD REDIS_PASSWORD; do
          v=$(secret "$k"); [[ -n $v ]] || v=$(rand_hex 24)
          echo "$k=$v"
        done
      } >"$SECRETS.tmp"
      mv "$SECRETS.tmp" "$SECRETS"
      note "generated passwords for the private PostgreSQL and Redis (${SECRETS#"$ROOT"/}, mode 0600)"
    fi
  fi
  chmod 600 "$SECRETS"
  PG_ADMIN_PASS=$(secret POSTGRES_ADMIN_PASSWORD)
  PG_APP_PASS=$(secret POSTGRES_APP_PASSWORD)
  REDIS_OUR_PASS=$(secret REDIS_PASSWORD)
}

# resolve_urls sets DATABASE_URL and REDIS_URL, PG_MANAGED / REDIS_MANAGED (1: this repo's
# private server, whose credentials we generate) and the admin URL of our PostgreSQL.
resolve_urls() {
  load_secrets
  local managed_db="postgres://payrail:$PG_APP_PASS@127.0.0.1:$OUR_PG_PORT/payrail?sslmode=disable"
  local managed_redis="redis://:$REDIS_OUR_PASS@127.0.0.1:$OUR_REDIS_PORT/0"
  DATABASE_URL=${PAYRAIL_DATABASE_URL:-}
  PG_MANAGED=0
  if [[ -z $DATABASE_URL || $DATABASE_URL == "$LEGACY_DATABASE_URL" || $DATABASE_URL == "$managed_db" ]]; then
    DATABASE_URL=$managed_db PG_MANAGED=1
  fi
  REDIS_URL=${PAYRAIL_REDIS_URL:-}
  REDIS_MANAGED=0
  if [[ -z $REDIS_URL || $REDIS_URL == "$LEGACY_REDIS_URL" || $REDIS_URL == "$managed_redis" ]]; then
    REDIS_URL=$managed_redis REDIS_MANAGED=1
  fi
  parse_pg_url; parse_redis_url
  ADMIN_DATABASE_URL="postgres://postgres:$PG_ADMIN_PASS@$PG_HOST:$PG_PORT/postgres?sslmode=disable"
}

# ---- URL parsing -------------------------------------------------------------------------

# parse_pg_url sets PG_USER, PG_PASS, PG_HOST, PG_PORT, PG_DB from DATABASE_URL.
parse_pg_url() {
  local re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
  [[ $DATABASE_URL =~ $re ]] || die "cannot parse PAYRAIL_DATABASE_URL: $(mask_url "$DATABASE_URL")"
  PG_USER="${BASH_REMATCH[3]:-postgres}"
  PG_PASS="${BASH_REMATCH[5]:-}"
  PG_HOST="${BASH_REMATCH[6]:-127.0.0.1}"
  PG_PORT="${BASH_REMATCH[8]:-5432}"
  PG_DB="${BASH_REMATCH[10]:-$PG_USER}"
  PG_PASS=$(url_decode "$PG_PASS")
  PG_URL_NOPASS=$(strip_password "$DATABASE_URL")
}

# url_decode undoes %XX escapes; strip_password drops the password from a URL's userinfo.
url_decode() { printf '%b' "${1//%/\\x}"; }
strip_password() {
  local re='^([a-z]+://[^:@/]*):[^@/]*@(.*)$'
  if [[ $1 =~ $re ]]; then printf '%s@%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; else printf '%s\n' "$1"; fi
}

# parse_redis_url sets REDIS_PASS, REDIS_HOST, REDIS_PORT from REDIS_URL.
parse_redis_url() {
  local re='^rediss?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([0-9]*))?(\?.*)?$'
  [[ $REDIS_URL =~ $re ]] || die "cannot parse PAYRAIL_REDIS_URL: $(mask_url "$REDIS_URL")"
  REDIS_USER="${BASH_REMATCH[2]:-}"
  REDIS_PASS=$(url_decode "${BASH_REMATCH[4]:-}")
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

# pg_os_user is the OS user our server runs as (the only one its unix socket admits).
pg_os_user() { if [[ $EUID -eq 0 ]]; then echo postgres; else id -un; fi; }

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

# pg_write_conf writes a file of our cluster as its owner: pg_write_conf FILE <<<CONTENT.
# shellcheck disable=SC2016 # $1 is expanded by the inner sh
pg_write_conf() { as_pg sh -c 'umask 077 && cat >"$1.tmp" && mv "$1.tmp" "$1"' sh "$1"; }

# pg_write_hba makes our cluster trust no one: TCP needs a SCRAM password and the unix
# socket (in a 0700 directory) admits only the server's own OS user, as postgres.
pg_write_hba() {
  pg_write_conf "$PG_DATA/pg_hba.conf" <<EOF
$HBA_MARK
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer map=payrail
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
EOF
  pg_write_conf "$PG_DATA/pg_ident.conf" <<EOF
$HBA_MARK
# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
payrail    $(pg_os_user)    postgres
EOF
}

pg_start() {
  local fast=$1 bindir sock opts
  is_local_host "$PG_HOST" || die "nothing answers at $PG_HOST:$PG_PORT and it is not this machine; start that PostgreSQL or change PAYRAIL_DATABASE_URL"
  ensure_pg_binaries
  bindir=$(find_pg_bindir)
  mkdir -p "$RUN/logs" "$PG_DIR"
  [[ $EUID -eq 0 ]] && chmod 711 "$RUN/logs" # postgres writes .run/logs/postgres.log
  ensure_postgres_user
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "initialising a private PostgreSQL cluster in .run/pg/data ($("$bindir/postgres" --version))"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_DIR" "$PG_DATA"
    chmod 700 "$PG_DIR" "$PG_DATA"
    # The superuser's password reaches initdb through a 0600 file, not its command line.
    pg_write_conf "$PG_DIR/initdb.pw" <<<"$PG_ADMIN_PASS"
    if ! as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
      --auth-local=peer --auth-host=scram-sha-256 --pwfile="$PG_DIR/initdb.pw" >"$PG_DIR/initdb.log" 2>&1; then
      rm -f "$PG_DIR/initdb.pw"; cat "$PG_DIR/initdb.log" >&2; die "initdb failed"
    fi
    rm -f "$PG_DIR/initdb.pw"
    cat >>"$PG_DATA/postgresql.conf" <<'CONF'

# payrail: a private local development / test server (scripts/services.sh).
max_connections = 300
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
password_encryption = scram-sha-256
CONF
    pg_write_hba
  fi
  if our_pg_running; then
    die "the private PostgreSQL in .run/pg is running but does not answer at $PG_HOST:$PG_PORT (was PAYRAIL_DATABASE_URL changed?); run scripts/services.sh down first"
  fi
  # The unix socket lives in a private directory inside .run unless the path is too long
  # for a socket address.
  sock=$PG_SOCK
  if (( ${#sock} > 90 )); then sock=""; else mkdir -p "$sock"; fi
  [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DIR"; [[ -n $sock ]] && chmod 700 "$sock"
  touch "$PG_LOG"; chmod 600 "$PG_LOG"; [[ $EUID -eq 0 ]] && chown postgres:postgres "$PG_LOG"
  local listen=$PG_HOST; [[ $listen == localhost ]] || listen="'$listen'"
  opts="-c listen_addresses=$listen -c port=$PG_PORT -c unix_socket_directories='$sock' -c unix_socket_permissions=0700"
  # make bench prints the statements per payment from pg_stat_statements (issue 19).
  opts+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=2000"
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

# psql_as <url> <password> args...: psql on a URL without its password, which travels in
# PGPASSWORD (so `ps` never shows it).
psql_as() {
  local psql; psql=$(pg_tool psql)
  PGPASSWORD=$2 PGCONNECT_TIMEOUT=5 "$psql" "$(strip_password "$1")" -X -q -v ON_ERROR_STOP=1 "${@:3}"
}
psql_run() { psql_as "$DATABASE_URL" "$PG_PASS" "$@"; }

# pg_admin_sql SQL runs SQL (given on stdin to psql, never as an argument) as the postgres
# superuser of our own server: through the private unix socket when there is one (peer;
# this also works while an old .run/ still says trust, and when the password was lost),
# else over TCP with the generated password.
pg_admin_sql() {
  local psql; psql=$(pg_tool psql)
  if [[ -S $PG_SOCK/.s.PGSQL.$PG_PORT ]] &&
     as_pg env PGCONNECT_TIMEOUT=5 "$psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres \
       -X -q -v ON_ERROR_STOP=1 >/dev/null <<<"$1"; then
    return 0
  fi
  psql_as "postgres://postgres@$PG_HOST:$PG_PORT/postgres?sslmode=disable" "$PG_ADMIN_PASS" >/dev/null <<<"$1"
}

sql_lit() { printf "'%s'" "${1//\'/\'\'}"; }
sql_ident() { printf '"%s"' "${1//\"/\"\"}"; }

# pg_secure_ours makes our own server match .run/secrets: the postgres superuser has the
# admin password; the URL's role exists, logs in with the URL's password, is NOT a
# superuser and owns the URL's database; pg_hba.conf trusts no one. Run on every `up`, it
# is also what upgrades a cluster made by the old script (trust, a superuser payrail).
pg_secure_ours() {
  [[ -n $(pg_tool psql) ]] || die "psql not installed; cannot set up the private PostgreSQL's roles"
  if [[ $PG_USER == postgres ]]; then die "PAYRAIL_DATABASE_URL must not use the postgres superuser on this repo's private server"; fi
  [[ -n $PG_PASS ]] || die "PAYRAIL_DATABASE_URL has no password; this repo's private PostgreSQL requires one"
  local hba_ok=0 sql
  grep -qxF "$HBA_MARK" "$PG_DATA/pg_hba.conf" 2>/dev/null && hba_ok=1
  if ((hba_ok)) && pg_login_ok "$ADMIN_DATABASE_URL" "$PG_ADMIN_PASS" &&
     [[ "$(psql_run -Atc 'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null)" == f ]]; then
    return 0
  fi
  ((hba_ok)) || say "securing the private PostgreSQL (.run/pg): passwords, a non-superuser $PG_USER, no trust"
  sql="SET password_encryption = 'scram-sha-256';
ALTER ROLE postgres PASSWORD $(sql_lit "$PG_ADMIN_PASS");
SELECT format('CREATE ROLE %I', $(sql_lit "$PG_USER")) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $(sql_lit "$PG_USER")) \\gexec
ALTER ROLE $(sql_ident "$PG_USER") LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD $(sql_lit "$PG_PASS");
SELECT format('CREATE DATABASE %I OWNER %I', $(sql_lit "$PG_DB"), $(sql_lit "$PG_USER")) WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = $(sql_lit "$PG_DB")) \\gexec
ALTER DATABASE $(sql_ident "$PG_DB") OWNER TO $(sql_ident "$PG_USER");"
  pg_admin_sql "$sql" || die "could not set the roles of the private PostgreSQL (.run/pg); log: $PG_LOG"
  if ! ((hba_ok)); then
    note "pg_hba.conf: SCRAM passwords over TCP, the unix socket only for the server's own user"
    pg_write_hba
    [[ -d $PG_SOCK ]] && chmod 700 "$PG_SOCK"
    as_pg "$(find_pg_bindir)/pg_ctl" reload -D "$PG_DATA" >/dev/null
  fi
  local i
  for i in $(seq 1 25); do
    pg_login_ok "$DATABASE_URL" "$PG_PASS" && pg_login_ok "$ADMIN_DATABASE_URL" "$PG_ADMIN_PASS" && return 0
    sleep 0.2
  done
  die "the private PostgreSQL does not accept the passwords in ${SECRETS#"$ROOT"/}; log: $PG_LOG"
}

# pg_stat_statements_ours creates the extension in the URL's database (a superuser's job)
# and lets payrail's role read every statement's counts, for make bench. On a server
# started before the library was preloaded the view errors; the bench then says "not
# loaded" (make down && make up loads it).
pg_stat_statements_ours() {
  local psql; psql=$(pg_tool psql)
  local sql="CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
GRANT pg_read_all_stats TO $(sql_ident "$PG_USER");"
  if [[ -S $PG_SOCK/.s.PGSQL.$PG_PORT ]] &&
     as_pg env PGCONNECT_TIMEOUT=5 "$psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "$PG_DB" \
       -X -q -v ON_ERROR_STOP=1 >/dev/null <<<"$sql"; then
    return 0
  fi
  psql_as "postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB?sslmode=disable" "$PG_ADMIN_PASS" >/dev/null <<<"$sql" ||
    note "could not create pg_stat_statements in $PG_DB; make bench will not list statements"
}

pg_login_ok() { psql_as "$1" "$2" -Atc 'select 1' >/dev/null 2>&1; }

# pg_check_login makes sure the URL's role can log into its database on a server we did
# not start, creating both when the postgres superuser can without a password (a
# trust-configured server).
pg_check_login() {
  local psql; psql=$(pg_tool psql)
  if [[ -z $psql ]]; then note "psql not installed; not checking the login"; return; fi
  if pg_login_ok "$DATABASE_URL" "$PG_PASS"; then return; fi
  note "cannot log in as $PG_USER to $PG_DB yet; creating them through the postgres superuser"
  pg_provision || die "PostgreSQL at $PG_HOST:$PG_PORT answers, but $PG_USER cannot log into $PG_DB and the postgres superuser cannot create them; fix PAYRAIL_DATABASE_URL"
  pg_login_ok "$DATABASE_URL" "$PG_PASS" || die "still cannot log in with PAYRAIL_DATABASE_URL"
}

# pg_provision creates the role (allowed to create databases, for the tests, but not a
# superuser) and database of the URL through a passwordless postgres superuser.
pg_provision() {
  [[ -n $PG_PASS ]] || return 1
  psql_as "postgres://postgres@$PG_HOST:$PG_PORT/postgres?sslmode=disable" "" >/dev/null 2>&1 <<SQL
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', $(sql_lit "$PG_USER"), $(sql_lit "$PG_PASS"))
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $(sql_lit "$PG_USER")) \gexec
SELECT format('CREATE DATABASE %I OWNER %I', $(sql_lit "$PG_DB"), $(sql_lit "$PG_USER"))
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = $(sql_lit "$PG_DB")) \gexec
SQL
}

pg_up() {
  local fast=$1 owner=$2 ours=0
  if pg_answers; then
    if our_pg_running; then
      note "PostgreSQL at $PG_HOST:$PG_PORT answers (this repo's .run/pg)"
      record_ours pg "$owner"; ours=1
    else
      note "PostgreSQL at $PG_HOST:$PG_PORT answers (found running; not ours, will not stop it)"
    fi
  else
    ensure_pg_binaries
    if pg_start "$fast"; then record_ours pg "$owner"; ours=1; fi
  fi
  if ((ours)); then
    pg_secure_ours
    pg_stat_statements_ours
  elif ((PG_MANAGED)); then
    if ! { pg_login_ok "$DATABASE_URL" "$PG_PASS" && pg_login_ok "$ADMIN_DATABASE_URL" "$PG_ADMIN_PASS"; }; then
      die "a PostgreSQL this repo did not start (another clone's?) answers at $PG_HOST:$PG_PORT and does not take the passwords in ${SECRETS#"$ROOT"/}; use its URLs (PAYRAIL_DATABASE_URL and PAYRAIL_TEST_DATABASE_URL, e.g. from that clone's scripts/services.sh env) or run this clone's own on another port (PAYRAIL_POSTGRES_PORT)"
    fi
  else
    pg_check_login
  fi
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

# rcli runs redis-cli on REDIS_URL's host and port; the password, if any, travels in
# REDISCLI_AUTH (so `ps` never shows it). rcli_noauth sends no password.
rcli() {
  local a=(-h "$REDIS_HOST" -p "$REDIS_PORT" --no-auth-warning)
  [[ -n $REDIS_USER ]] && a+=(--user "$REDIS_USER")
  if [[ -n $REDIS_PASS ]]; then REDISCLI_AUTH=$REDIS_PASS timeout 3 redis-cli "${a[@]}" "$@"
  else timeout 3 redis-cli "${a[@]}" "$@"; fi
}
rcli_noauth() { timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

# redis_answers: something speaking Redis is there (even one refusing us without a password).
redis_answers() {
  if command -v redis-cli >/dev/null; then
    [[ -n "$(rcli_noauth ping 2>/dev/null)" ]]
  else
    port_open "$REDIS_HOST" "$REDIS_PORT"
  fi
}
redis_login_ok() { [[ "$(rcli ping 2>/dev/null)" == PONG ]]; }
redis_open() { [[ "$(rcli_noauth ping 2>/dev/null)" == PONG ]]; }

pid_is_redis() { [[ -n ${1:-} && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q redis-server; }
our_redis_pid() {
  local pid
  [[ -f $REDIS_PID ]] || return 1
  pid=$(cat "$REDIS_PID" 2>/dev/null || true)
  pid_is_redis "$pid" && echo "$pid"
}

# redis_conf_quote quotes a value for redis.conf.
redis_conf_quote() { local v=${1//\\/\\\\}; printf '"%s"' "${v//\"/\\\"}"; }

# redis_write_conf writes .run/redis/redis.conf (0600): the settings of our Redis, the
# password among them, so that neither appears on a command line.
redis_write_conf() {
  local fast=$1
  {
    echo "# Written by scripts/services.sh: this repo's private Redis."
    echo "bind $REDIS_HOST"
    echo "port $REDIS_PORT"
    echo "databases 4096"
    echo "daemonize yes"
    echo "pidfile $(redis_conf_quote "$REDIS_PID")"
    echo "logfile $(redis_conf_quote "$REDIS_LOG")"
    echo "dir $(redis_conf_quote "$REDIS_DIR")"
    echo 'save ""'
    if [[ $fast == 1 ]]; then echo "appendonly no"; else echo "appendonly yes"; echo "appendfsync everysec"; fi
    [[ -n $REDIS_PASS ]] && echo "requirepass $(redis_conf_quote "$REDIS_PASS")"
  } >"$REDIS_CONF.tmp"
  mv "$REDIS_CONF.tmp" "$REDIS_CONF"
}

redis_start() {
  local fast=$1
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
  chmod 700 "$REDIS_DIR"
  redis_write_conf "$fast"
  if [[ $fast == 1 ]]; then
    say "starting Redis on $REDIS_HOST:$REDIS_PORT (test mode: no persistence)"
  else
    say "starting Redis on $REDIS_HOST:$REDIS_PORT (append-only file in .run/redis)"
  fi
  redis-server "$REDIS_CONF" >/dev/null 9>&-
  local i
  for i in $(seq 1 50); do
    if redis_login_ok; then
      our_redis_pid >/dev/null || die "Redis at $REDIS_HOST:$REDIS_PORT answers but is not the one just started (another clone's?); log: $REDIS_LOG"
      return 0
    fi
    sleep 0.2
  done
  tail -n 20 "$REDIS_LOG" >&2 || true
  die "Redis did not answer within 10 s; log: $REDIS_LOG"
}

# redis_secure_ours gives our running Redis the password of REDIS_URL: a Redis started by
# the old script (no password) gets it with CONFIG SET (sent on stdin), and redis.conf is
# rewritten so the next start has it too.
redis_secure_ours() {
  local fast=$1
  [[ -n $REDIS_PASS ]] || die "PAYRAIL_REDIS_URL has no password; this repo's private Redis requires one"
  if [[ ! -f $REDIS_CONF ]] || ! grep -q '^requirepass ' "$REDIS_CONF"; then
    # Keep the running server's persistence mode in the file for its next start.
    [[ "$(rcli_noauth config get appendonly 2>/dev/null | tail -n1)" == yes ]] && fast=0
    redis_write_conf "$fast"
  fi
  redis_login_ok && ! redis_open && return 0
  if redis_open; then
    say "securing the private Redis (.run/redis): requirepass"
    printf '%s' "$REDIS_PASS" | rcli_noauth -x config set requirepass >/dev/null
    redis_login_ok && ! redis_open && return 0
    die "could not set a password on the private Redis at $REDIS_HOST:$REDIS_PORT"
  fi
  # It has another password (.run/secrets was replaced): restart it with ours.
  warn "the private Redis does not take the password in ${SECRETS#"$ROOT"/}; restarting it"
  redis_down
  redis_write_conf "$fast"
  redis_start "$fast"
}

redis_up() {
  local fast=$1 owner=$2
  if redis_answers; then
    if our_redis_pid >/dev/null; then
      note "Redis at $REDIS_HOST:$REDIS_PORT answers (this repo's .run/redis)"
      record_ours redis "$owner"
      redis_secure_ours "$fast"
    else
      note "Redis at $REDIS_HOST:$REDIS_PORT answers (found running; not ours, will not stop it)"
      if ((REDIS_MANAGED)) && ! redis_login_ok; then
        die "a Redis this repo did not start (another clone's?) answers at $REDIS_HOST:$REDIS_PORT and does not take the password in ${SECRETS#"$ROOT"/}; use its URL (PAYRAIL_REDIS_URL and PAYRAIL_TEST_REDIS_URL) or run this clone's own on another port (PAYRAIL_REDIS_PORT)"
      fi
      redis_login_ok || die "Redis at $REDIS_HOST:$REDIS_PORT refuses PAYRAIL_REDIS_URL's credentials"
      redis_open && warn "Redis at $REDIS_HOST:$REDIS_PORT accepts clients without a password (not ours; leaving it)"
    fi
    return 0
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

# lock serialises discovery and start-up (and the generation of .run/secrets) among runs
# of this script on this clone. The lock file lives in .run/ (ours, 0700/0711), never at a
# predictable path in a shared directory like /tmp, and is never chmod-ed: a symlink
# planted there must not make root open or change some other file.
LOCKED=0
lock() {
  ((LOCKED)) && return 0
  local f="$RUN/services.lock"
  if [[ -L $f ]] || { [[ -e $f ]] && [[ ! -f $f ]]; }; then
    die "$f is a symlink or not a regular file; refusing to use it (remove it)"
  fi
  exec 9>>"$f"
  if ! flock -n 9; then
    note "waiting for another scripts/services.sh of this clone (lock ${f#"$ROOT"/})"
    flock -w 900 9 || die "waited 15 min for $f (another services.sh is busy)"
  fi
  LOCKED=1
}

# tighten_run makes what older scripts left under .run/ private (logs and the Redis
# append-only file were 0644).
tighten_run() {
  chmod -R go-rwx "$RUN"
  if [[ $EUID -eq 0 ]]; then
    chmod 711 "$RUN"
    [[ -d $RUN/logs ]] && chmod 711 "$RUN/logs"
  fi
  return 0
}

# shell_kv prints KEY=value, quoting the value only when a shell would need it.
shell_kv() {
  if [[ $2 =~ ^[A-Za-z0-9_./:@?=,+%-]*$ ]]; then printf '%s=%s\n' "$1" "$2"
  else printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; fi
}

# test_urls sets TEST_DATABASE_URL and TEST_REDIS_URL. Tests create one database per test,
# so on this repo's private server they use the postgres superuser (the application role
# may not create databases); elsewhere PAYRAIL_DATABASE_URL as before. A legacy value left
# in the environment by an old .run/env counts as unset.
test_urls() {
  TEST_DATABASE_URL=${PAYRAIL_TEST_DATABASE_URL:-}
  if [[ -z $TEST_DATABASE_URL || $TEST_DATABASE_URL == "$LEGACY_DATABASE_URL" ]]; then
    if ((PG_MANAGED)) || { is_local_host "$PG_HOST" && our_pg_running; }; then
      TEST_DATABASE_URL=$ADMIN_DATABASE_URL
    else
      TEST_DATABASE_URL=$DATABASE_URL
    fi
  fi
  TEST_REDIS_URL=${PAYRAIL_TEST_REDIS_URL:-}
  if [[ -z $TEST_REDIS_URL || $TEST_REDIS_URL == "$LEGACY_REDIS_URL" ]]; then TEST_REDIS_URL=$REDIS_URL; fi
}

cmd_env() {
  resolve_urls
  test_urls
  shell_kv PAYRAIL_DATABASE_URL "$DATABASE_URL"
  shell_kv PAYRAIL_REDIS_URL "$REDIS_URL"
  shell_kv PAYRAIL_TEST_DATABASE_URL "$TEST_DATABASE_URL"
  shell_kv PAYRAIL_TEST_REDIS_URL "$TEST_REDIS_URL"
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
  resolve_urls
  tighten_run
  say "services: PostgreSQL $(mask_url "${DATABASE_URL%%\?*}"), Redis $(mask_url "$REDIS_URL")"
  pg_up "$fast" "$owner"
  redis_up "$fast" "$owner"
  # .run/test.env lets a plain `go test` (internal/testenv reads it) find the servers too.
  test_urls
  { echo "# Written by scripts/services.sh up: the tests' URLs (see internal/testenv)."
    shell_kv PAYRAIL_TEST_DATABASE_URL "$TEST_DATABASE_URL"
    shell_kv PAYRAIL_TEST_REDIS_URL "$TEST_REDIS_URL"; } >"$RUN/test.env.tmp"
  mv "$RUN/test.env.tmp" "$RUN/test.env"
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
  resolve_urls
  if pg_answers; then echo "postgres  $PG_HOST:$PG_PORT  answers$(our_pg_running && echo ' (ours: .run/pg)')"
  else echo "postgres  $PG_HOST:$PG_PORT  not answering"; fi
  if redis_answers; then echo "redis     $REDIS_HOST:$REDIS_PORT  answers$(our_redis_pid >/dev/null && echo ' (ours: .run/redis)')"
  else echo "redis     $REDIS_HOST:$REDIS_PORT  not answering"; fi
  if [[ -s $STARTED ]]; then echo "recorded in .run/started:"; sed 's/^/  /' "$STARTED"; fi
}

# psql / redis-cli on the configured URLs, passwords in the environment (make psql, make
# redis-cli).
cmd_psql() {
  resolve_urls
  local psql; psql=$(pg_tool psql); [[ -n $psql ]] || die "psql is not installed"
  PGPASSWORD=$PG_PASS exec "$psql" "$PG_URL_NOPASS" "$@"
}
cmd_redis_cli() {
  resolve_urls
  local db=${REDIS_URL##*/}; db=${db%%\?*}; [[ $db =~ ^[0-9]+$ ]] || db=0
  local a=(-h "$REDIS_HOST" -p "$REDIS_PORT" -n "$db")
  [[ -n $REDIS_USER ]] && a+=(--user "$REDIS_USER")
  if [[ -n $REDIS_PASS ]]; then REDISCLI_AUTH=$REDIS_PASS exec redis-cli "${a[@]}" "$@"; fi
  exec redis-cli "${a[@]}" "$@"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  psql) shift; cmd_psql "$@" ;;
  redis-cli) shift; cmd_redis_cli "$@" ;;
  *) echo "usage: $0 up [--fast] [--owner up|test] | down [--owner up|test] | env | status | psql [ARGS] | redis-cli [ARGS]" >&2; exit 2 ;;
esac
