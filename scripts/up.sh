#!/usr/bin/env bash
# up.sh (make up): the whole payrail on this machine, without Docker.
#
#  1. PostgreSQL and Redis: found at the configured URLs or started under .run/
#     (scripts/services.sh up).
#  2. .run/env: the shell KEY=value lines every binary, payrailctl, script and test reads.
#     Secrets in it (admin token, encryption key, webhook secret) are generated once and
#     kept across runs: a new encryption key would make stored secrets unreadable.
#  3. Builds every main package under cmd/ into .run/bin and applies migrations.
#  4. (Re)starts mockpg, api, worker and demoshop in the background (logs in .run/logs,
#     pids in .run/pids) and waits for the api's /readyz.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$(now_ns)
ENV_FILE="$RUN/env"
API_ADDR=127.0.0.1:8080
MOCKPG_ADDR=127.0.0.1:8070
DEMOSHOP_ADDR=127.0.0.1:8090
WORKER_METRICS_ADDR=127.0.0.1:9090
API_METRICS_ADDR=127.0.0.1:9091

cd "$ROOT"
command -v go >/dev/null || die "go is not on PATH (need the version in go.mod)"
umask 077 # everything under .run/ is private: secrets, logs, pids, binaries
ensure_run_dir
mkdir -p "$RUN"/{bin,logs,pids}
[[ $EUID -eq 0 ]] && chmod 711 "$RUN/logs" # the postgres user writes .run/logs/postgres.log

# ---- 1. services ---------------------------------------------------------------------------
# The statement cache needs connections that are sessions: on by default only for this
# repo's private server; a PAYRAIL_DATABASE_URL of your own may be a pooler (docs/scaling.md).
if [[ -z ${PAYRAIL_DATABASE_URL:-} ]]; then STATEMENT_CACHE_DEFAULT=true; else STATEMENT_CACHE_DEFAULT=false; fi
"$ROOT/scripts/services.sh" up --owner up
eval "$("$ROOT/scripts/services.sh" env)"

# ---- 2. .run/env ---------------------------------------------------------------------------
# kept prints the value KEY had in the previous .run/env, if any.
kept() {
  [[ -f $ENV_FILE ]] || return 0
  sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1 | sed "s/^'\(.*\)'\$/\1/"
}
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
rand_b64() { head -c "$1" /dev/urandom | base64 -w0; }

ADMIN_TOKEN=$(kept PAYRAIL_ADMIN_TOKEN); ADMIN_TOKEN=${ADMIN_TOKEN:-$(rand_hex 32)}
ENC_KEYS=$(kept PAYRAIL_ENCRYPTION_KEYS); ENC_KEYS=${ENC_KEYS:-k1:$(rand_b64 32)}
WEBHOOK_SECRET=$(kept MOCKPG_WEBHOOK_SECRET); WEBHOOK_SECRET=${WEBHOOK_SECRET:-whsec_$(rand_hex 32)}

cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/up.sh (make up). Shell KEY=value lines: \`set -a; . .run/env; set +a\`.
# The secrets below are generated once and kept by later runs; delete a line to renew it.
PAYRAIL_API_URL=http://$API_ADDR
PAYRAIL_ADDR=$API_ADDR
PAYRAIL_METRICS_ADDR=$WORKER_METRICS_ADDR
PAYRAIL_API_METRICS_ADDR=$API_METRICS_ADDR
PAYRAIL_ADMIN_TOKEN=$ADMIN_TOKEN
PAYRAIL_ENCRYPTION_KEYS=$ENC_KEYS
PAYRAIL_DATABASE_URL=$PAYRAIL_DATABASE_URL
# Statements stay prepared on a direct connection to the private server; with a
# PAYRAIL_DATABASE_URL of your own, only if you say so (docs/scaling.md).
# PAYRAIL_DB_STATEMENT_CACHE=false make up runs without, for comparison.
PAYRAIL_DB_STATEMENT_CACHE=${PAYRAIL_DB_STATEMENT_CACHE:-$STATEMENT_CACHE_DEFAULT}
PAYRAIL_REDIS_URL=$PAYRAIL_REDIS_URL
PAYRAIL_CALLBACK_ALLOW_PRIVATE=true
# The demo's ops console signs in with a password alone; production asks for
# a TOTP code too (the default; docs/ops.md).
PAYRAIL_OPS_REQUIRE_TOTP=false
PAYRAIL_PG_PROVIDER=mockpg
PAYRAIL_PG_BASE_URL=http://$MOCKPG_ADDR
PAYRAIL_PG_SECRET_KEY=test_sk_mockpg
PAYRAIL_PG_WEBHOOK_SECRET=$WEBHOOK_SECRET
PAYRAIL_CHECKOUT_URL=http://$MOCKPG_ADDR/checkout
MOCKPG_URL=http://$MOCKPG_ADDR
MOCKPG_ADDR=$MOCKPG_ADDR
MOCKPG_SECRET_KEY=test_sk_mockpg
MOCKPG_WEBHOOK_SECRET=$WEBHOOK_SECRET
MOCKPG_WEBHOOK_URL=http://$API_ADDR/pg/webhooks/mockpg
DEMOSHOP_URL=http://$DEMOSHOP_ADDR
DEMOSHOP_ADDR=$DEMOSHOP_ADDR
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
say "wrote .run/env"

# ---- 3. build and migrate ------------------------------------------------------------------
mapfile -t MAINS < <(go list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./cmd/... 2>/dev/null | sed '/^$/d')
((${#MAINS[@]})) || die "no main packages under cmd/ yet; nothing to run"
say "building ${#MAINS[@]} binaries into .run/bin: $(printf '%s ' "${MAINS[@]##*/}")"
b=$(now_ns)
if [[ ${PAYRAIL_UP_SKIP_BUILD:-0} == 1 && -x $RUN/bin/api && -x $RUN/bin/worker ]]; then
  # docs/bench.md: an older build copied into .run/bin, benched beside the current one.
  note "PAYRAIL_UP_SKIP_BUILD=1: running the binaries already in .run/bin"
else
  go build -o "$RUN/bin/" "${MAINS[@]}" || die "build failed (see above)"
  note "built in $(elapsed "$b")"
fi

set -a; . "$ENV_FILE"; set +a
if [[ -x $RUN/bin/payrailctl ]]; then
  say "applying migrations (payrailctl migrate up)"
  "$RUN/bin/payrailctl" migrate up || die "migrations failed (see above)"
else
  warn "cmd/payrailctl is not built yet: migrations NOT applied"
fi

# ---- 4. processes --------------------------------------------------------------------------
addr_of() {
  case $1 in
    api) echo "$API_ADDR" ;; mockpg) echo "$MOCKPG_ADDR" ;; demoshop) echo "$DEMOSHOP_ADDR" ;;
    worker) echo "$WORKER_METRICS_ADDR" ;;
  esac
}

started=() missing=()
for name in "${PROCS[@]}"; do
  if [[ ! -x $RUN/bin/$name ]]; then
    missing+=("$name"); note "cmd/$name has no main package yet; not starting it"; continue
  fi
  stop_proc "$name" # restart what a previous `make up` left running
  addr=$(addr_of "$name")
  if port_open "${addr%:*}" "${addr##*:}"; then
    die "$addr is already taken by a process this repo did not start (another clone's make up? run its make down); $name cannot listen there"
  fi
  log="$RUN/logs/$name.log"
  printf '\n===== %s: make up starts %s =====\n' "$(date -Is)" "$name" >>"$log"
  setsid nohup "$RUN/bin/$name" </dev/null >>"$log" 2>&1 &
  echo $! >"$RUN/pids/$name.pid"
  started+=("$name")
  note "started $name (pid $!, log .run/logs/$name.log)"
done

# ---- wait for the api ----------------------------------------------------------------------
if [[ ! -x $RUN/bin/api ]]; then
  die "cmd/api is not built yet, so there is no api to wait for (started: ${started[*]:-nothing})"
fi
say "waiting for $PAYRAIL_API_URL/readyz (up to 60 s)"
deadline=$((SECONDS + 60))
code=000
while ((SECONDS < deadline)); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PAYRAIL_API_URL/readyz" || true)
  [[ $code == 200 ]] && break
  if ! proc_pid api >/dev/null; then
    warn "api exited; last lines of .run/logs/api.log:"; tail -n 30 "$RUN/logs/api.log" >&2
    exit 1
  fi
  sleep 0.5
done
if [[ $code != 200 ]]; then
  warn "api /readyz answered $code after 60 s; last lines of .run/logs/api.log:"
  tail -n 30 "$RUN/logs/api.log" >&2
  exit 1
fi
for name in "${started[@]}"; do
  proc_pid "$name" >/dev/null || warn "$name exited right after start; see .run/logs/$name.log"
done

# url_or_absent prints a URL, or why there is nothing behind it.
url_or_absent() { if proc_pid "$1" >/dev/null; then echo "$2"; else echo "(not running: $1 not built or exited)"; fi; }

cat <<EOF

payrail is up ($(elapsed "$START")).

  api             $PAYRAIL_API_URL            (/healthz, /readyz)
  ops console     $PAYRAIL_API_URL/ops
  asynqmon        $PAYRAIL_API_URL/ops/queues
  api metrics     http://$API_METRICS_ADDR/metrics   (own listener; never on the api port)
  worker metrics  $(url_or_absent worker "http://$WORKER_METRICS_ADDR/metrics")
  mockpg console  $(url_or_absent mockpg "$MOCKPG_URL/")
  demoshop        $(url_or_absent demoshop "$DEMOSHOP_URL/")
  logs            .run/logs/*.log   (make logs)
EOF
((${#missing[@]})) && echo "  not started     ${missing[*]} (no main package yet)"
cat <<EOF

Next:
  set -a; source .run/env; set +a
  go run ./cmd/payrailctl operator create ...   # an ops console login
  go run ./cmd/payrailctl --help
  make down                                     # stop what make up started
EOF
